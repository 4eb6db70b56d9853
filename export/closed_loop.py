"""Closed-loop parity: run the torch model and each exported model through the same PointMaze
episodes (D4RL maze2d protocol, kdp_edge.evaluate) and compare D4RL-normalised scores, or the same
PushT episodes (gym-pusht, kdp_edge.pusht) and compare mean max coverage (in %).

Every policy gets the same episode starts, the same simulators (reset per rollout) and the same
noise seed, so a difference in score comes from the model's numbers alone (plus the chaos of a
closed loop: a tiny action difference can change an episode's route). Needs the ``sim`` extra and
a ``pointmaze-*`` env, or the ``pusht`` extra and the ``pusht`` env; :func:`available` says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

Generate = Callable[[dict[str, np.ndarray]], np.ndarray]  # feeds -> windows [B, H, D]


@dataclass
class ClosedLoopScore:
    """One policy's result on the shared episodes (``metric`` says what the score is)."""

    score_mean: float
    score_sem: float
    success_rate: float
    return_mean: float
    episodes: int
    seconds: float
    metric: str = "D4RL-normalised score"

    def to_dict(self) -> dict:
        return asdict(self)


def available(env: str) -> tuple[bool, str]:
    """(True, "") when a closed-loop check can run for ``env``; else (False, why)."""
    from kdp_edge.envs import env_for

    return env_for(env).closed_loop_available()


def closed_loop_scores(manifest, generators: dict[str, Generate], episodes: int = 10, seed: int = 0,
                       candidates: int | None = None, log=print) -> dict[str, ClosedLoopScore]:
    """Score each ``generators[name]`` (feeds -> raw windows) on the same ``episodes`` episodes of
    ``manifest.env`` with its environment's closed-loop check (kdp_edge.envs); K = ``candidates``
    (default: the bundle's default K)."""
    from kdp_edge.envs import env_for

    return env_for(manifest.env).load("closed_loop")(manifest, generators, episodes, seed,
                                                     candidates or manifest.default_candidates, log)


def pointmaze_scores(manifest, generators: dict[str, Generate], episodes: int = 10, seed: int = 0,
                     candidates: int | None = None, log=print) -> dict[str, ClosedLoopScore]:
    """PointMaze: score each ``generators[name]`` (feeds -> raw windows) on the same ``episodes`` episodes of
    ``manifest.env``, each planned through the device runtime's Planner over the bundle's manifest
    (its protocol, scorer and action limits); K = ``candidates`` (default: the bundle's default K).
    Generators with a fixed K are fed batches of E*K rows they must split."""
    from kdp_edge.evaluate import EvalProtocol, PlannerPolicy, make_sims, rollout, summarize
    from kdp_edge.runtime.planner import Planner

    proto = EvalProtocol(env=manifest.env, episodes=episodes, seed=seed, protocol=manifest.protocol,
                         lookahead=manifest.lookahead, candidates=candidates or manifest.default_candidates)
    sims = make_sims(proto)
    out: dict[str, ClosedLoopScore] = {}
    for name, gen in generators.items():
        policy = PlannerPolicy(Planner.over(manifest, gen, proto.candidates, seed))
        t0 = time.perf_counter()
        s = summarize(rollout(policy, proto, name, progress=False, sims=sims))
        out[name] = ClosedLoopScore(s["normalized_score_mean"], s["normalized_score_sem"], s["success_rate"],
                                    s["return_mean"], s["episodes"], time.perf_counter() - t0)
        log(f"  closed loop {name}: score {s['normalized_score_mean']:.1f} ± {s['normalized_score_sem']:.1f}, "
            f"success {100 * s['success_rate']:.0f}% ({episodes} episodes, {out[name].seconds:.0f}s)")
    return out


def pusht_scores(manifest, generators: dict[str, Generate], episodes: int, seed: int, candidates: int,
                 log=print) -> dict[str, ClosedLoopScore]:
    """PushT: mean max coverage (x 100) of each generator on the same seeded gym-pusht episodes."""
    from kdp_edge.planning import ScoringSpec
    from kdp_edge.pusht import PushTProtocol, planner_plan_fn, rollout, summarize
    from kdp_edge.runtime.planner import Planner

    spec = ScoringSpec.from_dict(manifest.scoring)
    proto = PushTProtocol(episodes=episodes, candidates=candidates, action_steps=spec.consensus_steps)
    out: dict[str, ClosedLoopScore] = {}
    for name, gen in generators.items():
        plan = planner_plan_fn(Planner.over(manifest, gen, candidates))
        t0 = time.perf_counter()
        s = summarize(rollout(plan, proto, manifest.obs_dim, manifest.obs_history, name, progress=False))
        out[name] = ClosedLoopScore(100 * s["mean_max_coverage"], 100 * s["max_coverage_sem"], s["success_rate"],
                                    s["mean_final_coverage"], s["episodes"], time.perf_counter() - t0,
                                    metric="PushT mean max coverage (%)")
        log(f"  closed loop {name}: mean max coverage {s['mean_max_coverage']:.3f} ± {s['max_coverage_sem']:.3f}, "
            f"success {100 * s['success_rate']:.0f}% ({episodes} episodes, {out[name].seconds:.0f}s)")
    return out


def arm_scores(manifest, generators: dict[str, Generate], episodes: int, seed: int, candidates: int,
               log=print) -> dict[str, ClosedLoopScore]:
    """The arm task: each generator's normalised score (expert 100, random 0) on the same seeded episodes
    (kdp_edge.arm_eval), planned through the device runtime's Planner over the bundle's manifest."""
    from kdp_edge.arm import SPEC, episode_poses
    from kdp_edge.arm_eval import reference_returns, rollout, summarize
    from kdp_edge.evaluate import PlannerPolicy
    from kdp_edge.runtime.planner import Planner

    starts, goals = episode_poses(episodes, seed)
    refs = reference_returns(starts, goals, SPEC.horizon, seed)
    out: dict[str, ClosedLoopScore] = {}
    for name, gen in generators.items():
        policy = PlannerPolicy(Planner.over(manifest, gen, candidates, seed))
        t0 = time.perf_counter()
        s = summarize(rollout(policy, starts, goals, SPEC.horizon, name), refs)
        out[name] = ClosedLoopScore(s["normalized_score_mean"], s["normalized_score_sem"], s["success_rate"],
                                    s["return_mean"], s["episodes"], time.perf_counter() - t0,
                                    metric="arm normalised score (expert 100, random 0)")
        log(f"  closed loop {name}: score {s['normalized_score_mean']:.1f} ± {s['normalized_score_sem']:.1f}, "
            f"success {100 * s['success_rate']:.0f}% ({episodes} episodes, {out[name].seconds:.0f}s)")
    return out
