"""Maze geometry for PointMaze (numpy only; usable on the device).

Maps and coordinates follow gymnasium-robotics ``PointMaze_*-v3``: ``1`` is a wall cell, ``0`` free;
cell (row, col) has its centre at ``x = (col + 0.5) * s - W*s/2``, ``y = H*s/2 - (row + 0.5) * s`` with
cell size ``s = 1`` (metres in the simulator's units).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

MAPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "umaze": (
        (1, 1, 1, 1, 1),
        (1, 0, 0, 0, 1),
        (1, 1, 1, 0, 1),
        (1, 0, 0, 0, 1),
        (1, 1, 1, 1, 1),
    ),
    "medium": (
        (1, 1, 1, 1, 1, 1, 1, 1),
        (1, 0, 0, 1, 1, 0, 0, 1),
        (1, 0, 0, 1, 0, 0, 0, 1),
        (1, 1, 0, 0, 0, 1, 1, 1),
        (1, 0, 0, 1, 0, 0, 0, 1),
        (1, 0, 1, 0, 0, 1, 0, 1),
        (1, 0, 0, 0, 1, 0, 0, 1),
        (1, 1, 1, 1, 1, 1, 1, 1),
    ),
    "large": (
        (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
        (1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1),
        (1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1),
        (1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1),
        (1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1),
        (1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1),
        (1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1),
        (1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1),
        (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ),
}

#: D4RL maze2d evaluation protocol: fixed goal cell, episode horizon, and the normalisation
#: constants (random / expert returns of D4RL; only approximately comparable on gymnasium-robotics).
D4RL_PROTOCOL: dict[str, dict] = {
    "umaze": {"goal_cell": (1, 1), "horizon": 300, "ref_min": 23.85, "ref_max": 161.86},
    "medium": {"goal_cell": (6, 6), "horizon": 600, "ref_min": 13.13, "ref_max": 277.39},
    "large": {"goal_cell": (7, 9), "horizon": 800, "ref_min": 6.7, "ref_max": 273.99},
}

GOAL_RADIUS = 0.5  # sparse reward radius of the D4RL protocol
BALL_RADIUS = 0.1  # the point mass's radius in PointMaze


@dataclass(frozen=True)
class Maze:
    """A grid maze. ``grid[row, col] == 1`` is a wall."""

    name: str
    grid: np.ndarray = field(repr=False)
    scale: float = 1.0

    @staticmethod
    def named(name: str) -> Maze:
        key = name.lower().removeprefix("pointmaze-")
        if key not in MAPS:
            raise ValueError(f"unknown maze '{name}': choose one of {', '.join(MAPS)}")
        return Maze(key, np.array(MAPS[key], dtype=np.int8))

    @property
    def rows(self) -> int:
        return self.grid.shape[0]

    @property
    def cols(self) -> int:
        return self.grid.shape[1]

    def free_cells(self) -> list[tuple[int, int]]:
        return [(int(r), int(c)) for r, c in zip(*np.nonzero(self.grid == 0), strict=True)]

    def cell_to_xy(self, cell) -> np.ndarray:
        r, c = cell
        return np.array(
            [(c + 0.5) * self.scale - self.cols * self.scale / 2, self.rows * self.scale / 2 - (r + 0.5) * self.scale]
        )

    def xy_to_cell(self, xy: np.ndarray) -> np.ndarray:
        """Map positions ``[..., 2]`` to integer (row, col) ``[..., 2]`` (clipped into the grid)."""
        xy = np.asarray(xy, dtype=np.float64)
        col = np.floor((xy[..., 0] + self.cols * self.scale / 2) / self.scale)
        row = np.floor((self.rows * self.scale / 2 - xy[..., 1]) / self.scale)
        row = np.clip(row, 0, self.rows - 1).astype(np.int64)
        col = np.clip(col, 0, self.cols - 1).astype(np.int64)
        return np.stack([row, col], axis=-1)

    def in_wall(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Boolean ``[...]``: the square of half-width ``margin`` around each position touches a wall cell.

        Same result as testing the nine points ``xy + (dx, dy)``, ``dx, dy in {-margin, 0, margin}``,
        but with at most four grid lookups per position (this runs in every plan on the device).
        """
        xy = np.asarray(xy, dtype=np.float64)
        if margin >= self.scale / 2:
            offs = np.array([(dx, dy) for dx in (-margin, 0.0, margin) for dy in (-margin, 0.0, margin)])
            rc = self.xy_to_cell(xy[..., None, :] + offs)
            return (self.grid[rc[..., 0], rc[..., 1]] == 1).any(axis=-1)
        raster = self._margin_raster(margin)
        if raster is not None:  # margin divides the cell size: the expanded walls are whole raster cells
            n = raster.shape[0] // self.rows
            col = np.clip(np.floor((xy[..., 0] + self.cols * self.scale / 2) * (n / self.scale)), 0, raster.shape[1] - 1)
            row = np.clip(np.floor((self.rows * self.scale / 2 - xy[..., 1]) * (n / self.scale)), 0, raster.shape[0] - 1)
            return raster[row.astype(np.intp), col.astype(np.intp)]
        fx = (xy[..., 0] + self.cols * self.scale / 2) / self.scale
        fy = (self.rows * self.scale / 2 - xy[..., 1]) / self.scale
        col = np.clip(np.floor(fx), 0, self.cols - 1).astype(np.intp) + 1  # +1: index into the padded grid
        row = np.clip(np.floor(fy), 0, self.rows - 1).astype(np.intp) + 1
        wall = self._padded_walls()
        hit = wall[row, col]
        if margin <= 0:
            return hit
        m = margin / self.scale
        u, v = fx - np.floor(fx), fy - np.floor(fy)
        dc = np.where(u + m >= 1.0, 1, np.where(u - m < 0.0, -1, 0))
        dr = np.where(v + m >= 1.0, 1, np.where(v - m < 0.0, -1, 0))
        return hit | wall[row, col + dc] | wall[row + dr, col] | wall[row + dr, col + dc]

    def _margin_raster(self, margin: float) -> np.ndarray | None:
        """Walls grown by ``margin`` on a raster of cell size ``margin`` (None unless margin divides
        the cell size): one lookup per position, same result as the nine-point test."""
        if margin <= 0:
            return None
        n = self.scale / margin
        if abs(n - round(n)) > 1e-9 or round(n) > 200:
            return None
        cache = getattr(self, "_rasters", None)
        if cache is None:
            cache = {}
            object.__setattr__(self, "_rasters", cache)
        n = int(round(n))
        if n not in cache:
            wall = self._padded_walls()
            rr, cc = np.arange(self.rows) + 1, np.arange(self.cols) + 1
            r = np.zeros((self.rows * n, self.cols * n), bool)
            # raster cell i of n within a maze cell is within one margin of the previous cell's edge
            # when i == 0 and of the next cell's edge when i == n - 1 (margin = one raster cell)
            step = lambda i: -1 if i == 0 else (1 if i == n - 1 else 0)  # noqa: E731
            for i in range(n):
                for j in range(n):
                    dr, dc = step(i), step(j)
                    r[i::n, j::n] = (wall[np.ix_(rr, cc)] | wall[np.ix_(rr, cc + dc)] | wall[np.ix_(rr + dr, cc)]
                                     | wall[np.ix_(rr + dr, cc + dc)])
            cache[n] = r
        return cache[n]

    def _padded_walls(self) -> np.ndarray:
        if getattr(self, "_walls_p", None) is None:
            object.__setattr__(self, "_walls_p", np.pad(self.grid == 1, 1, constant_values=True))
        return self._walls_p

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        """Scalar fast path of :meth:`xy_to_cell`."""
        col = math.floor((x + self.cols * self.scale / 2) / self.scale)
        row = math.floor((self.rows * self.scale / 2 - y) / self.scale)
        return (min(max(row, 0), self.rows - 1), min(max(col, 0), self.cols - 1))

    def cell_distances(self, goal_cell) -> np.ndarray:
        """BFS distance in cells from every cell to ``goal_cell`` (walls and unreachable: -1)."""
        return _cell_bfs(self.name, self.grid.tobytes(), self.grid.shape, tuple(int(v) for v in goal_cell))

    def next_cell(self, cell, goal_cell) -> tuple[int, int]:
        """The neighbouring cell one BFS step closer to ``goal_cell`` (``cell`` itself at the goal)."""
        dist = self.cell_distances(goal_cell)
        r, c = int(cell[0]), int(cell[1])
        if dist[r, c] <= 0:
            return (r, c)
        best = (r, c)
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < self.rows and 0 <= cc < self.cols and 0 <= dist[rr, cc] < dist[best]:
                best = (rr, cc)
        return best

    def geodesic_field(self, goal_xy, resolution: int = 10) -> GeodesicField:
        """Shortest-path distance to ``goal_xy`` through free space, on a grid of ``resolution``
        sub-cells per cell (8-connected Dijkstra). Lookups are O(1)."""
        return GeodesicField.build(self, np.asarray(goal_xy, dtype=np.float64), resolution)


