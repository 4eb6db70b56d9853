"""Diversity on the bimodal toy: the default key keeps both routes around the obstacle; the
condition-only key collapses to the conditional mean (through the obstacle), as METHOD.md derives."""

import numpy as np
import pytest
import torch

from kdp_edge.config import TrainConfig
from kdp_edge.toy import bimodal_demos, mode_report
from kdp_edge.train import Trainer


def _train_toy(tmp_path, key: str, steps: int) -> dict:
    torch.set_num_threads(1)
    cfg = TrainConfig()
    cfg.data.horizon = 16
    cfg.drift.key.kind = key
    cfg.model.mlp_hidden = 256
    cfg.optim.steps = steps
    cfg.optim.warmup = 100
    cfg.optim.lr = 1e-3
    trainer = Trainer(cfg, tmp_path / key, trajectories=bimodal_demos(), log=lambda *a: None)
    for _ in range(steps):
        trainer.train_step()
    noise = torch.randn(256, 16, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plans = trainer.ema(torch.zeros(256, 2), torch.zeros(256, 0), noise).numpy()
    return mode_report(plans)


def test_default_key_keeps_both_modes(tmp_path):
    r = _train_toy(tmp_path, TrainConfig().drift.key.kind, steps=1500)
    assert r["above"] >= 0.25 and r["below"] >= 0.25, r
    # 7-10 % of default-key plans go through the obstacle over the toy's training seeds (bench/results/toy_modes,
    # 10 % on seed 0); the CPU's float order moves one run by about a point (10.2 % on another host), so the bound
    # leaves that margin; the condition-only key (next test) puts over 90 % there
    assert r["through_obstacle"] < 0.2, r
    assert r["step_length"] > 0.05, r  # not static (data step length is 0.067)


def test_condition_only_key_collapses_to_the_mean(tmp_path):
    r = _train_toy(tmp_path, "condition", steps=600)
    assert r["through_obstacle"] > 0.9, r


def test_toy_data_is_bimodal():
    traj = bimodal_demos(n=64)
    plans = traj.observations.reshape(64, 16, 2)
    r = mode_report(np.concatenate([plans, np.zeros_like(plans)], axis=-1))
    assert r["above"] == pytest.approx(0.5) and r["below"] == pytest.approx(0.5) and r["through_obstacle"] == 0
