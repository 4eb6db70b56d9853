"""Observation history for bundles trained with ``obs_history`` > 1 (e.g. PushT: the last 2 observations).

The model's ``obs`` input is the last n observations, oldest first, concatenated; the first
observation of an episode is repeated until n have arrived (the padding the training windows used).
"""

from __future__ import annotations

import numpy as np


class ObsHistory:
    """The last ``n`` observations of each of E streams, stacked oldest first: [E, n * O]."""

    def __init__(self, first: np.ndarray, n: int):
        self.buf = np.repeat(np.asarray(first, np.float32)[:, None], n, axis=1)  # [E, n, O]

    def push(self, i: int, obs: np.ndarray) -> None:
        self.buf[i, :-1] = self.buf[i, 1:]
        self.buf[i, -1] = obs

    def stacked(self) -> np.ndarray:
        return self.buf.reshape(len(self.buf), -1).copy()


class HistoryPlanner:
    """Wraps a planner whose bundle has ``obs_history`` = n: ``plan(obs [O])`` with one observation,
    planned on the stacked last n. ``reset()`` starts a new episode (the next observation is repeated)."""

    def __init__(self, inner, n: int):
        self.inner, self.n = inner, n
        self.hist: ObsHistory | None = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def reset(self) -> None:
        self.hist = None

    def stack(self, obs) -> np.ndarray:
        obs = np.asarray(obs, np.float32).reshape(-1)
        if self.hist is None or self.hist.buf.shape[2] != len(obs):
            self.hist = ObsHistory(obs[None], self.n)
        else:
            self.hist.push(0, obs)
        return self.hist.stacked()[0]

    def plan(self, obs, goal=None, noise=None):
        return self.inner.plan(self.stack(obs), goal, noise)
