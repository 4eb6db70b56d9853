"""Scripted-expert data for the arm task (:mod:`kdp_edge.arm`), in the layout PointMaze data uses
(D4RL: observations, actions, timeouts, infos/goal; written by :func:`~kdp_edge.data.pointmaze.write_d4rl_hdf5`),
so ``kdp-edge train --data FILE`` reads it unchanged, goal-conditioned.

One continuing stream on the task's plant (the virtual servo bus's model): the expert
(:class:`~kdp_edge.arm.ArmExpert`) drives to a random goal pose, holds it for 0..``dwell`` steps on
arrival, then a new goal is drawn from where the arm is; Gaussian noise of std ``noise`` rad on its
commands gives the data diversity. ``timeouts`` every ``timeout_every`` steps (the plant is not reset).
Shapes: observations [N, 6], actions [N, 6], infos/goal [N, 6] (radians).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from ..arm import SPEC, ArmExpert, ArmPlant, random_poses, reached
from .expert_stream import GoalDwell, d4rl_timeouts, report_progress

ENV = "arm"


@dataclass
class ArmDataConfig:
    steps: int = 200_000
    noise: float = 0.02  # rad: std of Gaussian noise on every commanded goal position
    seed: int = 0
    dwell: int = 10  # on arrival, hold the goal for U{0..dwell} steps before the next goal is drawn
    timeout_every: int = 1000


def generate_arm(cfg: ArmDataConfig, progress=None) -> dict[str, np.ndarray]:
    """Run the expert for ``cfg.steps`` steps; arrays in the D4RL layout (``progress(n)`` every 5000 steps)."""
    if cfg.steps < 1 or cfg.noise < 0 or cfg.dwell < 0 or cfg.timeout_every < 1:
        raise ValueError(f"arm data config {cfg}: steps and timeout_every must be >= 1, noise and dwell >= 0")
    rng = np.random.default_rng([cfg.seed, 1])
    expert = ArmExpert(SPEC)
    n = int(cfg.steps)
    obs, act, goal_buf = (np.empty((n, 6), np.float32) for _ in range(3))
    rew = np.zeros(n, np.float32)
    plant = ArmPlant(random_poses(rng, 1)[0])
    goal = random_poses(rng, 1)[0]
    dwell = GoalDwell(cfg.dwell, rng)
    for t in range(n):
        q = plant.q[0]
        if dwell.new_goal_due(bool(reached(q, goal))):
            goal = random_poses(rng, 1)[0]
        a = expert.act(q, goal)
        if cfg.noise > 0:
            a = a + rng.normal(0.0, cfg.noise, size=6)
        a = np.clip(a, SPEC.low, SPEC.high)
        obs[t], goal_buf[t], act[t] = q, goal, a
        rew[t] = float(reached(plant.step(a[None])[0], goal))
        report_progress(progress, t, n)
    timeouts = d4rl_timeouts(n, cfg.timeout_every)
    return {"observations": obs, "actions": act, "rewards": rew, "terminals": np.zeros(n, bool),
            "timeouts": timeouts, "infos/goal": goal_buf, "infos/qpos": obs.copy()}


def config_attrs(cfg: ArmDataConfig) -> dict:
    """HDF5 attributes: the generator, its config, and the env name the trainer records."""
    return {"kdp_edge_generator": "arm", "config": json.dumps(asdict(cfg) | {"spec": asdict(SPEC)}), "env": ENV}
