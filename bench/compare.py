"""KDP vs the trajectory-diffusion baseline vs naive drifting, side by side (issue #3).

    python bench/compare.py --mazes umaze --threads 1                  # the full UMaze comparison
    python bench/compare.py --mazes medium large --skip-latency --skip-toy   # add mazes later (merged)

One process, one machine, one torch thread count for every method. Per maze it loads (or trains,
with the same data, backbone and step count) four runs from one training entry point and one
checkpoint format:
    kdp              --method drift --key condition+descriptor   (the KDP default)
    drift-full       --method drift --key full                   (naive drifting: the failure mode)
    drift-condition  --method drift --key condition              (condition-only key ablation)
    diffusion        --method diffusion (DDIM at T steps; same MLP backbone + a timestep embedding)
Runs are looked up in --runs (bench/results/pointmaze, written by bench/pointmaze.py) and then in
--out; missing ones are trained into --out. Datasets: <runs>/<maze>.hdf5 (never deleted).

Reports, into <out>/compare.json and compare.md (mazes measured earlier are kept):
- plan latency p50/p99 for K = 1, 16, 64: KDP (one pass) vs diffusion with T = 5, 20, 100, 256 DDIM
  steps, generator only and generator + candidate scoring, and the ratio diffusion / KDP;
- closed-loop D4RL-normalised score and success per maze and protocol (own actions, PD tracker),
  all methods on the same seeded episodes, with the reference pair (uniform random, scripted expert);
- candidate diversity, static-ness and start consistency per method (64 dataset conditions x 16);
- the bimodal toy: mode shares, obstacle crossings and step length per method;
and <out>/compare.png: candidate plans of every method from one start, on the toy and on UMaze.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kdp_edge.checkpoint import load_run
from kdp_edge.config import TrainConfig
from kdp_edge.config import merge as deep_merge
from kdp_edge.evaluate import (
    EvalProtocol,
    PlannerPolicy,
    make_sims,
    reference_policies,
    rollout,
    summarize,
)
from kdp_edge.mazes import D4RL_PROTOCOL, GOAL_RADIUS, Maze
from kdp_edge.metrics import candidate_diversity, mean_step_length, percentiles_ms, staticness
from kdp_edge.planning import CandidateScorer, ScoringSpec
from kdp_edge.provenance import provenance, provenance_line
from kdp_edge.torch_planner import TorchBackend, run_planner
from kdp_edge.toy import GOAL, OBSTACLE, OBSTACLE_RADIUS, bimodal_demos, mode_report
from kdp_edge.train import Trainer
from kdp_edge.windows import valid_starts

ROOT = Path(__file__).resolve().parents[1]
# method -> (run-dir suffix, config overrides)
METHODS: dict[str, tuple[str, dict]] = {
    "kdp": ("condition_descriptor", {"method": "drift", "drift": {"key": {"kind": "condition+descriptor"}}}),
    "drift-full": ("full", {"method": "drift", "drift": {"key": {"kind": "full"}}}),
    "drift-condition": ("condition", {"method": "drift", "drift": {"key": {"kind": "condition"}}}),
    "diffusion": ("diffusion", {"method": "diffusion"}),
}
LABELS = {"kdp": "KDP (keyed drift)", "drift-full": "naive drift (key = full window)",
          "drift-condition": "drift, key = condition only", "diffusion": "diffusion"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- runs: load or train (one entry point, one checkpoint format) ---------------------------------------
def dataset_path(maze: str, args) -> Path:
    """<runs>/<maze>.hdf5, or <runs>/<maze>-dwell<N>.hdf5 with --dwell N (bench/pointmaze.py's names)."""
    return Path(args.runs) / f"{maze}{f'-dwell{args.dwell}' if args.dwell else ''}.hdf5"


def run_suffix(args) -> str:
    """What bench/pointmaze.py appends to a run directory for --dwell N and --tag T."""
    return (f"-dwell{args.dwell}" if args.dwell else "") + (f"-{args.tag}" if args.tag else "")


def ensure_run(method: str, maze: str, args) -> Path | None:
    """The run directory of ``method`` on ``maze`` with >= args.steps steps, trained if needed."""
    suffix, over = METHODS[method]
    name = f"{maze}-{suffix}{run_suffix(args)}"
    for base in (Path(args.runs), Path(args.out)):
        run = base / name
        if (run / "checkpoint.pt").exists():
            step = json.loads((run / "run.json").read_text())["step"]
            if step >= args.steps:
                return run
            if base == Path(args.out):
                log(f"resuming {run} at step {step} -> {args.steps}")
                prior = load_run(run)
                cfg = prior.cfg
                cfg.optim.steps, cfg.threads = args.steps, args.threads
                Trainer(cfg, run, prior=prior, log=log).run(progress=False)
                return run
            log(f"{run} has only {step} steps (< {args.steps}): not used")
    if args.no_train:
        log(f"{name}: no run found and --no-train given: skipped")
        return None
    data = dataset_path(maze, args)
    if not data.exists():
        log(f"{data} missing (make it with bench/pointmaze.py or kdp-edge data pointmaze): {name} skipped")
        return None
    cfg = TrainConfig.from_dict(deep_merge(TrainConfig().to_dict(), deep_merge(over, {
        "data": {"path": str(data)}, "optim": {"steps": args.steps}, "threads": args.threads})))
    run = Path(args.out) / name
    log(f"training {name}: {args.steps} steps -> {run}")
    Trainer(cfg, run, log=log).run(progress=False)
    return run


def run_summary(run: Path) -> dict:
    """What the report records about a run: where, what, how long, on which data."""
    info = json.loads((run / "run.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    what = (f"diffusion ({cfg['diffusion']['prediction']} prediction, T = {cfg['diffusion']['timesteps']}, "
            f"{cfg['diffusion']['schedule']})" if cfg["method"] == "diffusion" else f"drift, key {cfg['drift']['key']['kind']}")
    return {"run": str(run), "method": what, "arch": cfg["model"]["arch"], "parameters": info["parameters"],
            "steps": info["step"], "train_steps_per_s": round(last.get("steps_per_s", float("nan")), 1),
            "data": os.path.realpath(info["data"]) if info["data"] else ""}


def load_model(run: Path, steps: int | None = None):
    model = load_run(run).build_model(ema=True)
    if steps is not None:
        model.set_sampler("ddim", steps)
    return model


def variants(runs: dict[str, Path], eval_steps: list[int]) -> list[tuple[str, Path, int | None]]:
    """(label, run, diffusion steps or None) for every planner compared in closed loop."""
    out = []
    for method, run in runs.items():
        if method == "diffusion":
            out += [(f"diffusion T={t}", run, t) for t in eval_steps]
        else:
            out.append((method, run, None))
    return out


# ---- latency ------------------------------------------------------------------------------------------
def time_interleaved(fns: dict[str, object], budget_s: float, min_calls: int = 20, max_calls: int = 200,
                     block_s: float = 0.3) -> dict[str, dict]:
    """Latency percentiles (ms) of each zero-argument callable. The callables take turns in blocks of
    repeated calls (about ``block_s`` each, the first call of a block discarded as a cache warm-up),
    so all of them see the same background load of this shared machine while each runs warm, as a
    deployed planner does; >= min_calls timed calls each, more until ``budget_s`` has passed."""
    est = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        est[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in fns}
    t_end = time.perf_counter() + budget_s
    while any(len(ts) < min_calls for ts in times.values()) or (
            time.perf_counter() < t_end and all(len(ts) < max_calls for ts in times.values())):
        for name, fn in fns.items():
            fn()  # warm-up after the previous block
            for _ in range(max(1, min(int(block_s / max(est[name], 1e-6)), max_calls // 10, max_calls - len(times[name])))):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: percentiles_ms(ts) | {"min_ms": 1e3 * min(ts)} for name, ts in times.items()}


def latency_table(kdp_run: Path, diff_run: Path, maze: str, args) -> dict:
    """p50/p99 of the generator alone and of a full plan (generation + scoring) for each K and T."""
    m = Maze.named(maze)
    goal = m.cell_to_xy(D4RL_PROTOCOL[maze]["goal_cell"]).astype(np.float32)
    obs = np.concatenate([start_of_maze(m, maze), [0.0, 0.0]]).astype(np.float32)
    scorer = CandidateScorer(ScoringSpec.for_env(f"pointmaze-{maze}"))
    planners = [("kdp", load_model(kdp_run), 1)] + [(f"diffusion T={t}", load_model(diff_run, t), t)
                                                    for t in args.latency_steps]
    model_runs = {"kdp": kdp_run} | {f"diffusion T={t}": diff_run for t in args.latency_steps}
    rows = []
    for k in args.latency_k:
        proto = EvalProtocol(env=f"pointmaze-{maze}", candidates=k)
        o, g = np.repeat(obs[None], k, 0), np.repeat(goal[None], k, 0)
        fns = {}
        for name, model, _ in planners:
            gen = TorchBackend(model)
            noise = np.random.default_rng(0).standard_normal((k, model.horizon, model.window_dim)).astype(np.float32)
            planner = run_planner(load_run(model_runs[name]), k, scorer.spec, protocol=proto.protocol, model=model)
            fns[f"generate|{name}"] = lambda gen=gen, o=o, g=g, noise=noise: gen({"obs": o, "goal": g, "noise": noise})
            fns[f"plan|{name}"] = lambda planner=planner: planner.plan(obs, goal)
        lat = time_interleaved(fns, args.latency_budget)
        for name, _, nfe in planners:
            rows.append({"K": k, "planner": name, "network_evaluations": nfe,
                         "generate": lat[f"generate|{name}"], "plan": lat[f"plan|{name}"]})
            log(f"latency K={k:>2} {name:>15}: generate p50 {rows[-1]['generate']['p50_ms']:.2f} ms, "
                f"plan p50 {rows[-1]['plan']['p50_ms']:.2f} ms (n={rows[-1]['plan']['n']})")
    by = {(r["K"], r["planner"]): r for r in rows}
    for r in rows:
        base = by[(r["K"], "kdp")]
        for part in ("generate", "plan"):
            r[f"ratio_{part}_p50"] = r[part]["p50_ms"] / base[part]["p50_ms"]
            r[f"ratio_{part}_min"] = r[part]["min_ms"] / base[part]["min_ms"]
        r["target_ratio"] = 0.8 * r["network_evaluations"] if r["planner"] != "kdp" else None
    return {"maze_for_scoring": maze, "rows": rows,
            "note": "generate: the torch generator alone (K candidates, one call, DDIM for diffusion); plan: generate "
                    "+ candidate scoring (maze geodesic) as in closed loop; planners take turns in warm blocks of repeated "
                    "calls so they share the background load of this shared machine; ratio = diffusion / KDP p50"}


def start_of_maze(m: Maze, maze: str) -> np.ndarray:
    """Centre of the free cell farthest (BFS) from the goal cell: the hardest start to plan from."""
    dist = m.cell_distances(D4RL_PROTOCOL[maze]["goal_cell"])
    r, c = np.unravel_index(np.argmax(dist), dist.shape)
    return m.cell_to_xy((r, c))


# ---- closed loop and plan metrics ---------------------------------------------------------------------
def closed_loop(runs: dict[str, Path], maze: str, args) -> list[dict]:
    rows = []
    scorer = CandidateScorer(ScoringSpec.for_env(f"pointmaze-{maze}"))
    refs: dict[str, dict] = {}
    for proto_name in args.protocols:
        proto = EvalProtocol(env=f"pointmaze-{maze}", episodes=args.episodes, seed=args.seed, protocol=proto_name,
                             candidates=args.candidates)
        sims = make_sims(proto)
        if not refs:  # the reference policies ignore the protocol: run them once per maze
            for name, pol in reference_policies(Maze.named(maze), proto.seed).items():
                refs[name] = summarize(rollout(pol, proto, name, progress=False, sims=sims))
        for label, run, steps in variants(runs, args.eval_steps):
            model = load_model(run, steps)
            policy = PlannerPolicy(run_planner(load_run(run), proto.candidates, scorer.spec, seed=proto.seed,
                                               protocol=proto.protocol, lookahead=proto.lookahead, model=model))
            t0 = time.perf_counter()
            raw = rollout(policy, proto, label, progress=False, sims=sims)
            wall = time.perf_counter() - t0
            res = summarize(raw) | arrival_stats(raw)
            rows.append({"maze": maze, "protocol": proto_name, "planner": label, **res,
                         "rollout_seconds": round(wall, 1), "run": str(run),
                         "train_steps": json.loads((run / "run.json").read_text())["step"],
                         "expert": refs["expert"], "random": refs["random"], "protocol_text": proto.describe()})
            log(f"{maze} {proto_name:>11} {label:>15}: score {res['normalized_score_mean']:.1f} ± "
                f"{res['normalized_score_sem']:.1f}, success {100 * res['success_rate']:.0f}% ({wall:.0f} s)")
    return rows


def arrival_stats(res: dict) -> dict:
    """Split the score into reaching and staying: mean first step within the goal radius (successful
    episodes) and the fraction of steps inside the radius after the first arrival."""
    inside = np.linalg.norm(res["trajectories"][:, 1:] - res["goal"], axis=-1) <= GOAL_RADIUS  # [E, T]
    reached = inside.any(1)
    first = np.argmax(inside, axis=1)
    stay = [inside[e, first[e]:].mean() for e in np.flatnonzero(reached)]
    return {"first_arrival_step_mean": float(first[reached].mean()) if reached.any() else float("nan"),
            "stay_fraction_after_arrival": float(np.mean(stay)) if stay else float("nan")}


def action_jitter(windows: np.ndarray, obs_dim: int) -> float:
    """RMS change of the action between consecutive steps of the windows [..., H, D]."""
    return float(np.sqrt((np.diff(windows[..., obs_dim:], axis=-2) ** 2).mean()))


def plan_metrics(runs: dict[str, Path], maze: str, args, k: int = 16, n: int = 64) -> dict:
    """Diversity / static-ness of K candidates for n dataset conditions (the Trainer's probe recipe)."""
    from kdp_edge.data.readers import load_trajectories

    traj = load_trajectories(str(dataset_path(maze, args)))
    any_run = load_run(next(iter(runs.values())))
    h = any_run.info.horizon
    starts = valid_starts(traj.episode_ends, h)
    probe = starts[np.random.default_rng(12345).choice(len(starts), size=n, replace=False)]
    obs, goal = traj.observations[probe], traj.goals[probe]
    data = np.concatenate([traj.observations, traj.actions], 1)[probe[:, None] + np.arange(h)]  # [n, H, D] raw
    out = {}
    for label, run, steps in variants(runs, args.eval_steps):
        model = load_model(run, steps)
        noise = torch.randn(n * k, h, model.window_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            plans = model(torch.from_numpy(np.repeat(obs, k, 0)), torch.from_numpy(np.repeat(goal, k, 0)), noise)
        plans = plans.numpy().reshape(n, k, h, -1)
        o = traj.obs_dim
        jump_plan = np.linalg.norm(plans[:, :, 1, :o] - obs[:, None], axis=-1).mean()
        jump_data = np.linalg.norm(data[:, 1, :o] - data[:, 0, :o], axis=-1).mean()
        out[label] = {"diversity_m": candidate_diversity(plans), "staticness": staticness(plans, data[:, None]),
                      "step_length_m": mean_step_length(plans), "data_step_length_m": mean_step_length(data),
                      "start_jump_ratio": float(jump_plan / jump_data),
                      "action_jitter": action_jitter(plans, o), "data_action_jitter": action_jitter(data, o)}
    return out


# ---- bimodal toy ----------------------------------------------------------------------------------------
def toy_models(args) -> dict:
    """Train (or load from <out>/toy-<method>) each method on the bimodal toy (METHOD.md section 5)."""
    models = {}
    for method, (_, over) in METHODS.items():
        run = Path(args.out) / f"toy-{method}"
        if not (run / "checkpoint.pt").exists() or json.loads((run / "run.json").read_text())["step"] < args.toy_steps:
            cfg = TrainConfig.from_dict(deep_merge(TrainConfig().to_dict(), deep_merge(over, {
                "data": {"horizon": 16}, "model": {"mlp_hidden": 256},
                "optim": {"steps": args.toy_steps, "warmup": 100, "lr": 1e-3}, "threads": args.threads,
                "log_every": args.toy_steps, "checkpoint_every": args.toy_steps})))
            t0 = time.perf_counter()
            Trainer(cfg, run, trajectories=bimodal_demos(seed=0), log=lambda *a: None).run(progress=False)
            log(f"toy {method}: {args.toy_steps} steps in {time.perf_counter() - t0:.0f} s")
        models[method] = run
    return models


def toy_report(models: dict[str, Path], args, n: int = 256) -> tuple[dict, dict]:
    noise = torch.randn(n, 16, 4, generator=torch.Generator().manual_seed(0))
    report, plans = {}, {}
    for label, run, steps in variants(models, args.eval_steps):
        model = load_model(run, steps)
        with torch.no_grad():
            p = model(torch.zeros(n, 2), torch.zeros(n, 0), noise).numpy()
        report[label], plans[label] = mode_report(p), p
    data = bimodal_demos(seed=0).observations.reshape(-1, 16, 2)
    report["data"] = mode_report(data)
    return report, plans


# ---- figure ---------------------------------------------------------------------------------------------
def figure(path: Path, toy_plans: dict | None, maze_runs: dict[str, Path] | None, args) -> None:
    from kdp_edge.plots import _plt, draw_maze, save_fig

    plt = _plt()
    labels = [lab for lab, _, _ in variants({m: Path() for m in METHODS}, args.eval_steps)]
    rows = [r for r in ("toy", "umaze") if (r == "toy" and toy_plans) or (r == "umaze" and maze_runs)]
    fig, axes = plt.subplots(len(rows), len(labels), figsize=(3.2 * len(labels), 3.3 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        if row == "toy":
            for j, label in enumerate(labels):
                ax = axes[i, j]
                ax.add_patch(plt.Circle(OBSTACLE, OBSTACLE_RADIUS, color="0.3"))
                for p in toy_plans[label][:32]:
                    ax.plot(p[:, 0], p[:, 1], lw=0.7, alpha=0.6)
                ax.plot(0, 0, "ko", ms=4)
                ax.plot(*GOAL, marker="*", color="gold", ms=14, mec="k")
                ax.set_xlim(-0.15, 1.15)
                ax.set_ylim(-0.6, 0.6)
                ax.set_aspect("equal")
                ax.set_xticks([])
                ax.set_yticks([])
                r = mode_report(toy_plans[label])
                ax.set_title(f"toy: {label}\nabove {100 * r['above']:.0f}% / below {100 * r['below']:.0f}% / "
                             f"through {100 * r['through_obstacle']:.0f}%", fontsize=8)
        else:
            m = Maze.named("umaze")
            goal = m.cell_to_xy(D4RL_PROTOCOL["umaze"]["goal_cell"]).astype(np.float32)
            start = np.concatenate([start_of_maze(m, "umaze"), [0.0, 0.0]]).astype(np.float32)
            scorer = CandidateScorer(ScoringSpec.for_env("pointmaze-umaze"))
            for label, run, steps in variants(maze_runs, args.eval_steps):
                ax = axes[i, labels.index(label)]
                model = load_model(run, steps)
                k = args.candidates
                noise = np.random.default_rng(0).standard_normal((k, model.horizon, model.window_dim)).astype(np.float32)
                plans = TorchBackend(model)({"obs": np.repeat(start[None], k, 0), "goal": np.repeat(goal[None], k, 0),
                                             "noise": noise})
                best = int(np.argmax(scorer(plans, goal)))
                draw_maze(ax, m)
                for p in plans:
                    ax.plot(p[:, 0], p[:, 1], color="tab:blue", lw=0.7, alpha=0.5)
                ax.plot(plans[best, :, 0], plans[best, :, 1], color="tab:red", lw=1.8)
                ax.plot(*start[:2], "ko", ms=4)
                ax.plot(*goal, marker="*", color="gold", ms=14, mec="k")
                ax.set_title(f"UMaze: {label}\nK = {k} from one start (red: chosen)", fontsize=8)
    fig.suptitle("Candidate plans per method (same start, same noise seed)", fontsize=10)
    save_fig(fig, path)


# ---- report ---------------------------------------------------------------------------------------------
def fmt_lat(d: dict) -> str:
    return f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f}"


def targets(report: dict) -> list[str]:
    lines = []
    lat = report.get("latency")
    if lat:
        rows = [r for r in lat["rows"] if r["planner"] != "kdp"]
        ok = [r for r in rows if r["ratio_generate_p50"] >= r["target_ratio"]]
        ok_plan = [r for r in rows if r["ratio_plan_p50"] >= r["target_ratio"]]
        lines.append(f"- latency ratio >= 0.8 T (generator only): {len(ok)}/{len(rows)} cells; "
                     f"with scoring included: {len(ok_plan)}/{len(rows)} cells")
    for maze, mz in report.get("mazes", {}).items():
        rows = mz.get("closed_loop", [])
        for proto in dict.fromkeys(r["protocol"] for r in rows):
            by = {r["planner"]: r["normalized_score_mean"] for r in rows if r["protocol"] == proto}
            if "kdp" in by and "diffusion T=20" in by:
                gap = by["kdp"] - by["diffusion T=20"]
                lines.append(f"- {maze} / {proto}: KDP {by['kdp']:.1f} vs diffusion T=20 {by['diffusion T=20']:.1f} "
                             f"({gap:+.1f}): {'within 5 points or better' if gap >= -5 else 'MISSED (more than 5 below)'}")
            if "kdp" in by and "drift-full" in by:
                d = by["drift-full"] - by["kdp"]
                pm = mz.get("plan_metrics", {})
                st = (f"; static-ness naive {pm['drift-full']['staticness']:.2f} vs KDP {pm['kdp']['staticness']:.2f}"
                      if "drift-full" in pm and "kdp" in pm else "")
                verdict = "visibly worse" if d < -5 else "NOT visibly worse in score"
                lines.append(f"- {maze} / {proto}: naive drift {by['drift-full']:.1f} vs KDP {by['kdp']:.1f} ({d:+.1f}): "
                             f"{verdict}{st}")
    toy = report.get("toy")
    if toy and "drift-full" in toy and "kdp" in toy:
        n, k = toy["drift-full"], toy["kdp"]
        lines.append(f"- toy: naive drift through the obstacle {100 * n['through_obstacle']:.0f}% (KDP "
                     f"{100 * k['through_obstacle']:.0f}%), step length {n['step_length']:.3f} (KDP {k['step_length']:.3f}, "
                     f"data {toy['data']['step_length']:.3f})")
    return lines


def markdown(report: dict) -> str:
    m = report["machine"]
    out = [f"Commands: {'; '.join(f'`{c}`' for c in report['commands'])}", "",
           *([f"Last written by: {provenance_line(report['provenance'])}", ""] if "provenance" in report else []),
           f"Machine: {m['cpu']}, torch {m['torch']}, {m['threads']} torch thread(s), one process; "
           f"load average at start {m['loadavg']}.", ""]
    for maze, runs in report.get("runs", {}).items():
        data = {r["data"] for r in runs.values()}
        out += [f"Runs on {maze} (same dataset: {len(data) == 1}{': ' + os.path.basename(next(iter(data))) if len(data) == 1 else ''}):", "",
                "| planner | run | model | params | train steps | steps/s |", "|---|---|---|---|---|---|"]
        for m, r in runs.items():
            out.append(f"| {m} | {r['run']} | {r['arch']}, {r['method']} | {r['parameters']:,} | {r['steps']} | "
                       f"{r['train_steps_per_s']} |")
        out.append("")
    lat = report.get("latency")
    if lat:
        out += ["## Plan latency (ms, p50 / p99)", "", lat["note"] + ".", ""]
        planners = list(dict.fromkeys(r["planner"] for r in lat["rows"]))
        out.append("| K | part | " + " | ".join(planners) + " |")
        out.append("|---|---|" + "---|" * len(planners))
        by = {(r["K"], r["planner"]): r for r in lat["rows"]}
        for k in dict.fromkeys(r["K"] for r in lat["rows"]):
            for part in ("generate", "plan"):
                cells = []
                for p in planners:
                    r = by[(k, p)]
                    cells.append(fmt_lat(r[part]) + ("" if p == "kdp" else f" (x{r[f'ratio_{part}_p50']:.1f})"))
                out.append(f"| {k} | {part} | " + " | ".join(cells) + " |")
        out += ["", "(xN: diffusion p50 / KDP p50; target >= 0.8 T.) Ratios of the fastest call (least disturbed "
                "by other jobs on this shared machine), generate / plan:", "",
                "| K | " + " | ".join(p for p in planners if p != "kdp") + " |", "|---|" + "---|" * (len(planners) - 1)]
        for k in dict.fromkeys(r["K"] for r in lat["rows"]):
            out.append(f"| {k} | " + " | ".join(f"x{by[(k, p)]['ratio_generate_min']:.1f} / x{by[(k, p)]['ratio_plan_min']:.1f}"
                                                 for p in planners if p != "kdp") + " |")
        out.append("")
    out += ["## Closed loop (D4RL-normalised score, approximate)", ""]
    for maze, mz in report.get("mazes", {}).items():
        rows = mz.get("closed_loop", [])
        if not rows:
            continue
        out += [f"### {maze}", "", f"Protocol: {rows[0]['protocol_text']}", "",
                "| protocol | planner | score | success | first arrival (step) | inside after arrival | rollout s | "
                "train steps | expert | random |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| {r['protocol']} | {r['planner']} | {r['normalized_score_mean']:.1f} ± {r['normalized_score_sem']:.1f} | "
                       f"{100 * r['success_rate']:.0f}% | {r.get('first_arrival_step_mean', float('nan')):.0f} | "
                       f"{100 * r.get('stay_fraction_after_arrival', float('nan')):.0f}% | {r['rollout_seconds']:.0f} | {r['train_steps']} | "
                       f"{r['expert']['normalized_score_mean']:.1f} | {r['random']['normalized_score_mean']:.1f} |")
        pm = mz.get("plan_metrics")
        if pm:
            out += ["", "Plans for 64 dataset conditions x 16 candidates (static-ness: plan speed / data speed; "
                    "action jitter: RMS change of consecutive planned actions):", "",
                    "| planner | diversity (m) | static-ness | step length (m) | start jump / data | action jitter |",
                    "|---|---|---|---|---|---|"]
            for label, r in pm.items():
                out.append(f"| {label} | {r['diversity_m']:.3f} | {r['staticness']:.2f} | {r['step_length_m']:.3f} "
                           f"(data {r['data_step_length_m']:.3f}) | {r['start_jump_ratio']:.2f} | "
                           f"{r.get('action_jitter', float('nan')):.3f} (data {r.get('data_action_jitter', float('nan')):.3f}) |")
        out.append("")
    toy = report.get("toy")
    if toy:
        out += ["## Bimodal toy (256 plans from the origin)", "",
                "| planner | above | below | through obstacle | step length |", "|---|---|---|---|---|"]
        for label, r in toy.items():
            out.append(f"| {label} | {100 * r['above']:.0f}% | {100 * r['below']:.0f}% | {100 * r['through_obstacle']:.0f}% | "
                       f"{r['step_length']:.3f} |")
        out.append("")
    out += ["## Targets", ""] + targets(report)
    if report.get("not_measured"):
        out += ["", "Not measured: " + "; ".join(report["not_measured"])]
    out += ["", "Figure: compare.png (candidate plans per method, toy and UMaze)."]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mazes", nargs="+", default=["umaze"], choices=["umaze", "medium", "large"])
    ap.add_argument("--runs", default="bench/results/pointmaze", help="datasets and existing runs (read only)")
    ap.add_argument("--out", default="bench/results/compare")
    ap.add_argument("--steps", type=int, default=10_000, help="training steps of every method")
    ap.add_argument("--dwell", type=int, default=0,
                    help="use <runs>/<maze>-dwell<N>.hdf5 and runs named like bench/pointmaze.py --dwell N")
    ap.add_argument("--tag", default="", help="run-directory suffix, as bench/pointmaze.py --tag")
    ap.add_argument("--no-train", action="store_true", help="only load existing runs")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--protocols", nargs="+", default=["own-actions", "tracker"])
    ap.add_argument("--eval-steps", type=int, nargs="+", default=[20, 5], help="diffusion DDIM steps in closed loop")
    ap.add_argument("--latency-steps", type=int, nargs="+", default=[5, 20, 100, 256])
    ap.add_argument("--latency-k", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--latency-budget", type=float, default=40.0,
                    help="seconds of timing per K (planners interleaved in blocks, >= 20 calls each)")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-closed-loop", action="store_true")
    ap.add_argument("--skip-toy", action="store_true")
    ap.add_argument("--toy-steps", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.chdir(ROOT)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = "python bench/compare.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    prev = json.loads((out / "compare.json").read_text()) if (out / "compare.json").exists() else {}
    report = {"commands": list(dict.fromkeys([*prev.get("commands", []), cmd])),
              "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "loadavg": [round(x, 2) for x in os.getloadavg()]},
              "latency": prev.get("latency"), "mazes": prev.get("mazes", {}), "toy": prev.get("toy"),
              "runs": prev.get("runs", {}), "not_measured": []}
    all_runs: dict[str, dict[str, Path]] = {}
    for maze in args.mazes:
        runs = {m: r for m in METHODS if (r := ensure_run(m, maze, args)) is not None}
        missing = sorted(set(METHODS) - set(runs))
        if missing:
            report["not_measured"].append(f"{maze}: {', '.join(missing)} (no run)")
        all_runs[maze] = runs
        report["runs"][maze] = {m: run_summary(r) for m, r in runs.items()}
        if not args.skip_latency and maze == args.mazes[0] and {"kdp", "diffusion"} <= set(runs):
            report["latency"] = latency_table(runs["kdp"], runs["diffusion"], maze, args)
            save(out, report)
        if not args.skip_closed_loop and runs:
            mz = {"closed_loop": closed_loop(runs, maze, args), "plan_metrics": plan_metrics(runs, maze, args),
                  "episodes": args.episodes, "dwell": args.dwell, "train_steps": args.steps}
            report["mazes"][maze] = mz
            save(out, report)
    toy_plans = None
    if not args.skip_toy:
        report["toy"], toy_plans = toy_report(toy_models(args), args)
    elif report.get("toy"):
        toy_plans = toy_report(toy_models(args), args)[1] if all(
            (out / f"toy-{m}" / "checkpoint.pt").exists() for m in METHODS) else None
    umaze_runs = all_runs.get("umaze")
    if umaze_runs is None and report["runs"].get("umaze"):
        umaze_runs = {m: Path(r["run"]) for m, r in report["runs"]["umaze"].items()}
    if umaze_runs and set(umaze_runs) != set(METHODS):
        umaze_runs = None
    for maze in ("umaze", "medium", "large"):
        if maze not in report["mazes"]:
            report["not_measured"].append(f"{maze}: closed loop not run (time budget); "
                                          f"`python bench/compare.py --mazes {maze} --skip-latency --skip-toy`")
    figure(out / "compare.png", toy_plans, umaze_runs, args)
    save(out, report)
    print(markdown(report))


def save(out: Path, report: dict) -> None:
    report["provenance"] = provenance()
    (out / "compare.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "compare.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
