"""Closed-loop PushT evaluation in ``gym-pusht`` (state observations; needs the ``pusht`` extra).

Protocol (Diffusion Policy's, low-dim): ``gym_pusht/PushT-v0`` physics at 10 Hz, episodes seeded
``seed, seed + 1, ...`` (Diffusion Policy's test seeds start at 100000), at most 300 steps, an
episode ends early when the block covers more than 95% of the goal T. The planner sees the last
``obs_history`` observations (features of :func:`kdp_edge.data.pusht.pusht_features`, the first one
repeated at reset), plans a window of H steps once, and the first ``action_steps`` planned actions
(target agent positions, pixels) are executed before it plans again. Reported per policy: mean
max coverage (Diffusion Policy's metric), success rate (max coverage > 0.95), plan latency.

References on the same seeded episodes: uniform random targets; and the 206 human demonstrations
replayed open loop from their own recorded starts (the data's quality; the README of
``pusht_lowdim.npz`` explains the reset order that makes replay exact).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .data.pusht import pusht_features
from .errors import require
from .metrics import mean_sem, percentiles_ms
from .progress import Progress
from .runtime.history import ObsHistory

SUCCESS_COVERAGE = 0.95
ACTION_LOW, ACTION_HIGH = 0.0, 512.0

PlanFn = Callable[[np.ndarray], np.ndarray]  # stacked obs [E, O] -> the chosen windows' actions [E, H, 2]


@dataclass
class PushTProtocol:
    # 200 episodes: at 50 the sampling noise alone moved one model's mean max coverage by 0.04 (the SEM
    # is ~0.035), enough to rank recipes wrongly; 200 cost ~30 s per policy on one CPU thread.
    episodes: int = 200
    seed: int = 100_000  # Diffusion Policy's first test seed
    max_steps: int = 300
    action_steps: int = 8  # planned actions executed per plan (Diffusion Policy: 8 of 16)
    # One sample per plan: over 200 episodes the consensus choice among 16 lowered mean max coverage
    # (KDP 0.737 -> 0.613, diffusion 0.806 -> 0.774; bench/results/pusht/pusht.md).
    candidates: int = 1

    def describe(self, obs_history: int = 2, horizon: int = 16) -> str:
        return (f"pusht (gym-pusht PushT-v0, state observations): {self.episodes} episodes (seeds {self.seed}.."
                f"{self.seed + self.episodes - 1}), at most {self.max_steps} steps at 10 Hz, success = coverage > "
                f"{SUCCESS_COVERAGE}; {obs_history} observation(s) in, {horizon} steps planned, first "
                f"{self.action_steps} executed, " + (f"K = {self.candidates} candidates (consensus choice)"
                if self.candidates > 1 else "one sample per plan") + "; metric: mean max coverage")


def make_env():
    """One PushT environment (state observations); a clear error when gym-pusht is missing."""
    require("gym_pusht", "pusht", "PushT evaluation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gym_pusht.envs import PushTEnv

    return PushTEnv(obs_type="state")


def rollout(plan: PlanFn | None, proto: PushTProtocol, obs_dim: int, obs_history: int = 2, label: str = "",
            progress: bool = True, action_fn: Callable[[int, int], np.ndarray] | None = None) -> dict:
    """Run ``proto.episodes`` seeded episodes in lockstep, planning for all unfinished ones at once.

    ``plan`` maps stacked observations [E, obs_dim] to the planned actions [E, H, 2] of the chosen
    windows (:func:`planner_plan_fn`); ``action_fn(episode, step)`` replaces it for references.
    Returns per-episode max / final coverage, success, steps, agent and block paths, plan times (s).
    """
    e = proto.episodes
    envs = [make_env() for _ in range(e)]
    states = np.stack([env.reset(seed=proto.seed + i)[0] for i, env in enumerate(envs)])
    hist = ObsHistory(pusht_features(states), obs_history)
    max_cov, last_cov = np.zeros(e), np.zeros(e)
    done = np.zeros(e, bool)
    steps = np.full(e, proto.max_steps)
    paths = np.full((e, proto.max_steps + 1, 5), np.nan)
    paths[:, 0] = states
    plan_s: list[float] = []
    t = 0
    with Progress(proto.max_steps, f"eval {label}".strip(), enabled=progress) as bar:
        while t < proto.max_steps and not done.all():
            live = np.flatnonzero(~done)
            if action_fn is None:
                obs = hist.stacked()[live]
                assert obs.shape[1] == obs_dim, f"stacked observation has {obs.shape[1]} dims, the model {obs_dim}"
                t0 = time.perf_counter()
                actions = plan(obs)
                plan_s.append(time.perf_counter() - t0)
                chunk = np.clip(actions[:, : proto.action_steps], ACTION_LOW, ACTION_HIGH)
            n = min(proto.action_steps, proto.max_steps - t) if action_fn is None else 1
            for j in range(n):
                for row, i in enumerate(live):
                    if done[i]:
                        continue
                    act = chunk[row, j] if action_fn is None else action_fn(i, t)
                    state, _, terminated, _, info = envs[i].step(np.asarray(act, np.float64))
                    cov = float(info["coverage"])
                    max_cov[i], last_cov[i] = max(max_cov[i], cov), cov
                    paths[i, t + 1] = state
                    hist.push(i, pusht_features(state))
                    if terminated:
                        done[i], steps[i] = True, t + 1
                t += 1
                bar.update(1)
    for env in envs:
        env.close()
    return {"max_coverage": max_cov, "final_coverage": last_cov, "success": max_cov > SUCCESS_COVERAGE,
            "steps": steps, "paths": paths, "plan_s": plan_s}


def summarize(res: dict) -> dict:
    c = res["max_coverage"]
    n = len(c)
    mean, sem = mean_sem(c)
    return {"mean_max_coverage": mean, "max_coverage_sem": sem,
            "success_rate": float(res["success"].mean()), "mean_final_coverage": float(res["final_coverage"].mean()),
            "mean_steps": float(np.mean(res["steps"])), "episodes": n}


def random_reference(proto: PushTProtocol, progress: bool = False) -> dict:
    rng = np.random.default_rng(proto.seed)
    return summarize(rollout(None, proto, 0, 1, "random", progress,
                             action_fn=lambda i, t: rng.uniform(ACTION_LOW, ACTION_HIGH, 2)))


def replay_demos(path, progress: bool = False) -> dict:
    """Open-loop replay of every demonstration in a PushT low-dim file from its recorded start: the
    mean max coverage the human data reaches (set angle, then position, then step the space once)."""
    z = np.load(path)
    state, action, ends = z["state"], z["action"], np.asarray(z["episode_ends"])
    starts = np.concatenate([[0], ends[:-1]])
    env = make_env()
    cov = np.zeros(len(ends))
    with Progress(len(ends), "replay demos", enabled=progress) as bar:
        for k, (b, en) in enumerate(zip(starts, ends, strict=True)):
            env.reset(seed=0)
            s = state[b]
            env.agent.position = (float(s[0]), float(s[1]))
            env.block.angle = float(s[4])
            env.block.position = (float(s[2]), float(s[3]))
            env.space.step(env.dt)
            for i in range(b, en):
                cov[k] = max(cov[k], float(env.step(np.asarray(action[i], np.float64))[4]["coverage"]))
            bar.update(1)
    env.close()
    return {"mean_max_coverage": float(cov.mean()), "max_coverage_sem": float(cov.std(ddof=1) / np.sqrt(len(cov))),
            "success_rate": float((cov > SUCCESS_COVERAGE).mean()), "median_max_coverage": float(np.median(cov)),
            "episodes": int(len(cov)), "note": "the demonstrations' own starts (not the evaluation seeds), open loop"}


def planner_plan_fn(planner) -> PlanFn:
    """A :data:`PlanFn` over the device runtime's :class:`~kdp_edge.runtime.planner.Planner`: K
    candidates per environment in one model call, chosen by the planner's scorer (consensus for
    goal-free tasks), the chosen windows' actions (the planner's ``act_slice``: wherever the bundle's
    window layout puts them) returned for the rollout to execute."""
    lo, hi = planner.act_slice

    def plan(obs: np.ndarray) -> np.ndarray:
        return planner.plan_batch(obs).windows[..., lo:hi]

    return plan


def single_plan_latency(planner, obs: np.ndarray, runs: int = 200) -> dict:
    """p50/p99 (ms) of one environment's whole plan (:meth:`Planner.plan`), 10 untimed plans first."""
    times = []
    for i in range(runs + 10):
        t0 = time.perf_counter()
        planner.plan(obs)
        if i >= 10:
            times.append(time.perf_counter() - t0)
    return percentiles_ms(times)


