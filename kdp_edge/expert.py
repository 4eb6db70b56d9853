"""Scripted waypoint expert for PointMaze (numpy only).

Breadth-first search over the maze grid gives the next cell toward the goal cell; a PD controller
drives the point mass toward that cell's centre (or a later cell's centre when the straight line
to it is clear), and toward the goal position itself once in the goal cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mazes import Maze


@dataclass
class WaypointExpert:
    maze: Maze
    kp: float = 10.0  # force per metre of position error
    kd: float = 1.0  # force per (m/s) of velocity
    lookahead_cells: int = 2  # aim at up to this many cells ahead when the line of sight is clear
    clearance: float = 0.15  # metres kept from wall cells on the line-of-sight check

    def target(self, pos: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
        """The position the controller steers to, [2]."""
        cell = self.maze.cell_of(float(pos[0]), float(pos[1]))
        goal_cell = self.maze.cell_of(float(goal_xy[0]), float(goal_xy[1]))
        if cell == goal_cell:
            return np.asarray(goal_xy, dtype=np.float64)
        path = [cell]
        for _ in range(self.lookahead_cells):
            nxt = self.maze.next_cell(path[-1], goal_cell)
            if nxt == path[-1]:
                break
            path.append(nxt)
        target = self.maze.cell_to_xy(path[1])
        for far in path[2:]:
            far_xy = goal_xy if far == goal_cell else self.maze.cell_to_xy(far)
            if self._clear(pos, far_xy):
                target = np.asarray(far_xy, dtype=np.float64)
        return target

    def _clear(self, a: np.ndarray, b: np.ndarray) -> bool:
        t = np.linspace(0.0, 1.0, 16)[:, None]
        pts = a[None, :2] * (1 - t) + np.asarray(b)[None, :2] * t
        return not bool(self.maze.in_wall(pts, margin=self.clearance).any())

    def act(self, obs: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
        """Action [2] in [-1, 1] for observation [x, y, vx, vy] and goal [2]."""
        pos, vel = obs[:2], obs[2:4]
        tgt = self.target(pos, goal_xy)
        return np.clip(self.kp * (tgt - pos) - self.kd * vel, -1.0, 1.0)


def track_action(obs: np.ndarray, target_xy: np.ndarray, kp: float = 10.0, kd: float = 1.0) -> np.ndarray:
    """PD tracker toward a planned position (Diffuser's Maze2D protocol), [2] in [-1, 1]."""
    return np.clip(kp * (np.asarray(target_xy) - obs[:2]) - kd * obs[2:4], -1.0, 1.0)
