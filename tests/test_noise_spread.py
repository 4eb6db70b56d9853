"""Candidate diversity at planning time: the bundle's noise_spread scales candidate k's noise by
1 + spread * k / (K - 1), the same ladder for plan and plan_batch; absent from bundle.json when 0."""

from __future__ import annotations

import numpy as np
import pytest

from kdp_edge.bundle import BundleError, BundleManifest
from kdp_edge.runtime.planner import Planner, noise_ladder

K, H, OBS, A = 8, 4, 2, 2


def echo(feeds):
    """A backend whose windows are its noise: what the planner fed it is visible."""
    return np.array(feeds["noise"], copy=True)


def manifest(spread: float) -> BundleManifest:
    return BundleManifest(obs_dim=OBS, act_dim=A, goal_dim=0, horizon=H, inputs=["obs", "noise"],
                          scoring={"kind": "consensus", "consensus_dims": [2, 3], "consensus_steps": 2},
                          default_candidates=K, noise_spread=spread)


def test_ladder_values():
    assert noise_ladder(K, 0.0) is None and noise_ladder(1, 2.0) is None
    np.testing.assert_allclose(noise_ladder(5, 1.0).ravel(), [1.0, 1.25, 1.5, 1.75, 2.0])
    with pytest.raises(BundleError, match="noise_spread must be >= 0"):
        noise_ladder(4, -0.5)


def test_plan_and_plan_batch_scale_each_candidate(monkeypatch):
    p = Planner.over(manifest(3.0), echo, seed=0)
    draws = np.stack([p.plan(np.zeros(OBS)).candidates for _ in range(400)])  # [400, K, H, D]
    std = draws.std(axis=(0, 2, 3))
    np.testing.assert_allclose(std, 1 + 3.0 * np.arange(K) / (K - 1), rtol=0.08)
    batch = Planner.over(manifest(3.0), echo, seed=1).plan_batch(np.zeros((300, OBS)))
    np.testing.assert_allclose(batch.candidates.std(axis=(0, 2, 3)), std, rtol=0.1)
    plain = Planner.over(manifest(0.0), echo, seed=0).plan_batch(np.zeros((300, OBS)))
    np.testing.assert_allclose(plain.candidates.std(axis=(0, 2, 3)), np.ones(K), rtol=0.08)


def test_given_noise_is_used_as_given():
    p = Planner.over(manifest(3.0), echo)
    noise = np.ones((K, H, OBS + A), np.float32)
    np.testing.assert_array_equal(p.plan(np.zeros(OBS), noise=noise).candidates, noise)


def test_manifest_writes_the_field_only_when_set():
    assert "noise_spread" not in manifest(0.0).to_dict()
    d = manifest(0.5).to_dict()
    assert d["noise_spread"] == 0.5
    assert BundleManifest.from_dict(d).noise_spread == 0.5
