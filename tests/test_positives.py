"""Positive-set rules (kdp_edge/positives.py), the config option that picks one, and the study runner."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kdp_edge.errors import ConfigError
from kdp_edge.positives import POSITIVE_SOURCES, positive_rule
from kdp_edge.toy import bimodal_demos
from kdp_edge.windows import WindowSet


@pytest.fixture(scope="module")
def ws():
    return WindowSet(bimodal_demos(n=32, seed=0), horizon=8)


def test_rules_shapes_and_contents(ws):
    starts = ws.starts[[0, 5, 40, 77]]
    knn = positive_rule("knn")(ws, starts, 6)
    assert knn.shape == (4, 6)
    np.testing.assert_array_equal(knn[:, 0], starts)  # the own window is the nearest (distance 0)
    own = positive_rule("own")(ws, starts, 6)
    np.testing.assert_array_equal(own, starts[:, None])
    pooled = positive_rule("pooled")(ws, starts, 6)
    assert pooled.shape == (4, 4)
    for row in pooled:  # every group sees every condition's own window
        np.testing.assert_array_equal(row, starts)
    pooled[0, 0] = -1  # a copy: groups do not share memory
    assert pooled[1, 0] == starts[0]


def test_unknown_rule_names_the_known_ones():
    with pytest.raises(ConfigError, match="knn, own, pooled"):
        positive_rule("nearest")
    assert set(POSITIVE_SOURCES) == {"knn", "own", "pooled"}


@pytest.mark.parametrize("source, p", [("own", 1), ("pooled", 8), ("knn", 32)])
def test_trainer_batches_follow_the_configured_rule(tmp_path, source, p):
    pytest.importorskip("torch")
    from kdp_edge.config import TrainConfig
    from kdp_edge.train import Trainer

    cfg = TrainConfig()
    cfg.data.horizon = 16
    cfg.model.mlp_hidden = 32
    cfg.optim.conditions, cfg.optim.samples, cfg.optim.positive_source = 8, 4, source
    tr = Trainer(cfg, tmp_path, trajectories=bimodal_demos(n=64), log=lambda *a: None)
    cond, pos, pos_cond = tr.batch()
    assert tuple(pos.shape) == (8, p, 16, 4) and tuple(pos_cond.shape[:2]) == (8, p)
    if source != "knn":  # own and pooled positives are the batch's own windows: their conditions match exactly
        own_col = 0 if source == "own" else None
        got = pos_cond[:, 0] if own_col == 0 else pos_cond[0]
        np.testing.assert_allclose(got.numpy(), cond.numpy())
    stats = tr.train_step()
    assert np.isfinite(stats["loss"])


def test_study_runner_rejects_unknown_variants_before_any_work(tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    out = tmp_path / "study"
    r = subprocess.run([sys.executable, "bench/study.py", "--study", "key-role", "--variants", "nope", "--out", str(out)],
                       capture_output=True, text=True, timeout=120, cwd=str(root))
    assert r.returncode == 2 and "unknown variant" in r.stderr and "pooled, full key" in r.stderr
    assert not out.exists()
