"""The bimodal toy (METHOD.md section 5): from the same start, half of the demonstrations pass
above a disc obstacle and half below, to a goal at (1, 0). Numpy only.

Each demonstration is one episode of H steps: observation = position [2], action = velocity [2].
"""

from __future__ import annotations

import numpy as np

from .windows import Trajectories

OBSTACLE = np.array([0.5, 0.0])
OBSTACLE_RADIUS = 0.2
GOAL = np.array([1.0, 0.0])


def bimodal_demos(n: int = 512, horizon: int = 16, start_std: float = 0.02, seed: int = 0) -> Trajectories:
    """n demonstrations; the first half go above the obstacle, the second half below."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, horizon)
    obs, act = [], []
    for i in range(n):
        side = 1.0 if i < n // 2 else -1.0
        start = rng.normal(0.0, start_std, size=2)
        height = side * (0.35 + rng.normal(0.0, 0.02))
        x = start[0] + (GOAL[0] - start[0]) * t
        y = start[1] * (1 - t) + height * np.sin(np.pi * t)
        pos = np.stack([x, y], axis=1)
        vel = np.gradient(pos, axis=0)
        obs.append(pos)
        act.append(vel)
    ends = np.zeros(n * horizon, bool)
    ends[horizon - 1 :: horizon] = True
    return Trajectories(np.concatenate(obs).astype(np.float32), np.concatenate(act).astype(np.float32), ends,
                        None, source="bimodal-toy", env="toy-bimodal")


def mode_report(plans: np.ndarray) -> dict[str, float]:
    """Shares of plans [M, H, D>=2] passing above / below the obstacle and crossing it, and the mean
    step length."""
    pos = plans[..., :2]
    mid = np.argmin(np.abs(pos[..., 0] - OBSTACLE[0]), axis=1)
    y_mid = pos[np.arange(len(pos)), mid, 1]
    through = (np.linalg.norm(pos - OBSTACLE, axis=-1) < OBSTACLE_RADIUS).any(axis=1)
    return {
        "above": float(((y_mid > 0) & ~through).mean()),
        "below": float(((y_mid < 0) & ~through).mean()),
        "through_obstacle": float(through.mean()),
        "step_length": float(np.linalg.norm(np.diff(pos, axis=1), axis=-1).mean()),
    }
