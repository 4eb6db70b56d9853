"""One place that maps a training method to its model class (all share one checkpoint format)."""

from __future__ import annotations

METHODS = ("drift", "diffusion")


def build_model(cfg, normalizer, horizon: int):
    """The torch module for ``cfg.method`` (``drift``: a one-step KDP generator; ``diffusion``: a
    trajectory diffusion model on the same backbone, :mod:`kdp_edge.diffusion`)."""
    from .errors import ConfigError
    from .models import KDPGenerator

    if cfg.method == "drift":
        return KDPGenerator(normalizer, horizon, cfg.model)
    if cfg.method == "diffusion":
        from .diffusion import DiffusionGenerator

        return DiffusionGenerator(normalizer, horizon, cfg.model, cfg.diffusion)
    raise ConfigError(f"unknown method '{cfg.method}': choose one of {', '.join(METHODS)}")
