"""PointMaze evaluation with random goal and start cells (kdp-edge eval --goals random) and the
stall count: an episode that never arrives and barely moves over its last 100 steps."""

from __future__ import annotations

import json
import subprocess

import numpy as np
from conftest import kdp_cmd

from kdp_edge.evaluate import EvalProtocol, episode_goals, summarize
from kdp_edge.mazes import D4RL_PROTOCOL, Maze


def test_random_goals_are_seeded_free_cells_distinct_from_starts():
    maze = Maze.named("medium")
    proto = EvalProtocol(env="pointmaze-medium", episodes=30, seed=4, goals="random")
    goals, starts = episode_goals(maze, proto)
    again, _ = episode_goals(maze, proto)
    np.testing.assert_array_equal(goals, again)  # seeded
    assert len({tuple(g) for g in goals}) > 5  # not one goal
    free = {tuple(maze.cell_to_xy(c)) for c in maze.free_cells()}
    for g, s in zip(goals, starts, strict=True):
        assert tuple(g) in free
        assert tuple(maze.xy_to_cell(s)) != tuple(maze.xy_to_cell(g))
    fixed, _ = episode_goals(maze, EvalProtocol(env="pointmaze-medium", episodes=3))
    assert (fixed == maze.cell_to_xy(D4RL_PROTOCOL["medium"]["goal_cell"])).all()


def test_summary_counts_stalls():
    res = {"scores": np.array([1.0, 2.0, 3.0]), "returns": np.zeros(3), "success": np.array([True, False, False]),
           "stalled": np.array([False, True, False]), "arrival_step": np.array([40, -1, -1])}
    s = summarize(res)
    assert s["stalled_rate"] == 1 / 3 and s["stalled_episodes"] == [1] and s["mean_arrival_step"] == 40.0


def test_eval_cli_random_goals(tiny_run, tmp_path, cli_env):
    out = tmp_path / "eval.json"
    r = subprocess.run(kdp_cmd("eval", str(tiny_run), "--env", "pointmaze-umaze", "--episodes", "3", "-k", "2",
                               "--goals", "random", "--out", str(out), "--quiet"),
                       env=cli_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["protocol"]["goals"] == "random" and "random goal and start cells" in rep["protocol_text"]
    assert rep["expert"]["success_rate"] == 1.0  # the scripted expert reaches every random goal in UMaze
    for name in ("kdp", "expert"):
        assert 0.0 <= rep[name]["stalled_rate"] <= 1.0 and "stalled_episodes" in rep[name]
    assert "| stalled |" in r.stdout
