"""KDP, the keyed drifting policy (:mod:`kdp_edge.drift`): a one-pass generator trained on G
conditions x N generated windows against their P positives (:mod:`kdp_edge.positives`)."""

from __future__ import annotations

from . import Method


class Drift(Method):
    name = "drift"
    label = "kdp"
    exporter = "export.pipeline:export_generator_bundle"

    def build_model(self, cfg, normalizer, horizon: int):
        from ..models import KDPGenerator

        return KDPGenerator(normalizer, horizon, cfg.model)

    def loss(self, trainer):
        """Keyed drift loss on G conditions x N generated windows with their P positives
        (``optim.positive_source``: kNN by condition, the own window, or the batch's pooled windows)."""
        import torch

        from ..drift import keyed_drift_loss

        cfg = trainer.cfg
        g, n = cfg.optim.conditions, cfg.optim.samples
        cond, pos, pos_cond = trainer.batch()
        # noise from the CPU RNG (then moved), so a resumed run draws the same noise on any device
        noise = torch.randn(g * n, cfg.data.horizon, trainer.model.window_dim).to(trainer.device)
        gen = trainer.call("generate_normalized", cond.repeat_interleave(n, dim=0), noise)
        gen = gen.reshape(g, n, *gen.shape[1:])
        return keyed_drift_loss(gen, cond, pos, pos_cond, cfg.drift)

    def describe(self, cfg) -> str:
        return f"key: {cfg.drift.key.kind}, positives: {cfg.optim.positive_source}"
