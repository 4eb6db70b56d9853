"""PointMaze (gymnasium-robotics ``PointMaze_*-v3``): env names ``pointmaze-umaze|medium|large``.

Data steps are one 10 ms mujoco step; plans are scored by the maze's geodesic distance with a wall
penalty; actions are forces in [-1, 1]; datasets without goals get hindsight goals; evaluation is
the D4RL maze2d protocol (:mod:`kdp_edge.evaluate`), the export's closed-loop check runs the same
protocol on every exported model (:mod:`export.closed_loop`). The virtual robot behind
``sim://pointmaze-*`` ports is :class:`kdp_edge.evaluate.PointMazeEpisodes`.
"""

from __future__ import annotations

from . import Environment

PREFIX = "pointmaze-"


class PointMaze(Environment):
    name = "pointmaze"
    variants = ["pointmaze-umaze", "pointmaze-medium", "pointmaze-large"]
    step_dt_s = 0.01
    hindsight_goals = True
    evaluate = "kdp_edge.evaluate:evaluate_pointmaze"
    closed_loop = "export.closed_loop:pointmaze_scores"
    closed_loop_needs = ("gymnasium", "gymnasium_robotics", "mujoco")
    closed_loop_extra = "sim"
    sim_plant = "kdp_edge.evaluate:PointMazeEpisodes"
    sim_needs = ("gymnasium", "gymnasium_robotics", "mujoco")
    sim_extra = "sim"

    def matches(self, env: str) -> bool:
        return env.startswith("pointmaze")

    @staticmethod
    def maze_name(env: str) -> str:
        return env.removeprefix(PREFIX)

    def scoring_kwargs(self, env: str, goal_dim: int, layout, executed_steps: int = 8) -> dict:
        if goal_dim == 0:
            return super().scoring_kwargs(env, goal_dim, layout, executed_steps)
        return {"kind": "maze_geodesic", "maze": self.maze_name(env)} if env.startswith(PREFIX) else {}

    def free_positions(self, env: str) -> list | None:
        from ..mazes import Maze

        try:
            maze = Maze.named(self.maze_name(env))
        except (KeyError, ValueError):
            return None
        return [maze.cell_to_xy(c) for c in maze.free_cells()]

    def fallback_action_limits(self, act_dim: int) -> tuple:
        import numpy as np

        return -np.ones(act_dim), np.ones(act_dim)
