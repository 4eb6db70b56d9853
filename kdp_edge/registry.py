"""One place that maps a training method to its model class (all share one checkpoint format)."""

from __future__ import annotations


def build_model(cfg, normalizer, horizon: int):
    """The torch module for ``cfg.method`` (``drift``: a one-step KDP generator; ``diffusion``: a
    trajectory diffusion model on the same backbone): the method plug-in's (:mod:`kdp_edge.methods`)."""
    from .methods import method_for

    return method_for(cfg.method).build_model(cfg, normalizer, horizon)
