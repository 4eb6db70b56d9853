"""One place that maps a training method to its model class (all share one checkpoint format)."""

from __future__ import annotations

METHODS = ("drift",)


def build_model(cfg, normalizer, horizon: int):
    """The torch module for ``cfg.method`` (``drift``: a one-step KDP generator)."""
    from .errors import ConfigError
    from .models import KDPGenerator

    if cfg.method == "drift":
        return KDPGenerator(normalizer, horizon, cfg.model)
    raise ConfigError(f"unknown method '{cfg.method}': choose one of {', '.join(METHODS)}")