def evaluate_pusht_run(run_dir, proto: PushTProtocol, progress: bool = True, references: bool = True,
                       threads: int = 0, sampler: str | None = None, sample_steps: int | None = None,
                       demos=None, log=print) -> dict:
    """Evaluate a trained PushT run (drift or diffusion); the JSON-able report."""
    import torch

    from .checkpoint import load_run
    from .evaluate import configure_sampler
    from .methods import method_for
    from .planning import ScoringSpec
    from .torch_planner import run_planner

    if threads > 0:
        torch.set_num_threads(threads)
    run = load_run(run_dir)
    if run.info.env != "pusht":
        from .errors import ConfigError

        raise ConfigError(f"{run_dir} was trained on env {run.info.env or '(unknown)'}, not pusht; "
                          "evaluate it with --env pointmaze-<maze>")
    model = run.build_model(ema=True)
    generator_info = configure_sampler(model, run.cfg.method, sampler, sample_steps, log)
    planner = run_planner(run, proto.candidates, ScoringSpec.for_run(run.info, proto.action_steps), seed=proto.seed,
                          model=model)
    plan = planner_plan_fn(planner)
    res = rollout(plan, proto, model.obs_dim, run.info.obs_history, method_for(run.cfg.method).label,
                  progress)
    first = np.tile(pusht_features(res["paths"][0, 0]), run.info.obs_history)
    report = {
        "protocol": asdict(proto), "protocol_text": proto.describe(run.info.obs_history, run.info.horizon),
        "scoring": planner.scorer.spec.to_dict(), "planner": "kdp_edge.runtime.Planner (torch backend)",
        "checkpoint": {"run_dir": str(run_dir), "step": run.info.step, "weights": "EMA, last checkpoint",
                       "parameters": run.info.parameters, "key": run.cfg.drift.key.kind, "arch": run.cfg.model.arch,
                       "obs_history": run.info.obs_history, "horizon": run.info.horizon} | generator_info,
        "kdp": summarize(res) | {"plan_latency": single_plan_latency(planner, first)},
        "episodes": {"max_coverage": res["max_coverage"].round(4).tolist(), "steps": res["steps"].tolist()},
    }
    if references:
        report["random"] = random_reference(proto)
        if demos is not None and demos.exists():
            report["demos"] = replay_demos(demos, progress)
    return report