@lru_cache(maxsize=64)
def _cell_bfs(name: str, grid_bytes: bytes, shape: tuple[int, int], goal: tuple[int, int]) -> np.ndarray:
    grid = np.frombuffer(grid_bytes, dtype=np.int8).reshape(shape)
    dist = -np.ones(shape, dtype=np.int64)
    if grid[goal] == 1:
        raise ValueError(f"goal cell {goal} is a wall in maze '{name}'")
    dist[goal] = 0
    queue = deque([goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < shape[0] and 0 <= cc < shape[1] and grid[rr, cc] == 0 and dist[rr, cc] < 0:
                dist[rr, cc] = dist[r, c] + 1
                queue.append((rr, cc))
    return dist


@dataclass(frozen=True)
class GeodesicField:
    """Distance-to-goal through free space, sampled on a fine grid over the maze."""

    maze: Maze
    goal_xy: np.ndarray
    resolution: int
    dist: np.ndarray = field(repr=False)  # [rows*res, cols*res], +inf inside walls

    @staticmethod
    def build(maze: Maze, goal_xy: np.ndarray, resolution: int) -> GeodesicField:
        res = resolution
        h, w = maze.rows * res, maze.cols * res
        free = np.repeat(np.repeat(maze.grid == 0, res, axis=0), res, axis=1)
        step = maze.scale / res
        # centres of the sub-cells in world coordinates
        cols = (np.arange(w) + 0.5) * step - maze.cols * maze.scale / 2
        rows = maze.rows * maze.scale / 2 - (np.arange(h) + 0.5) * step
        dist = np.full((h, w), np.inf)
        gr = int(np.clip((maze.rows * maze.scale / 2 - goal_xy[1]) / step, 0, h - 1))
        gc = int(np.clip((goal_xy[0] + maze.cols * maze.scale / 2) / step, 0, w - 1))
        if not free[gr, gc]:
            raise ValueError(f"goal {goal_xy.tolist()} lies inside a wall of maze '{maze.name}'")
        dist[gr, gc] = float(np.hypot(cols[gc] - goal_xy[0], rows[gr] - goal_xy[1]))
        heap = [(dist[gr, gc], gr, gc)]
        moves = [(dr, dc, step * float(np.hypot(dr, dc))) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]
        while heap:
            d, r, c = heapq.heappop(heap)
            if d > dist[r, c]:
                continue
            for dr, dc, cost in moves:
                rr, cc = r + dr, c + dc
                if 0 <= rr < h and 0 <= cc < w and free[rr, cc]:
                    # diagonal moves may not cut a wall corner
                    if dr and dc and not (free[r + dr, c] and free[r, c + dc]):
                        continue
                    nd = d + cost
                    if nd < dist[rr, cc]:
                        dist[rr, cc] = nd
                        heapq.heappush(heap, (nd, rr, cc))
        return GeodesicField(maze, goal_xy, res, dist)

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        """Geodesic distance ``[...]`` for positions ``[..., 2]``; +inf inside walls."""
        xy = np.asarray(xy, dtype=np.float64)
        step = self.maze.scale / self.resolution
        h, w = self.dist.shape
        r = np.clip(((self.maze.rows * self.maze.scale / 2 - xy[..., 1]) / step).astype(np.int64), 0, h - 1)
        c = np.clip(((xy[..., 0] + self.maze.cols * self.maze.scale / 2) / step).astype(np.int64), 0, w - 1)
        return self.dist[r, c]
