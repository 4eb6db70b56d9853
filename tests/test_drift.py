"""Unit tests of the keyed drift field's math (kdp_edge/drift.py)."""

import pytest
import torch

from kdp_edge.drift import DriftConfig, KeySpec, drift_field, key_distances, keyed_drift_loss, window_keys

TEMPS = [0.05, 0.2, 0.5]


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_drift_is_zero_when_generated_equals_data():
    """Anti-symmetry: the same samples on both sides (q = p) give V = 0 exactly."""
    z = _rand(3, 8, 12)
    d = torch.cdist(z, z)
    v, _ = drift_field(z, z, d, d, TEMPS, exclude_self=False, y_neg=z)
    assert v.abs().max() < 1e-4


def test_repulsion_above_one_spreads_a_matched_cloud():
    """At q = p the drifting field is still (above); with repulsion > 1 it pushes the samples outward
    (a wider fixed point), below 1 inward; a non-positive gain is refused."""
    z = _rand(3, 32, 6, seed=7)
    d = torch.cdist(z, z)
    outward = z - z.mean(dim=1, keepdim=True)
    for gain, sign in ((1.5, 1.0), (0.5, -1.0)):
        v, _ = drift_field(z, z, d, d, TEMPS, exclude_self=False, y_neg=z, repulsion=gain)
        assert sign * (v * outward).sum(-1).mean() > 0, gain
    assert DriftConfig().repulsion == 1.0
    with pytest.raises(ValueError, match="repulsion"):
        DriftConfig(repulsion=0.0)


def test_drift_nonzero_and_attractive_when_shifted():
    """Generated samples displaced from the data are pulled back toward it."""
    data = _rand(2, 32, 6)
    gen = data[:, :16] + 3.0
    d_neg, d_pos = key_distances(gen[..., None, :], torch.zeros(2, 16, 1), data[..., None, :],
                                 torch.zeros(2, 32, 1), KeySpec("full"))
    v, _ = drift_field(gen, data, d_neg, d_pos, TEMPS)
    assert (v.mean(dim=(0, 1)) < -0.5).all()  # pulls every dim back toward the data (shift was +3)


def test_self_exclusion():
    """A sample is never its own negative: its own negative copy has no effect on its drift,
    but it does affect the other samples' drifts."""
    x = _rand(1, 3, 4, seed=20)
    y = _rand(1, 5, 4, seed=21)
    d_neg, d_pos = torch.cdist(x, x), torch.cdist(x, y)
    v, _ = drift_field(x, y, d_neg, d_pos, [0.5], exclude_self=True, y_neg=x)
    moved = x.clone()
    moved[0, 0] += 10.0  # change only sample 0's negative copy (distances unchanged)
    v2, _ = drift_field(x, y, d_neg, d_pos, [0.5], exclude_self=True, y_neg=moved)
    # drift of sample 0 changes only via the global RMS normalisation: direction is unchanged
    cos = torch.nn.functional.cosine_similarity(v[0, 0], v2[0, 0], dim=0)
    assert cos > 0.9999
    assert not torch.allclose(v[0, 1] / v[0, 1].norm(), v2[0, 1] / v2[0, 1].norm(), atol=1e-3)
    v_incl, _ = drift_field(x, y, d_neg, d_pos, [0.5], exclude_self=False, y_neg=x)
    assert not torch.allclose(v, v_incl)


def test_key_changes_weights_but_update_lives_in_window_space():
    g, n, p, h, d = 2, 6, 10, 8, 4
    gen, pos = _rand(g, n, h, d, seed=1), _rand(g, p, h, d, seed=2)
    cond, pos_cond = _rand(g, 3, seed=3), _rand(g, p, 3, seed=4)
    cfg_full = DriftConfig(TEMPS, KeySpec("full"))
    cfg_desc = DriftConfig(TEMPS, KeySpec("condition+descriptor", descriptor_dims=[0, 1]))
    outs = {}
    for name, cfg in (("full", cfg_full), ("desc", cfg_desc)):
        x = gen.clone().requires_grad_(True)
        loss, _ = keyed_drift_loss(x, cond, pos, pos_cond, cfg)
        loss.backward()
        outs[name] = x.grad.clone()
    assert not torch.allclose(outs["full"], outs["desc"])  # different key -> different weights
    # the descriptor key only looks at dims 0, 1 of 4 steps, yet the update moves every dim of every step
    grad = outs["desc"]
    assert (grad[..., 2:].abs().sum(dim=(0, 1, 3)) > 0).all()
    assert grad.shape == gen.shape


