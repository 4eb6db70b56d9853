"""Maze geometry used by the planner's scorer (shared by training-side evaluation and the device)."""

import numpy as np
import pytest

from kdp_edge.mazes import Maze


def nine_point_in_wall(maze: Maze, xy: np.ndarray, margin: float) -> np.ndarray:
    offs = np.array([(dx, dy) for dx in (-margin, 0.0, margin) for dy in (-margin, 0.0, margin)])
    rc = maze.xy_to_cell(xy[..., None, :] + offs)
    return (maze.grid[rc[..., 0], rc[..., 1]] == 1).any(axis=-1)


@pytest.mark.parametrize("name", ["umaze", "medium", "large"])
@pytest.mark.parametrize("margin", [0.0, 0.05, 0.07, 0.2, 0.6])
def test_fast_in_wall_equals_the_nine_point_test(name, margin):
    maze = Maze.named(name)
    rng = np.random.default_rng(0)
    half = np.array([maze.cols, maze.rows]) * maze.scale / 2
    xy = rng.uniform(-half - 0.5, half + 0.5, size=(20000, 2))
    # and points right at cell edges, where off-by-one errors live
    edges = np.round(xy / maze.scale * 2) / 2 * maze.scale + rng.choice([-1e-3, 0.0, 1e-3], size=xy.shape)
    for pts in (xy, edges):
        np.testing.assert_array_equal(maze.in_wall(pts, margin=margin), nine_point_in_wall(maze, pts, margin))
    assert maze.in_wall(xy.reshape(100, 200, 2), margin=margin).shape == (100, 200)
