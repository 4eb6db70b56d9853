"""Trajectory windows, their normalisation, and condition-space nearest neighbours (numpy only).

A window of horizon H starting at step t is ``[obs_t, act_t], ..., [obs_{t+H-1}, act_{t+H-1}]``
(shape [H, obs_dim + act_dim]), or with ``data.window`` "actions" ``act_t, ..., act_{t+H-1}`` (shape
[H, act_dim]; :mod:`kdp_edge.layout`); it never crosses an episode boundary (terminal or timeout).
Its condition is ``[obs_t, goal_t]`` either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError
from .layout import STATES_ACTIONS, WindowLayout, check_window


@dataclass
class Trajectories:
    """A flat stream of steps. ``episode_ends[t]`` marks the last step of a segment."""

    observations: np.ndarray  # [T, O] float32
    actions: np.ndarray  # [T, A] float32
    episode_ends: np.ndarray  # [T] bool
    goals: np.ndarray | None = None  # [T, G] float32 or None
    source: str = ""
    env: str = ""  # e.g. "pointmaze-umaze" when known
    step_dt_s: float = 0.0  # seconds between steps when the dataset says (LeRobot: 1 / fps); 0: unknown
    obs_names: list[str] | None = None  # names of one observation's values (before obs_history stacking)
    act_names: list[str] | None = None

    def __post_init__(self) -> None:
        t = len(self.observations)
        for name, arr in (("actions", self.actions), ("episode_ends", self.episode_ends), ("goals", self.goals)):
            if arr is not None and len(arr) != t:
                raise DataError(
                    f"{self.source or 'dataset'}: '{name}' has {len(arr)} rows but observations has {t}; "
                    "the file is inconsistent (re-generate or re-export it)"
                )
        if self.observations.ndim != 2 or self.actions.ndim != 2:
            raise DataError(f"{self.source}: observations and actions must be 2-D [steps, dims]")
        for name, arr in (("observations", self.observations), ("actions", self.actions), ("goals", self.goals)):
            if arr is not None and not np.isfinite(arr).all():
                raise DataError(f"{self.source}: '{name}' contains NaN or inf values; clean the dataset first")

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def goal_dim(self) -> int:
        return 0 if self.goals is None else self.goals.shape[1]


STATS = ("obs_mean", "obs_std", "goal_mean", "goal_std", "win_mean", "win_std")


def window_steps(traj: Trajectories, window: str = STATES_ACTIONS) -> np.ndarray:
    """Every step's window values [T, D]: ``[obs, act]``, or ``act`` for action-only windows."""
    if WindowLayout(traj.obs_dim, traj.act_dim, window).has_states:
        return np.concatenate([traj.observations, traj.actions], axis=1)
    return traj.actions


@dataclass
class Normalizer:
    """Per-dimension z-score statistics; saved as JSON next to every checkpoint and bundle."""

    obs_mean: np.ndarray
    obs_std: np.ndarray
    goal_mean: np.ndarray
    goal_std: np.ndarray
    win_mean: np.ndarray  # [D] over every step of every window: [obs, act] (or act, see ``window``)
    win_std: np.ndarray
    window: str = STATES_ACTIONS  # the window content (kdp_edge.layout); absent in older normalizer.json files

    def __post_init__(self) -> None:
        check_window(self.window, "normalizer window")

    @property
    def obs_dim(self) -> int:
        return len(self.obs_mean)

    @property
    def goal_dim(self) -> int:
        return len(self.goal_mean)

    @property
    def act_dim(self) -> int:
        return len(self.win_mean) - (len(self.obs_mean) if self.window == STATES_ACTIONS else 0)

    @property
    def layout(self) -> WindowLayout:
        return WindowLayout(self.obs_dim, self.act_dim, self.window)

    @staticmethod
    def fit(traj: Trajectories, min_std: float = 1e-3, window: str = STATES_ACTIONS) -> Normalizer:
        obs = traj.observations.astype(np.float64)
        step = window_steps(traj, window).astype(np.float64)
        goals = traj.goals.astype(np.float64) if traj.goals is not None else np.zeros((len(obs), 0))
        return Normalizer(
            obs_mean=obs.mean(0), obs_std=np.maximum(obs.std(0), min_std),
            goal_mean=goals.mean(0) if goals.shape[1] else np.zeros(0),
            goal_std=np.maximum(goals.std(0), min_std) if goals.shape[1] else np.zeros(0),
            win_mean=step.mean(0), win_std=np.maximum(step.std(0), min_std), window=window,
        )

    def tensors(self) -> dict[str, np.ndarray]:
        """The statistics as float32 arrays (the models' buffers)."""
        return {k: np.asarray(getattr(self, k), dtype=np.float32) for k in STATS}

    def to_dict(self) -> dict:
        return {k: np.asarray(getattr(self, k), dtype=np.float64).tolist() for k in STATS} | {"window": self.window}

    @staticmethod
    def from_dict(d: dict) -> Normalizer:
        """Reads files written before ``window`` existed as states+actions (their windows were)."""
        return Normalizer(**{k: np.asarray(d[k], dtype=np.float64) for k in STATS},
                          window=d.get("window", STATES_ACTIONS))

    def norm_condition(self, obs: np.ndarray, goal: np.ndarray | None) -> np.ndarray:
        c = (obs - self.obs_mean) / self.obs_std
        if self.goal_dim:
            c = np.concatenate([c, (goal - self.goal_mean) / self.goal_std], axis=-1)
        return c.astype(np.float32)

    def norm_window(self, win: np.ndarray) -> np.ndarray:
        return ((win - self.win_mean) / self.win_std).astype(np.float32)

    def denorm_window(self, win: np.ndarray) -> np.ndarray:
        return win * self.win_std + self.win_mean


