"""The arm task (:mod:`kdp_edge.arm`, issue #26): env name ``arm``; its virtual robots are
``sim://feetech-arm`` and ``sim://dynamixel-arm`` (the arm behind a virtual Feetech / Dynamixel servo bus).

A 6-joint arm in joint space (radians): observation = the 6 joint positions, action = 6 absolute goal
positions (one servo-bus SYNC_WRITE), goal = a target pose; 20 ms steps; random start and goal poses
outside a forbidden box in (shoulder pan, shoulder lift) that the arm must go around.

Score (``kdp-edge eval --env arm``, :mod:`kdp_edge.arm_eval`): 50 seeded episodes of 300 steps (6 s).
An episode's return is the number of steps with every joint within 0.05 rad of the goal, counted
until the arm first enters the forbidden region (a collision ends what counts); success = the goal
reached and the region never entered within the horizon. The normalised score is D4RL-like, per
episode: 100 x (return - random's) / (expert's - random's), with the scripted expert
(:class:`kdp_edge.arm.ArmExpert`) and a uniform-random policy replayed on the same start and goal
(expert = 100, random = 0); the evaluation reports its mean ± sem. Plans are scored by the way
around the region to the goal, with a penalty for planned poses inside it (``region_geodesic``).
"""

from __future__ import annotations

from . import Environment

SIM_VARIANTS = {"feetech-arm": "feetech", "dynamixel-arm": "dynamixel"}  # sim:// name -> servo family


class Arm(Environment):
    name = "arm"
    variants = ["arm"]
    sim_variants = list(SIM_VARIANTS)
    step_dt_s = 0.02
    evaluate = "kdp_edge.arm_eval:evaluate_arm"
    closed_loop = "export.closed_loop:arm_scores"
    sim_plant = "kdp_edge.arm_sim:ArmEpisodes"

    def matches(self, env: str) -> bool:
        return env == self.name or env in SIM_VARIANTS

    def task_env(self, env: str) -> str:
        return self.name

    def scoring_kwargs(self, env: str, goal_dim: int, layout, executed_steps: int = 8) -> dict:
        if goal_dim == 0:
            return super().scoring_kwargs(env, goal_dim, layout, executed_steps)
        from ..arm import SPEC

        return {"kind": "region_geodesic", "pos_dims": list(range(6)), "region_dims": list(SPEC.region_dims),
                "region_low": list(SPEC.region_low), "region_high": list(SPEC.region_high),
                "wall_margin": SPEC.clearance}

    def free_positions(self, env: str) -> list | None:
        """(shoulder pan, shoulder lift) of 64 seeded poses outside the forbidden region (plausible conditions)."""
        import numpy as np

        from ..arm import random_poses

        return list(random_poses(np.random.default_rng(0), 64)[:, :2])

    def fallback_action_limits(self, act_dim: int) -> tuple | None:
        from ..arm import SPEC

        return (SPEC.low, SPEC.high) if act_dim == 6 else None
