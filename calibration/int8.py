"""Calibration inputs for int8 export: conditions from the training windows, noise from the sampler.

A calibration set is ``N`` rows of what the exported graph eats (raw units, see kdp_edge.bundle)::

    obs   float32 [N, obs_dim]              start state of a training window
    goal  float32 [N, goal_dim]             that window's goal (absent when goal_dim == 0)
    noise float32 [N, horizon, window_dim]  standard normal, as the device's sampler draws it

Conditions are drawn uniformly from the valid window starts of the run's training data (the
states the model was trained to plan from); noise is i.i.d. N(0, 1) like the runtime's sampler. The
same set feeds onnxruntime's static quantiser (:class:`OnnxCalibrationReader`, batches of K rows,
the shape the device runs) and ai-edge-quantizer's calibration (:meth:`CalibrationSet.batches`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:  # onnxruntime is a core dependency, but keep this module importable without it
    from onnxruntime.quantization import CalibrationDataReader
except ImportError:  # pragma: no cover - onnxruntime is in the base install
    CalibrationDataReader = object  # type: ignore[assignment,misc]


@dataclass
class CalibrationSet:
    """``N`` calibration rows (shapes in the module docstring) and where they came from."""

    obs: np.ndarray  # [N, O] float32, raw units
    goal: np.ndarray | None  # [N, G] float32 or None (goal_dim == 0)
    noise: np.ndarray  # [N, H, D] float32, standard normal
    source: str = ""  # dataset the conditions came from
    seed: int = 0

    def __post_init__(self) -> None:
        n = len(self.obs)
        if len(self.noise) != n or (self.goal is not None and len(self.goal) != n):
            raise ValueError(f"calibration arrays disagree on N: obs {len(self.obs)}, noise {len(self.noise)}, "
                             f"goal {None if self.goal is None else len(self.goal)}")

    def __len__(self) -> int:
        return len(self.obs)

    def feeds(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` as a feed dict keyed by the graph's input names."""
        f = {"obs": self.obs[start:stop], "noise": self.noise[start:stop]}
        if self.goal is not None:
            f["goal"] = self.goal[start:stop]
        return f

    def batches(self, batch: int) -> Iterator[dict[str, np.ndarray]]:
        """Feed dicts of exactly ``batch`` rows (a trailing partial batch is dropped, so that
        fixed-shape models such as one-K TFLite files can eat every batch)."""
        for s in range(0, len(self) - batch + 1, batch):
            yield self.feeds(s, s + batch)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``calibration.npz`` (obs, goal when present, noise; source and seed as 0-d arrays)."""
        from kdp_edge.fileio import atomic_write

        arrays = {"obs": self.obs, "noise": self.noise, "source": np.array(self.source), "seed": np.array(self.seed)}
        if self.goal is not None:
            arrays["goal"] = self.goal

        def _write(tmp):
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

        return atomic_write(Path(path), _write)

    @staticmethod
    def load(path: str | os.PathLike) -> CalibrationSet:
        with np.load(path) as z:
            return CalibrationSet(obs=z["obs"], goal=z["goal"] if "goal" in z else None, noise=z["noise"],
                                  source=str(z["source"]) if "source" in z else "",
                                  seed=int(z["seed"]) if "seed" in z else 0)


def draw_calibration(traj, horizon: int, window_dim: int, samples: int, seed: int = 0) -> CalibrationSet:
    """``samples`` rows: (obs, goal) at random valid window starts of ``traj`` (a
    kdp_edge.windows.Trajectories, raw units) and standard-normal noise [samples, horizon, window_dim]."""
    from kdp_edge.errors import DataError
    from kdp_edge.windows import valid_starts

    starts = valid_starts(traj.episode_ends, horizon)
    if len(starts) == 0:
        raise DataError(f"{traj.source}: no training window of horizon {horizon} to calibrate on")
    rng = np.random.default_rng(seed)
    idx = starts[rng.integers(len(starts), size=samples)]
    obs = np.asarray(traj.observations[idx], np.float32)
    goal = np.asarray(traj.goals[idx], np.float32) if traj.goals is not None else None
    noise = rng.standard_normal((samples, horizon, window_dim), dtype=np.float32)
    return CalibrationSet(obs, goal, noise, source=traj.source, seed=seed)


def calibration_for_run(run, samples: int, seed: int = 0, data: str | os.PathLike | None = None) -> CalibrationSet:
    """Calibration set for a loaded run (kdp_edge.checkpoint.LoadedRun) from its training data,
    or from ``data`` when given (a copy of the dataset at another path). Raises DataError naming the
    fix when the data is not on this machine."""
    from kdp_edge.data.readers import load_trajectories
    from kdp_edge.errors import DataError

    path = data or run.cfg.data.path or run.info.data
    if not path or not Path(path).exists():
        raise DataError(f"int8 calibration needs the run's training data, and {path or '(no path recorded)'} "
                        "is not on this machine: pass --data PATH (the dataset the run was trained on, or one "
                        "generated the same way, e.g. kdp-edge data pointmaze --maze umaze --out PATH), "
                        "or export without --quantize int8")
    traj = load_trajectories(path, goal=run.cfg.data.goal, obs_history=run.cfg.data.obs_history)
    return draw_calibration(traj, run.info.horizon, run.info.layout.dim, samples, seed)


class OnnxCalibrationReader(CalibrationDataReader):
    """onnxruntime.quantization reader over a :class:`CalibrationSet`, ``batch`` rows per feed.

    ``input_names`` are the ONNX graph's inputs (``obs``, ``goal``, ``noise`` or without goal).
    The reader can be rewound (:meth:`rewind`) to feed the same data to qdq_loss_debug.
    """

    def __init__(self, calib: CalibrationSet, input_names: list[str], batch: int = 16):
        self.calib, self.names, self.batch = calib, list(input_names), max(1, int(batch))
        missing = [n for n in self.names if n not in ("obs", "goal", "noise")]
        if missing or ("goal" in self.names) != (calib.goal is not None):
            raise ValueError(f"graph inputs {self.names} do not match the calibration set "
                             f"(goal {'present' if calib.goal is not None else 'absent'})")
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        n = len(self.calib)
        for s in range(0, n, self.batch):
            f = self.calib.feeds(s, min(n, s + self.batch))
            yield {k: f[k] for k in self.names}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None