class WindowSet:
    """All valid windows of a dataset, gathered lazily by start index (no [N, H, D] copy in memory).

    ``knn(starts, p)`` returns, for each query window, the ``p`` windows nearest in normalised
    condition space (the query itself included, at distance 0), from an index built once.
    """

    def __init__(self, traj: Trajectories, horizon: int, normalizer: Normalizer | None = None,
                 window: str | None = None):
        """``window``: the window content (default the normaliser's, else states+actions)."""
        if horizon < 2:
            raise DataError(f"horizon must be at least 2 (got {horizon})")
        if normalizer is not None and window is not None and window != normalizer.window:
            raise DataError(f"window {window!r} asked for, but the normaliser was fitted on {normalizer.window!r} "
                            "windows (a resumed run keeps its window content)")
        self.traj = traj
        self.horizon = horizon
        self.norm = normalizer or Normalizer.fit(traj, window=window or STATES_ACTIONS)
        self.layout = self.norm.layout
        steps = window_steps(traj, self.norm.window).astype(np.float32)
        self.steps_norm = self.norm.norm_window(steps)  # [T, D]
        goals = traj.goals if traj.goals is not None else np.zeros((len(steps), 0), np.float32)
        self.cond_norm = self.norm.norm_condition(traj.observations, goals)  # [T, C]
        self.starts = valid_starts(traj.episode_ends, horizon)
        if len(self.starts) == 0:
            raise DataError(
                f"{traj.source}: no window of horizon {horizon} fits inside any episode "
                f"(longest episode has {longest_episode(traj.episode_ends)} steps); lower --horizon"
            )
        self._tree = None

    def __len__(self) -> int:
        return len(self.starts)

    def windows(self, starts: np.ndarray) -> np.ndarray:
        """Normalised windows [*starts.shape, H, D] for raw start steps."""
        return self.steps_norm[starts[..., None] + np.arange(self.horizon)]

    def conditions(self, starts: np.ndarray) -> np.ndarray:
        return self.cond_norm[starts]

    def knn(self, starts: np.ndarray, p: int) -> np.ndarray:
        """Start steps [len(starts), p] of the p nearest windows in condition space."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.cond_norm[self.starts])
        p = min(p, len(self.starts))
        _, idx = self._tree.query(self.cond_norm[starts], k=p)
        idx = np.asarray(idx).reshape(len(starts), p)
        return self.starts[idx]


def stack_history(traj: Trajectories, n: int) -> Trajectories:
    """Observations [T, O] -> [T, n * O]: each step's last ``n`` observations, oldest first
    (``[o_{t-n+1}, ..., o_t]``), the first observation of a segment repeated before it (Diffusion
    Policy's padding). Goals, actions and segment ends are unchanged."""
    if n < 1:
        raise DataError(f"obs_history must be at least 1 (got {n})")
    if n == 1:
        return traj
    seg_start, seg_end = segments(traj.episode_ends)
    first = np.repeat(seg_start, seg_end - seg_start + 1)  # [T] first step of each step's segment
    t = np.arange(len(first))
    idx = np.maximum(t[:, None] - np.arange(n - 1, -1, -1)[None], first[:, None])  # [T, n]
    obs = traj.observations[idx].reshape(len(t), -1)
    return Trajectories(obs, traj.actions, traj.episode_ends, traj.goals, source=traj.source, env=traj.env,
                        step_dt_s=traj.step_dt_s, obs_names=traj.obs_names, act_names=traj.act_names)


def segments(episode_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first steps, inclusive last steps) of the segments; the stream's last step always ends one."""
    ends = np.asarray(episode_ends, bool).copy()
    ends[-1] = True
    seg_end = np.flatnonzero(ends)
    return np.concatenate([[0], seg_end[:-1] + 1]), seg_end


def valid_starts(episode_ends: np.ndarray, horizon: int) -> np.ndarray:
    """Start steps t such that t .. t+H-1 lie in one segment."""
    seg_start, seg_end = segments(episode_ends)
    out = [np.arange(s, e - horizon + 2) for s, e in zip(seg_start, seg_end, strict=True) if e - s + 1 >= horizon]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def longest_episode(episode_ends: np.ndarray) -> int:
    ends = np.flatnonzero(np.asarray(episode_ends, bool))
    if len(ends) == 0:
        return len(episode_ends)
    return int(max(np.diff(np.concatenate([[-1], ends, [len(episode_ends) - 1]]))))
