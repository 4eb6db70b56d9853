"""Generate a D4RL-maze2d-style dataset in gymnasium-robotics PointMaze (needs the ``sim`` extra).

One continuing stream: the waypoint expert drives toward a goal; on arrival a new random goal cell
is drawn; ``timeouts`` is set every ``timeout_every`` steps (the physics is not reset, as in D4RL).

``dwell > 0`` departs from D4RL: on arrival the expert first holds at the goal for a random
0..dwell steps. Without it the data never shows the ball *staying* at its goal (a new goal is drawn
the moment it arrives), and a planner trained on it circles around the goal instead of holding:
on PointMaze medium it spent ~45% of the post-arrival steps outside the goal radius.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import require
from ..fileio import atomic_write
from .expert_stream import GoalDwell, d4rl_timeouts, report_progress


@dataclass
class PointMazeDataConfig:
    maze: str = "umaze"
    steps: int = 1_000_000
    noise: float = 0.0  # std of Gaussian action noise (actions are clipped to [-1, 1] after it)
    seed: int = 0
    arrive_radius: float = 0.3  # metres: a new goal is drawn when the ball is this close
    timeout_every: int = 1000
    goal_noise: float = 0.25  # goal = free-cell centre + U(-goal_noise, goal_noise) cells
    dwell: int = 0  # on arrival, hold at the goal for U{0..dwell} steps before the next goal is drawn


def generate_pointmaze(cfg: PointMazeDataConfig, progress=None) -> dict[str, np.ndarray]:
    """Run the expert for ``cfg.steps`` steps; returns arrays in the D4RL layout.

    ``progress(n)`` is called with the number of new steps every few thousand steps.
    """
    from ..expert import WaypointExpert
    from ..sim import PointMazeSim

    sim = PointMazeSim(cfg.maze, seed=cfg.seed)
    expert = WaypointExpert(sim.maze)
    rng = np.random.default_rng(cfg.seed + 1)
    n = int(cfg.steps)
    obs_buf = np.empty((n, 4), np.float32)
    act_buf = np.empty((n, 2), np.float32)
    goal_buf = np.empty((n, 2), np.float32)
    rew_buf = np.empty((n,), np.float32)
    start = sim.random_cell_xy(noise=cfg.goal_noise)
    goal = sim.random_cell_xy(exclude=tuple(sim.maze.xy_to_cell(start)), noise=cfg.goal_noise)
    obs = sim.reset(start, goal)
    dwell = GoalDwell(cfg.dwell, rng)
    for t in range(n):
        if dwell.new_goal_due(bool(np.linalg.norm(obs[:2] - goal) < cfg.arrive_radius)):
            goal = sim.random_cell_xy(exclude=tuple(sim.maze.xy_to_cell(obs[:2])), noise=cfg.goal_noise)
            sim.set_goal(goal)
        act = expert.act(obs, goal)
        if cfg.noise > 0:
            act = np.clip(act + rng.normal(0.0, cfg.noise, size=2), -1.0, 1.0)
        obs_buf[t], goal_buf[t], act_buf[t] = obs, goal, act
        obs = sim.step(act)
        rew_buf[t] = float(np.linalg.norm(obs[:2] - goal) <= 0.5)
        report_progress(progress, t, n)
    timeouts = d4rl_timeouts(n, cfg.timeout_every)
    return {
        "observations": obs_buf,
        "actions": act_buf,
        "rewards": rew_buf,
        "terminals": np.zeros(n, bool),
        "timeouts": timeouts,
        "infos/goal": goal_buf,
        "infos/qpos": obs_buf[:, :2].copy(),  # the point mass's observation is [qpos, qvel]
        "infos/qvel": obs_buf[:, 2:].copy(),
    }


def write_d4rl_hdf5(path: str | Path, arrays: dict[str, np.ndarray], attrs: dict | None = None) -> Path:
    """Write arrays (keys may contain '/') to an HDF5 file atomically."""
    h5py = require("h5py", "sim", "Writing HDF5 datasets")

    def _w(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            for key, arr in arrays.items():
                f.create_dataset(key, data=arr, compression="gzip", compression_opts=1)
            for k, v in (attrs or {}).items():
                f.attrs[k] = v

    return atomic_write(path, _w)


def config_attrs(cfg: PointMazeDataConfig) -> dict:
    import json

    return {"kdp_edge_generator": "pointmaze", "config": json.dumps(asdict(cfg)), "env": f"pointmaze-{cfg.maze}"}