def test_condition_only_key_gives_one_drift_per_condition():
    """Key = condition: every generated sample of a condition gets identical weights on the positives,
    so the attraction is the same for all; without self-exclusion the whole drift is identical."""
    g, n, p, h, d = 1, 5, 7, 4, 3
    gen, pos = _rand(g, n, h, d, seed=5), _rand(g, p, h, d, seed=6)
    cond = _rand(g, 2, seed=7)
    pos_cond = _rand(g, p, 2, seed=8)
    spec = KeySpec("condition")
    d_neg, d_pos = key_distances(gen, cond[:, None].expand(g, n, 2), pos, pos_cond, spec)
    assert torch.allclose(d_pos, d_pos[:, :1].expand_as(d_pos))  # same distances for every sample
    v, _ = drift_field(gen.flatten(2), pos.flatten(2), d_neg, d_pos, TEMPS, exclude_self=False)
    assert torch.allclose(v, v[:, :1].expand_as(v), atol=1e-5)
    # with the default self-exclusion, drifts differ only through the excluded self term:
    # V_i - V_j is parallel to x_i - x_j
    v, _ = drift_field(gen.flatten(2), pos.flatten(2), d_neg, d_pos, TEMPS, exclude_self=True)
    dv, dx = (v[0, 0] - v[0, 1]), (gen.flatten(2)[0, 0] - gen.flatten(2)[0, 1])
    cos = torch.dot(dv, dx) / (dv.norm() * dx.norm())
    assert abs(float(cos)) > 0.999


def test_descriptor_key_shape_and_steps():
    spec = KeySpec("condition+descriptor", descriptor_steps=4, descriptor_dims=[0, 1])
    assert spec.descriptor_index(16) == [3, 7, 11, 15]
    k = window_keys(torch.zeros(2, 3, 16, 6), torch.ones(2, 3, 5), spec)
    assert k.shape == (2, 3, 5 + 4 * 2)
    assert torch.allclose(k[..., :5], torch.full((2, 3, 5), 3.0))  # condition weighted by cond_weight


def test_two_factor_distances_mix_condition_and_window():
    gen, pos = _rand(1, 4, 8, 2, seed=9), _rand(1, 6, 8, 2, seed=10)
    c, pc = _rand(1, 4, 2, seed=11), _rand(1, 6, 2, seed=12)
    d2 = key_distances(gen, c, pos, pc, KeySpec("two-factor"))[1]
    dc = key_distances(gen, c, pos, pc, KeySpec("condition"))[1]
    df = key_distances(gen, c, pos, pc, KeySpec("full"))[1]
    assert torch.allclose(d2, (3 * dc + df) / 4)


def test_unknown_key_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown key 'banana'"):
        KeySpec("banana")


def test_loss_gradient_is_minus_drift():
    """Loss = mean (x - sg(x + V))^2, so dLoss/dx = -2 V / numel."""
    gen, pos = _rand(1, 4, 8, 2, seed=13), _rand(1, 6, 8, 2, seed=14)
    c, pc = _rand(1, 2, seed=15), _rand(1, 6, 2, seed=16)
    x = gen.clone().requires_grad_(True)
    cfg = DriftConfig(TEMPS, KeySpec("full"))
    loss, stats = keyed_drift_loss(x, c, pos, pc, cfg)
    loss.backward()
    d_neg, d_pos = key_distances(gen, c[:, None].expand(1, 4, 2), pos, pc, cfg.key)
    v, _ = drift_field(gen.flatten(2), pos.flatten(2), d_neg, d_pos, TEMPS)
    assert torch.allclose(x.grad.flatten(2), -2 * v / v.numel(), atol=1e-6)
    assert set(stats) >= {"lambda_0.05", "lambda_0.2", "lambda_0.5", "drift_rms"}
