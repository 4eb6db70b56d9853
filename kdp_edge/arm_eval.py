"""Closed-loop evaluation of the arm task (``kdp-edge eval RUN --env arm``): the protocol and score are
defined in :mod:`kdp_edge.envs.arm`; the plant and expert in :mod:`kdp_edge.arm`.

Every policy (the run's planner through the shared device-runtime :class:`~kdp_edge.runtime.planner.Planner`,
the scripted expert, a uniform-random policy) plays the same seeded episodes (start and goal poses,
:func:`kdp_edge.arm.episode_poses`) on the numpy plant, E episodes in lockstep; the planner replans
every step and executes its plan's first action (goal positions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .arm import SPEC, ArmExpert, ArmPlant, ArmSpec, episode_poses, in_region, reached
from .metrics import mean_sem
from .progress import Progress

Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]  # positions [E, 6], goals [E, 6] -> actions [E, 6]


@dataclass
class ArmProtocol:
    episodes: int = 50
    seed: int = 0
    candidates: int = 16
    horizon: int = SPEC.horizon

    def describe(self) -> str:
        return (f"arm: {SPEC.describe()}; {self.episodes} episodes (seed {self.seed}) of {self.horizon} steps, "
                f"random start and goal poses; return = steps with every joint within {SPEC.tolerance:g} rad of the "
                f"goal until the first entry into the region; success = reached, region never entered; "
                f"K = {self.candidates} candidates, replanning every step; normalised per episode: "
                "100 x (return - random) / (expert - random)")


def random_policy(seed: int, spec: ArmSpec = SPEC) -> Policy:
    """Uniformly random goal positions within the joint limits (seeded)."""
    rng = np.random.default_rng([seed, 3])
    return lambda q, g: rng.uniform(spec.low, spec.high, size=(len(q), 6))


def expert_policy(spec: ArmSpec = SPEC) -> Policy:
    return ArmExpert(spec).act_batch


def rollout(policy: Policy, starts: np.ndarray, goals: np.ndarray, horizon: int, label: str = "",
            progress: bool = False, spec: ArmSpec = SPEC) -> dict:
    """Play ``policy`` from ``starts`` [E, 6] toward ``goals`` [E, 6] for ``horizon`` steps: per episode
    ``returns`` [E], ``success`` [E], ``entered`` [E] (the region), ``arrival_step`` [E] (-1: never),
    ``closest_error`` [E] (rad: the smallest max-over-joints distance to the goal it reached),
    ``trajectories`` [E, horizon + 1, 6]."""
    plant = ArmPlant(starts, spec)
    e = len(starts)
    traj = np.zeros((e, horizon + 1, 6))
    traj[:, 0] = plant.q
    entered_at = np.full(e, horizon)  # first step inside the region (horizon: never)
    at_goal = np.zeros((e, horizon), bool)
    with Progress(horizon, f"eval {label}".strip(), enabled=progress) as bar:
        for t in range(horizon):
            q = plant.step(policy(plant.q.copy(), goals))
            traj[:, t + 1] = q
            entered_at = np.where((entered_at == horizon) & in_region(q, spec), t, entered_at)
            at_goal[:, t] = reached(q, goals, spec)
            bar.update(1)
    counted = at_goal & (np.arange(horizon)[None] < entered_at[:, None])
    returns = counted.sum(1).astype(np.float64)
    entered = entered_at < horizon
    arrival = np.where(at_goal.any(1), at_goal.argmax(1) + 1, -1)
    closest = np.abs(traj[:, 1:] - goals[:, None]).max(-1).min(1)  # [E] the nearest it came (max over joints)
    return {"returns": returns, "success": at_goal.any(1) & ~entered, "entered": entered, "arrival_step": arrival,
            "closest_error": closest, "trajectories": traj}


def normalized(returns: np.ndarray, expert: np.ndarray, random: np.ndarray) -> np.ndarray:
    """Per-episode 100 x (return - random) / (expert - random) (a denominator under 1 step counts as 1)."""
    return 100.0 * (np.asarray(returns) - random) / np.maximum(np.asarray(expert) - random, 1.0)


def reference_returns(starts: np.ndarray, goals: np.ndarray, horizon: int, seed: int) -> dict[str, dict]:
    """The expert's and the random policy's rollouts on the same episodes."""
    return {"expert": rollout(expert_policy(), starts, goals, horizon),
            "random": rollout(random_policy(seed), starts, goals, horizon)}


def summarize(res: dict, refs: dict[str, dict]) -> dict:
    s = normalized(res["returns"], refs["expert"]["returns"], refs["random"]["returns"])
    n = len(s)
    ok = res["arrival_step"] > 0
    mean, sem = mean_sem(s)
    return {"normalized_score_mean": mean, "normalized_score_sem": sem,
            "return_mean": float(res["returns"].mean()), "success_rate": float(res["success"].mean()),
            "region_entered_rate": float(res["entered"].mean()), "episodes": n,
            "closest_error_median": float(np.median(res["closest_error"])),
            "mean_arrival_step": float(res["arrival_step"][ok].mean()) if ok.any() else None}


def evaluate_arm(run_dir, env: str, o: dict, log=print) -> tuple[dict, str, str]:
    """``kdp-edge eval`` for the arm (the plug-in's evaluation hook); options ``o`` as the CLI gives them.
    Returns (report, printed table, default report name)."""
    import torch

    from .checkpoint import load_run
    from .errors import KDPError
    from .evaluate import PlannerPolicy, configure_sampler, format_eval_report, plan_latency
    from .planning import ScoringSpec
    from .torch_planner import run_planner

    if o.get("protocol", "own-actions") != "own-actions":
        raise KDPError(f"--protocol {o['protocol']} is PointMaze's PD tracker; the arm executes each plan's first "
                       "action (goal positions). fix: drop --protocol (own-actions)")
    if o.get("plot"):
        log("note: --plot draws PointMaze rollouts; the arm report has none")
    given = {k: o[k] for k in ("episodes", "seed", "candidates") if o.get(k) is not None}
    proto = ArmProtocol(**given)
    if o.get("threads", 0) > 0:
        torch.set_num_threads(o["threads"])
    run = load_run(run_dir)
    if run.info.obs_dim != 6 or run.info.act_dim != 6 or run.info.goal_dim != 6:
        raise KDPError(f"{run_dir} was trained with obs/act/goal dims {run.info.obs_dim}/{run.info.act_dim}/"
                       f"{run.info.goal_dim}; the arm task has 6/6/6. fix: train on `kdp-edge data arm` data")
    model = run.build_model(ema=True)
    generator_info = configure_sampler(model, run.cfg.method, o.get("sampler"), o.get("sample_steps"), log)
    planner = run_planner(run, proto.candidates, ScoringSpec.for_env("arm", 6, 6, 6, window=run.info.window),
                          seed=proto.seed, protocol="own-actions", model=model)
    starts, goals = episode_poses(proto.episodes, proto.seed)
    res = rollout(PlannerPolicy(planner), starts, goals, proto.horizon, "kdp", o.get("progress", False))
    refs = reference_returns(starts, goals, proto.horizon, proto.seed)
    report = {
        "protocol": asdict(proto), "protocol_text": proto.describe(), "spec": asdict(SPEC),
        "scoring": planner.scorer.spec.to_dict(), "planner": "kdp_edge.runtime.Planner (torch backend)",
        "checkpoint": {"run_dir": str(run_dir), "step": run.info.step, "weights": "EMA, last checkpoint",
                       "parameters": run.info.parameters, "key": run.cfg.drift.key.kind, "arch": run.cfg.model.arch}
                      | generator_info,
        "kdp": summarize(res, refs) | {"plan_latency": plan_latency(planner, starts[0], goals[0])},
    }
    if o.get("references", True):
        for name, r in refs.items():
            report[name] = summarize(r, refs)
    text = format_eval_report(report, "normalised score | success | region entered | mean arrival step | "
                              "closest (rad, median)", ("kdp", "expert", "random"),
                              lambda r: (f"{r['normalized_score_mean']:.1f} ± {r['normalized_score_sem']:.1f} | "
                                         f"{100 * r['success_rate']:.0f}% | {100 * r['region_entered_rate']:.0f}% | "
                                         + (f"{r['mean_arrival_step']:.0f}" if r["mean_arrival_step"] else "-")
                                         + f" | {r['closest_error_median']:.3f}"))
    return report, text, f"eval-{env}.json"
