"""Training methods as plug-ins: one module per method, registered by name (``TrainConfig.method``).

A :class:`Method` says how to build its torch model, what one training step's loss is on a
:class:`~kdp_edge.train.Trainer`'s data, how it describes itself in the training log, how an
evaluation applies sampler options to it, and which exporter writes its bundle (named
``"module:function"``, imported by the export pipeline). Training, evaluation and export ask
:func:`method_for` instead of testing method names; the device runtime has its own plug-in point for
what a bundle's model files are (``kdp_edge.runtime.planner.PLANNERS``).

Adding a method: one module here with a subclass, one line in :data:`METHODS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..errors import ConfigError


class Method:
    name = ""
    label = ""  # how reports name the evaluated planner
    exporter = ""  # "module:function" (run, out, opts, log) -> bundle path

    def build_model(self, cfg, normalizer, horizon: int):
        raise NotImplementedError

    def loss(self, trainer):
        """(loss tensor with gradient, stats dict) for one step of ``trainer`` (its model, data, RNG)."""
        raise NotImplementedError

    def describe(self, cfg) -> str:
        return ""

    def configure_sampler(self, model, sampler: str | None, sample_steps: int | None, log=print) -> dict:
        """Apply evaluation-time sampler options; returns what the report records about the generator.
        Default: one-pass generators have none (a note when some were given)."""
        if sampler is not None or sample_steps is not None:
            log(f"note: --sampler / --sample-steps apply to diffusion runs only; ignored for this {self.name} run")
        return {"method": self.name}

    def export_function(self) -> Callable:
        module, func = self.exporter.split(":")
        return getattr(importlib.import_module(module), func)


def _registry() -> dict[str, Method]:
    from .diffusion import Diffusion
    from .drift import Drift

    return {m.name: m for m in (Drift(), Diffusion())}


METHODS: dict[str, Method] = _registry()


def method_for(name: str) -> Method:
    """The registered method ``name``; a ConfigError naming the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method '{name}': choose one of {', '.join(METHODS)}") from None


__all__ = ["METHODS", "Method", "method_for"]