def format_pusht_eval(report: dict) -> str:
    from .evaluate import format_eval_report

    return format_eval_report(report, "mean max coverage | success | episodes", ("kdp", "demos", "random"), lambda r: (
        f"{r['mean_max_coverage']:.3f} ± {r['max_coverage_sem']:.3f} | {100 * r['success_rate']:.0f}% | "
        f"{r['episodes']}"))


def evaluate_pusht(run_dir, env: str, o: dict, log=print) -> tuple[dict, str, str]:
    """``kdp-edge eval`` for PushT (the environment plug-in's evaluation hook): options ``o`` as the CLI
    gives them (None: the protocol's default; ``demos`` defaults to the run's data). Returns
    (report, printed table, default report name)."""
    from pathlib import Path

    given = {k: o[k] for k in ("episodes", "seed", "candidates") if o.get(k) is not None}
    proto = PushTProtocol(action_steps=o["action_steps"], **given)
    data = o.get("demos") or o.get("run_info", {}).get("data", "")
    report = evaluate_pusht_run(run_dir, proto, progress=o["progress"], references=o["references"],
                                threads=o["threads"], sampler=o["sampler"], sample_steps=o["sample_steps"],
                                demos=Path(data) if data else None, log=log)
    return report, format_pusht_eval(report), "eval-pusht.json"
