"""Run directories: one checkpoint format for every method.

RUN_DIR/
    config.json      TrainConfig (typed, JSON)
    normalizer.json  normalisation statistics
    run.json         dims, horizon, env, data source, parameter count, last step, versions
    checkpoint.pt    tensors only (model, EMA, optimiser, step, RNG states): loads with weights_only=True
    metrics.jsonl    one JSON line per log interval
All files are written atomically, so an interrupted run always has a loadable checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .fileio import atomic_write, atomic_write_json, read_json
from .windows import Normalizer

CHECKPOINT = "checkpoint.pt"


@dataclass
class RunInfo:
    obs_dim: int
    act_dim: int
    goal_dim: int
    horizon: int
    env: str
    data: str
    parameters: int
    step: int = 0
    method: str = "drift"
    created: float = 0.0
    kdp_edge_version: str = ""
    torch_version: str = ""
    obs_history: int = 1  # obs_dim = obs_history x the environment's observation size
    window: str = "states+actions"  # what a window step holds (kdp_edge.layout); absent in older run.json files
    # from the dataset when it says (LeRobot: 1 / fps and feature names); absent in older run.json files
    step_dt_s: float = 0.0  # seconds between window steps; 0: unknown
    obs_names: list[str] = field(default_factory=list)  # one observation's values (obs_history repeats them)
    act_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return dataclasses.asdict(self)

    @property
    def layout(self):
        """Where the actions (and states) sit in a window step (:class:`kdp_edge.layout.WindowLayout`)."""
        from .layout import WindowLayout

        return WindowLayout(self.obs_dim, self.act_dim, self.window)


def save_run_files(run_dir: Path, cfg, normalizer: Normalizer, info: RunInfo) -> None:
    from . import __version__

    info.kdp_edge_version = __version__
    info.created = info.created or time.time()
    atomic_write_json(run_dir / "config.json", cfg.to_dict())
    atomic_write_json(run_dir / "normalizer.json", normalizer.to_dict())
    atomic_write_json(run_dir / "run.json", info.to_dict())
    if not (run_dir / "provenance.json").exists():  # how the run was started: command, commit, machine, date
        from .provenance import provenance

        atomic_write_json(run_dir / "provenance.json", provenance())


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    import torch

    return atomic_write(run_dir / CHECKPOINT, lambda tmp: torch.save(state, tmp))


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: Any  # TrainConfig
    normalizer: Normalizer
    info: RunInfo
    state: dict[str, Any]

    def build_model(self, ema: bool = True):
        """The generator (EMA weights by default) in eval mode, on CPU."""
        from .methods import method_for

        model = method_for(self.cfg.method).build_model(self.cfg, self.normalizer, self.info.horizon)
        key = "ema" if ema and "ema" in self.state else "model"
        model.load_state_dict(self.state[key])
        return model.eval()


def load_run(run_dir: str | Path) -> LoadedRun:
    """Load a run directory with clear errors for anything missing or corrupted."""
    import torch

    from .config import TrainConfig

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}. Train one with: kdp-edge train --data FILE --out {run_dir}")
    for name in ("config.json", "normalizer.json", "run.json", CHECKPOINT):
        if not (run_dir / name).exists():
            raise CheckpointError(f"{run_dir} is not a complete run: {name} is missing (was training interrupted "
                                  "before the first checkpoint? resume with kdp-edge train --resume)")
    try:
        cfg = TrainConfig.from_dict(read_json(run_dir / "config.json"))
        normalizer = Normalizer.from_dict(read_json(run_dir / "normalizer.json"))
        info = RunInfo(**read_json(run_dir / "run.json"))
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{run_dir}: run files are corrupted ({exc})") from exc
    if not normalizer.window == info.window == cfg.data.window:
        raise CheckpointError(f"{run_dir}: run files disagree on the window content (normalizer.json "
                              f"{normalizer.window!r}, run.json {info.window!r}, config.json {cfg.data.window!r}); "
                              "they were edited or mixed from different runs")
    try:
        state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"{run_dir / CHECKPOINT}: cannot load ({type(exc).__name__}: {exc}); "
                              "the file is truncated or not a kdp-edge checkpoint") from exc
    return LoadedRun(run_dir, cfg, normalizer, info, state)
