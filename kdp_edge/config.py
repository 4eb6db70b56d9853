"""Typed training configuration, saved as JSON beside every checkpoint (no pickled code objects).

``kdp-edge train --config FILE`` accepts YAML or JSON with any subset of these fields; unknown
fields are an error naming the valid ones. ``kdp-edge train --recipe NAME`` starts from one of the
measured task recipes in :data:`RECIPES` (the benchmarks train from the same entries).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .diffusion import DiffusionConfig
from .drift import DriftConfig, KeySpec
from .errors import ConfigError
from .layout import STATES_ACTIONS, check_window
from .models import ModelConfig


@dataclass
class DataConfig:
    path: str = ""
    horizon: int = 32
    goal: str = "auto"  # auto | hindsight | none
    obs_history: int = 1  # observations stacked into the condition (Diffusion Policy uses 2)
    # what a window step holds (kdp_edge/layout.py): "states+actions" ([observation, action]) or "actions"
    # (the action chunk only); the condition is the same either way. A study option (issue #22)
    window: str = STATES_ACTIONS

    def __post_init__(self) -> None:
        try:
            check_window(self.window)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


@dataclass
class OptimConfig:
    steps: int = 20_000
    conditions: int = 32  # G: conditions per batch
    samples: int = 16  # N: generated windows per condition
    positives: int = 32  # P: nearest dataset windows per condition (the condition's own included), for knn
    positive_source: str = "knn"  # knn | own | pooled: where positives come from (kdp_edge/positives.py)
    lr: float = 3e-4
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    ema: float = 0.999
    warmup: int = 500


@dataclass
class TrainConfig:
    method: str = "drift"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)  # method "diffusion" only
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    device: str = "cpu"  # cpu | cuda (cuda:LOCAL_RANK under torchrun) | auto (cuda when available)
    log_every: int = 100
    checkpoint_every: int = 1000

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        return _build(TrainConfig, d, "config")


def _build(cls, d: dict[str, Any], where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; valid fields: {sorted(names)}")
    kwargs = {}
    for k, v in d.items():
        t = hints[k]
        if dataclasses.is_dataclass(t):
            kwargs[k] = _build(t, v, f"{where}.{k}")
        else:
            kwargs[k] = v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def load_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    text = p.read_text()
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError("YAML configs need pyyaml: pip install 'kdp-edge[train]' (or use a .json config)") from exc
        return yaml.safe_load(text) or {}
    return json.loads(text)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: values in ``override`` win."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# Measured task recipes: config overrides on top of the defaults, applied before --config and flags.
RECIPES: dict[str, dict[str, Any]] = {
    # PushT low-dim (Diffusion Policy's 206 human demonstrations): 2 observations in, 16 steps planned;
    # evidence in bench/results/pusht/variants.md
    "pusht": {
        "data": {"horizon": 16, "obs_history": 2, "goal": "none"},
        "model": {"arch": "mlp", "mlp_hidden": 512, "mlp_layers": 3},
        # 16 kNN positives: 0.737 vs 0.666 mean max coverage with 32 (drift only)
        "optim": {"positives": 16},
        # descriptor = the planned target positions (action dims 12, 13 of the 12 + 2 window) at all 16
        # steps, not 4: better with 2 executed on each of training seeds 0-2, even with 8 (hand-recorded
        # single runs, bench/results/pusht/variants.md; bench/results/pusht/pusht-seeds.md measures this recipe)
        "drift": {"key": {"kind": "condition+descriptor", "descriptor_dims": [12, 13], "descriptor_steps": 16}},
    },
}
# the same with the 1-D conv U-Net (1.6M parameters) for 20k steps: 0.868 (8 executed) / 0.817 (2 executed),
# training seed 0, 200 episodes (bench/results/pusht/pusht-unet20k.md); at 12k steps 0.840 / 0.743, diffusion
# on it 0.852 / 0.726 (pusht-unet.md; 20k not run). Seed 1 and 400-episode figures exist only as hand notes
# in variants.md. ~80 min per 20k run on 2 CPU threads; torch plan p50 2.6-2.8 ms
RECIPES["pusht-unet"] = merge(RECIPES["pusht"], {"model": {"arch": "unet"}, "optim": {"steps": 20_000}})
# Study variant (issue #22): the same recipe with windows of the action chunk only ([16, 2], as the public
# one-step drifting policies generate), so the descriptor's action dims are 0, 1. On selection episode seeds
# it did not beat the recipe: 0.728 / 0.721 vs 0.741 / 0.766 (bench/results/pusht/pusht-actions-sel.md)
RECIPES["pusht-actions"] = merge(RECIPES["pusht"], {"data": {"window": "actions"},
                                                    "drift": {"key": {"descriptor_dims": [0, 1]}}})


def recipe(name: str) -> dict[str, Any]:
    """The config overrides of a named recipe (a copy); a clear error naming the known ones."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe '{name}'; known recipes: {', '.join(sorted(RECIPES))}")
    return json.loads(json.dumps(RECIPES[name]))


__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "ModelConfig", "DriftConfig", "KeySpec", "DiffusionConfig",
           "load_config_file", "merge", "RECIPES", "recipe"]
