"""The diffusion baseline (:mod:`kdp_edge.diffusion`): a DDPM on the same windows and backbone, sampled
with DDIM (T passes per plan); it exports a denoiser bundle the runtime's DiffusionPlanner runs."""

from __future__ import annotations

from . import Method


class Diffusion(Method):
    name = "diffusion"
    label = "diffusion"
    exporter = "export.denoiser:export_denoiser_bundle"

    def build_model(self, cfg, normalizer, horizon: int):
        from ..diffusion import DiffusionGenerator

        return DiffusionGenerator(normalizer, horizon, cfg.model, cfg.diffusion)

    def loss(self, trainer):
        """DDPM loss on a batch of dataset windows (uniform over window starts) and their conditions."""
        import torch

        from ..diffusion import diffusion_batch_size

        starts = trainer.ws.starts[trainer.rng.integers(len(trainer.ws), size=diffusion_batch_size(trainer.cfg))]
        win = torch.from_numpy(trainer.ws.windows(starts)).to(trainer.device)
        cond = torch.from_numpy(trainer.ws.conditions(starts)).to(trainer.device)
        return trainer.call("loss", win, cond)

    def describe(self, cfg) -> str:
        return f"diffusion: {cfg.diffusion.prediction} prediction, T = {cfg.diffusion.timesteps}"

    def configure_sampler(self, model, sampler: str | None, sample_steps: int | None, log=print) -> dict:
        from ..errors import ConfigError

        try:
            model.set_sampler(sampler, sample_steps)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        return {"method": self.name, "sampler": model.sampler, "sample_steps": model.sample_steps}
