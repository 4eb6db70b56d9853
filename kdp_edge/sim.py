"""PointMaze simulation (gymnasium-robotics ``PointMaze_*-v3``; needs the ``sim`` extra).

A thin wrapper that drives the MuJoCo point mass directly and leaves goals, rewards and resets to
kdp-edge, so data generation, evaluation and the virtual robot share one plant
(:class:`kdp_edge.evaluate.PointMazeEpisodes` plays the evaluation's episodes on it behind
``sim://pointmaze-*`` ports).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np

from .errors import require
from .mazes import Maze

_GYM_IDS = {"umaze": "PointMaze_UMaze-v3", "medium": "PointMaze_Medium-v3", "large": "PointMaze_Large-v3"}


class PointMazeSim:
    """One PointMaze instance. Observations are [x, y, vx, vy] (m, m/s); actions [fx, fy] in [-1, 1].

    ``dt`` is the simulated time of one ``step`` (seconds).
    """

    def __init__(self, maze: str | Maze = "umaze", seed: int = 0):
        self.maze = maze if isinstance(maze, Maze) else Maze.named(maze)
        os.environ.setdefault("MUJOCO_GL", "egl")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gym = require("gymnasium", "sim", "PointMaze simulation")
            # gymnasium-robotics prints a notice about Adroit envs on import; it is not ours to show
            with contextlib.redirect_stderr(io.StringIO()):
                gr = require("gymnasium_robotics", "sim", "PointMaze simulation")
            gym.register_envs(gr)
            env = gym.make(
                _GYM_IDS[self.maze.name], continuing_task=True, reset_target=False, max_episode_steps=10**12
            )
        self._env = env.unwrapped
        self._point = self._env.point_env
        self.dt = float(self._point.dt)
        self.rng = np.random.default_rng(seed)
        self._env.reset(seed=int(seed))
        self.goal = np.zeros(2)

    def reset(self, start_xy: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
        """Place the ball at ``start_xy`` at rest and set the goal; returns the observation [4]."""
        qpos = np.asarray(start_xy, dtype=np.float64).copy()
        self._point.set_state(qpos, np.zeros(2))
        self.set_goal(goal_xy)
        return self.observation()

    def set_goal(self, goal_xy: np.ndarray) -> None:
        self.goal = np.asarray(goal_xy, dtype=np.float64).copy()
        self._env.goal = self.goal.copy()

    def observation(self) -> np.ndarray:
        data = self._point.data
        return np.concatenate([data.qpos[:2], data.qvel[:2]]).astype(np.float64)

    def step(self, action: np.ndarray) -> np.ndarray:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._point.do_simulation(action, self._point.frame_skip)
        # gymnasium-robotics clips the velocity to [-5, 5] after each step
        qvel = np.clip(self._point.data.qvel, -5.0, 5.0)
        self._point.set_state(self._point.data.qpos, qvel)
        return self.observation()

    def random_cell_xy(self, exclude=None, noise: float = 0.25) -> np.ndarray:
        """A uniformly chosen free cell's centre plus uniform noise of +-``noise`` cells."""
        cells = [c for c in self.maze.free_cells() if exclude is None or c != tuple(exclude)]
        cell = cells[self.rng.integers(len(cells))]
        return self.maze.cell_to_xy(cell) + self.rng.uniform(-noise, noise, size=2) * self.maze.scale


class PointMazePlant:
    """The PointMaze sim as a plant for the virtual robot (state [4], action [2])."""

    state_dim = 4
    action_dim = 2
    action_low = np.array([-1.0, -1.0])
    action_high = np.array([1.0, 1.0])

    def __init__(self, maze: str = "umaze", goal_cell=None, seed: int = 0):
        from .mazes import D4RL_PROTOCOL, GOAL_RADIUS

        self.sim = PointMazeSim(maze, seed=seed)
        cell = goal_cell if goal_cell is not None else D4RL_PROTOCOL[self.sim.maze.name]["goal_cell"]
        self.goal = self.sim.maze.cell_to_xy(cell)
        self.goal_radius = GOAL_RADIUS
        self._state = np.zeros(4)
        self.hits = 0
        self.steps = 0  # simulator steps since reset
        self.next_start: np.ndarray | None = None
        self.horizon: int | None = None  # count rewards only for this many simulator steps per episode

    def reset(self, seed: int | None = None) -> np.ndarray:
        """New episode: ``next_start`` (x, y) if set (consumed), else a random free cell."""
        if seed is not None:
            self.sim.rng = np.random.default_rng(seed)
        goal_cell = tuple(self.sim.maze.xy_to_cell(self.goal))
        start = self.next_start if self.next_start is not None else self.sim.random_cell_xy(exclude=goal_cell)
        self.next_start = None
        self._state = self.sim.reset(start, self.goal)
        self.hits = 0
        self.steps = 0
        return self._state.copy()

    def step(self, action: np.ndarray, dt: float) -> np.ndarray:
        """Advance by ``dt`` seconds (whole simulator steps, at least one); rewards are counted per
        simulator step, as in the D4RL protocol of ``kdp-edge eval``."""
        n = max(1, int(round(dt / self.sim.dt)))
        for _ in range(n):
            self._state = self.sim.step(action)
            self.steps += 1
            if self.horizon is None or self.steps <= self.horizon:
                self.hits += int(np.linalg.norm(self._state[:2] - self.goal) <= self.goal_radius)
        return self._state.copy()

    def info(self) -> dict:
        return {"success": bool(np.linalg.norm(self._state[:2] - self.goal) <= self.goal_radius),
                "goal": self.goal.tolist(), "steps": self.steps, "steps_at_goal": self.hits}

