"""Score per millisecond: the planning Pareto frontier of KDP and diffusion (issue #29).

    python bench/pareto.py --kdp RUN [RUN ...] --diffusion RUN [RUN ...] --episodes 50 --threads 1

A robot has a latency budget, not a candidate count. For trained runs of one task (PointMaze
umaze / medium / large or PushT; several runs per method = several training seeds), this measures
every planner configuration of the grid

    KDP        K in --kdp-k (1, 2, 4, 8, 16, 32, 64)                      one model pass per plan
    diffusion  T in --diffusion-t (2, 5, 10, 20) x K in --diffusion-k (1, 4, 16)   T passes (DDIM)

twice:
1. closed-loop score: the run's torch model (EMA) behind the device's Planner (same input checks,
   noise, scoring, selection as the robot), the same seeded episodes for every configuration and
   seed (PointMaze: D4RL-normalised score, own actions by default; PushT: mean max coverage);
2. whole-plan latency on the device runtime: the first run of each method is exported (ONNX fp32
   and int8 and TFLite for KDP, the ONNX denoiser for diffusion; into <out>/bundles/, not committed)
   unless --kdp-bundle / --diffusion-bundle name bundles, and every configuration of both bundles
   is timed in ONE process, interleaved, one thread (kdp_edge.runtime.pareto.time_grid on
   runtime/bench.py's timer). Timing runs before torch is imported (scores come after).

Writes <out>/<task>[-<tag>].json (provenance, every point per seed, the frontier, the best
configuration per budget), .md (tables) and .png (score vs p50 and p99 plan latency, log axis, one
line per planner family, the 50 / 100 / 200 Hz periods marked). Scores are cached per (run, config)
in <out>/work/ so an interrupted run resumes. int8 / TFLite points carry the fp32 torch score of
the same configuration (the export's parity check bounds their difference; bundle.json's parity is
copied into the report).

Bad input (a missing run, a run of the other method or another task, too few steps with
--require-step) exits with code 2 and one line saying what to fix.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kdp_edge.errors import KDPError  # noqa: E402
from kdp_edge.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from kdp_edge.provenance import provenance, provenance_line  # noqa: E402
from kdp_edge.runtime import pareto as P  # noqa: E402

TASKS = ("pointmaze-umaze", "pointmaze-medium", "pointmaze-large", "pusht")
METHOD_OF = {"kdp": "drift", "diffusion": "diffusion"}  # family -> run.json method
# budgets are checked against wall p50 and p99 (what a deadline sees) and the planning thread's CPU-time p99
# (the tail without preemption by other processes: on a shared machine the wall p99 is mostly that)
REPORT_LATENCIES = (*P.LATENCIES, "cpu_p99_ms")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- runs ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    path: Path
    method: str  # kdp | diffusion
    env: str
    step: int
    seed: int | None
    name: str

    @property
    def sha256(self) -> str:
        from kdp_edge.bundle import sha256_file

        if not hasattr(self, "_sha"):
            self._sha = sha256_file(self.path / "checkpoint.pt")
        return self._sha


def check_run(path: str, family: str, require_step: int | None) -> Run:
    """A complete run directory of ``family`` (kdp | diffusion); KDPError (exit 2) otherwise."""
    p = Path(path)
    flag = f"--{family}"
    if not p.is_dir():
        raise KDPError(f"{flag} {path}: run directory not found; pass a directory written by kdp-edge train")
    missing = [n for n in ("run.json", "config.json", "normalizer.json", "checkpoint.pt") if not (p / n).exists()]
    if missing:
        raise KDPError(f"{flag} {path}: not a complete run ({', '.join(missing)} missing); was training interrupted "
                       "before its first checkpoint?")
    try:
        info = json.loads((p / "run.json").read_text())
        cfg = json.loads((p / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise KDPError(f"{flag} {path}: run.json / config.json unreadable ({exc})") from exc
    method = info.get("method", cfg.get("method", "drift"))
    if method != METHOD_OF[family]:
        other = "diffusion" if method == "diffusion" else "kdp"
        raise KDPError(f"{flag} {path}: this is a {method} run, not a {METHOD_OF[family]} one; pass it with --{other}")
    step = int(info.get("step", 0))
    if require_step is not None and step < require_step:
        raise KDPError(f"{flag} {path}: trained {step} steps, fewer than --require-step {require_step}; wait for "
                       "training to finish or lower --require-step")
    return Run(p, family, info.get("env", ""), step, cfg.get("seed"), p.name)


def check_task(runs: list[Run], task: str | None) -> str:
    envs = sorted({r.env for r in runs})
    if len(envs) != 1:
        raise KDPError("the runs were trained on different tasks (" + ", ".join(f"{r.path}: {r.env or '?'}" for r in runs)
                       + "); one task per call")
    env = envs[0]
    if task and env != task:
        raise KDPError(f"--task {task}, but the runs were trained on {env}; drop --task or pass runs of {task}")
    if env not in TASKS:
        raise KDPError(f"the runs' task {env or '(unknown)'} has no closed-loop evaluation here; supported: "
                       f"{', '.join(TASKS)}")
    return env


# ---- bundles ------------------------------------------------------------------------------------------
def _bundle_is_of(bundle: Path, run: Run) -> bool:
    """The bundle was exported from the run's current checkpoint (same sha256)."""
    try:
        src = json.loads((bundle / "bundle.json").read_text()).get("source_checkpoint", {})
    except (OSError, ValueError):
        return False
    return src.get("sha256") == run.sha256


def ensure_bundle(run: Run, out: Path, args) -> Path:
    """The run's bundle under <out>/bundles/ (exported with the CLI in a subprocess when missing or
    exported from another checkpoint); KDP: --format all (or --formats) --quantize int8, K = --export-k."""
    digest = hashlib.sha1(str(run.path.resolve()).encode()).hexdigest()[:8]
    bundle = out / "bundles" / f"{run.name}-{digest}"
    if (bundle / "bundle.json").exists() and _bundle_is_of(bundle, run):
        log(f"bundle {bundle} (step {run.step}) reused")
        return bundle
    cmd = [sys.executable, "-m", "kdp_edge.cli", "export", str(run.path), "--out", str(bundle),
           "--closed-loop-episodes", str(args.export_closed_loop)]
    if run.method == "kdp":
        fmt = "all" if set(args.formats) >= {"onnx", "tflite"} else args.formats[0]
        cmd += ["--format", fmt, "--quantize", "int8", "--candidates", str(args.export_k)]
    else:
        cmd += ["--format", "onnx"]
    log(f"exporting {run.path} -> {bundle}")
    bundle.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise KDPError(f"export of {run.path} failed ({' '.join(cmd)}):\n{(r.stderr or r.stdout)[-2000:]}")
    return bundle


def check_bundle(path: str, family: str) -> Path:
    from kdp_edge.bundle import load_bundle
    from kdp_edge.runtime.planner import is_denoiser_bundle

    b = load_bundle(path)  # BundleError (a KDPError) when missing or corrupt
    if (family == "diffusion") != is_denoiser_bundle(b):
        raise KDPError(f"--{family}-bundle {path}: a {b.manifest.method} bundle, not a {family} one")
    return Path(path)


def bundle_parity(bundle: Path) -> dict:
    """bundle.json's parity record per model file (int8 vs fp32 first-action error, closed loop)."""
    try:
        return json.loads((bundle / "bundle.json").read_text()).get("parity", {})
    except (OSError, ValueError):
        return {}


# ---- scores -------------------------------------------------------------------------------------------
def grid_of(method: str, args) -> list[tuple[int | None, int]]:
    """(T, K) pairs of ``method``'s grid (T None for KDP)."""
    if method == "kdp":
        return [(None, k) for k in args.kdp_k]
    return [(t, k) for t in args.diffusion_t for k in args.diffusion_k]


class ScoreCache:
    """Per (run, checkpoint, config, protocol) scores in <out>/work/<task>-scores.json (resume)."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    @staticmethod
    def key(run: Run, t, k, proto: dict) -> str:
        """Run directory, its checkpoint's sha256 (a retrained run is measured again), config, protocol."""
        return json.dumps([str(run.path.resolve()), run.sha256, t, k, proto], sort_keys=True)

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value) -> None:
        self.data[key] = value
        atomic_write_json(self.path, self.data)


def protocol_of(task: str, args) -> dict:
    if task == "pusht":
        return {"env": task, "episodes": args.episodes or 200, "seed": 100_000 if args.seed is None else args.seed,
                "action_steps": args.action_steps, "max_steps": 300}
    return {"env": task, "episodes": args.episodes or 50, "seed": 0 if args.seed is None else args.seed,
            "protocol": args.protocol, "lookahead": 8}


def measure_scores(runs: list[Run], task: str, args, cache: ScoreCache) -> tuple[list[dict], str, str]:
    """Closed-loop score of every (run, config); returns (per-seed points, metric name, protocol text)."""
    import torch

    from kdp_edge.checkpoint import load_run
    from kdp_edge.planning import ScoringSpec
    from kdp_edge.torch_planner import run_planner

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    proto = protocol_of(task, args)
    out: list[dict] = []
    if task == "pusht":
        from kdp_edge import pusht as pt

        metric = "mean max coverage (PushT)"
        text = pt.PushTProtocol(episodes=proto["episodes"], seed=proto["seed"], action_steps=proto["action_steps"]).describe()
    else:
        from kdp_edge import evaluate as ev

        metric = f"D4RL-normalised score ({proto['protocol']})"
        base = ev.EvalProtocol(env=task, episodes=proto["episodes"], seed=proto["seed"], protocol=proto["protocol"],
                               lookahead=proto["lookahead"])
        text = base.describe().replace(f"K = {base.candidates} candidates", "K per configuration")
        sims = ev.make_sims(base)
    total = sum(len(grid_of(r.method, args)) for r in runs)
    done = 0
    for run in runs:
        loaded, model = None, None
        for t, k in grid_of(run.method, args):
            done += 1
            key = cache.key(run, t, k, proto)
            hit = cache.get(key)
            label = f"{run.name} {P.config_label(run.method, k, t)}"
            if hit is None:
                if loaded is None:
                    loaded = load_run(run.path)
                    model = loaded.build_model(ema=True)
                if t is not None:
                    model.set_sampler("ddim", t)
                t0 = time.perf_counter()
                if task == "pusht":
                    p = pt.PushTProtocol(episodes=proto["episodes"], seed=proto["seed"],
                                         action_steps=proto["action_steps"], candidates=k)
                    planner = run_planner(loaded, k, ScoringSpec.for_run(loaded.info, p.action_steps), seed=p.seed,
                                          model=model)
                    res = pt.rollout(pt.planner_plan_fn(planner), p, model.obs_dim, loaded.info.obs_history, label,
                                     progress=False)
                    s = pt.summarize(res)
                    hit = {"score": s["mean_max_coverage"], "score_sem": s["max_coverage_sem"],
                           "success_rate": s["success_rate"], "episodes": s["episodes"],
                           "episode_scores": np.round(res["max_coverage"], 4).tolist()}
                else:
                    p = ev.EvalProtocol(env=task, episodes=proto["episodes"], seed=proto["seed"],
                                        protocol=proto["protocol"], lookahead=proto["lookahead"], candidates=k)
                    planner = run_planner(loaded, k, ScoringSpec.for_env(task), seed=p.seed, protocol=p.protocol,
                                          lookahead=p.lookahead, model=model)
                    res = ev.rollout(ev.PlannerPolicy(planner), p, label, progress=False, sims=sims)
                    s = ev.summarize(res)
                    hit = {"score": s["normalized_score_mean"], "score_sem": s["normalized_score_sem"],
                           "success_rate": s["success_rate"], "episodes": s["episodes"],
                           "episode_scores": np.round(res["scores"], 3).tolist()}
                hit["eval_s"] = round(time.perf_counter() - t0, 1)
                cache.put(key, hit)
                log(f"score {done}/{total} {label}: {hit['score']:.4g} ± {hit['score_sem']:.2g} ({hit['eval_s']:.0f} s)")
            out.append({"method": run.method, "k": k, "t": t, "run": str(run.path), "run_seed": run.seed,
                        "step": run.step} | hit)
    return out, metric, text


def aggregate(per_seed: list[dict]) -> list[dict]:
    """Mean over training seeds per (method, K, T): ``score`` (mean of the seeds' means), ``score_sem``
    (episode sampling error of that mean: sqrt(sum sem_i^2) / n), ``seed_std`` (n > 1), per seed."""
    groups: dict[tuple, list[dict]] = {}
    for p in per_seed:
        groups.setdefault((p["method"], p["k"], p["t"]), []).append(p)
    out = []
    for (method, k, t), ps in groups.items():
        s = np.array([p["score"] for p in ps])
        sem = np.array([p["score_sem"] for p in ps])
        out.append({"method": method, "k": k, "t": t, "config": P.config_label(method, k, t),
                    "score": float(s.mean()), "score_sem": float(np.sqrt((sem**2).sum()) / len(s)),
                    "seed_std": float(s.std(ddof=1)) if len(s) > 1 else None, "seeds": len(s),
                    "success_rate": float(np.mean([p["success_rate"] for p in ps])),
                    "per_seed": [{"run": p["run"], "run_seed": p["run_seed"], "step": p["step"], "score": p["score"],
                                  "score_sem": p["score_sem"], "success_rate": p["success_rate"]} for p in ps]})
    return out


# ---- report -------------------------------------------------------------------------------------------
def build_points(rows: list[dict], scores: list[dict]) -> list[dict]:
    table = {(s["method"], s["k"], s["t"]): s for s in scores}
    points = []
    for r in rows:
        s = table.get((r["method"], r["k"], r["t"]))
        points.append({"family": r["family"], "method": r["method"], "planner": P.METHOD_LABELS[r["method"]], "backend": r["backend"],
                       "precision": r["precision"], "k": r["k"], "t": r["t"], "config": r["config"],
                       "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "cpu_p50_ms": r["cpu_p50_ms"],
                       "cpu_p99_ms": r["cpu_p99_ms"], "macs_per_plan": r.get("macs_per_plan"),
                       "score": s["score"] if s else None, "score_sem": s["score_sem"] if s else None,
                       "label": r["label"]})
    return points


def _slim(best_rows: list[dict]) -> list[dict]:
    keep = ("family", "method", "backend", "precision", "config", "k", "t", "score", "score_sem", "p50_ms", "p99_ms",
            "cpu_p50_ms", "cpu_p99_ms")
    return [b | {"best": {f: ({k: p[k] for k in keep} if p else None) for f, p in b["best"].items()}}
            for b in best_rows]


def verdict(best_rows: list[dict]) -> str:
    """One sentence per latency statistic: at which budgets which planner's best score is higher."""
    parts = []
    for b in best_rows:
        kdp, diff = b["best"].get("KDP"), b["best"].get("diffusion")
        if kdp is None and diff is None:
            parts.append(f"{b['label']}: neither fits")
        elif diff is None:
            parts.append(f"{b['label']}: only KDP fits ({kdp['score']:.4g}, {kdp['config']})")
        elif kdp is None:
            parts.append(f"{b['label']}: only diffusion fits ({diff['score']:.4g}, {diff['config']})")
        else:
            d = kdp["score"] - diff["score"]
            who = "KDP above" if d > 0 else "diffusion above" if d < 0 else "tie"
            parts.append(f"{b['label']}: {who} ({kdp['score']:.4g} {kdp['config']} vs {diff['score']:.4g} "
                         f"{diff['config']}, KDP {d:+.3g})")
    return "; ".join(parts)


def markdown(report: dict) -> str:
    prov = report["provenance"]
    lat = report["latency"]
    h = lat["host"]
    runs = report["runs"]
    lines = [f"# Score per millisecond: {report['task']}", "", provenance_line(prov), ""]
    for fam in ("kdp", "diffusion"):
        if runs.get(fam):
            lines.append(f"- {P.METHOD_LABELS[fam]} runs: " + ", ".join(
                f"`{r['path']}` (step {r['step']}, training seed {r['seed']})" for r in runs[fam]))
    if report.get("score_protocol"):
        lines.append(f"- Score: {report['score_metric']}; {report['score_protocol']}. Through the device's Planner "
                     "on each run's torch model (EMA); mean over training seeds (± episode standard error of that mean).")
    load = h.get("load_average_before"), h.get("load_average_after")
    o = lat["options"]
    lines.append(f"- Latency: whole plan (`Planner.plan`: checks, noise, model, scoring, selection) on the device runtime, "
                 f"{o['threads']} thread, {o['runs']} timed plans per configuration after {o['warmup']} warm-up, "
                 f"{o['interleaved']}; bundles of the first run of each method: "
                 + ", ".join(f"`{b}`" for b in lat["bundles"]) + f". Host: {h['model']} ({h['arch']}, {h['cores']} cores"
                 + (f"; load average {load[0][0]:.2f} before, {load[1][0]:.2f} after" if all(load) else "") + ").")
    lines.append("- int8 / TFLite points carry the fp32 score of the same configuration (see parity in the JSON).")
    if report["best_by_method"]:
        lines += ["", "**Best KDP vs best diffusion configuration within each budget** (any backend / precision):", ""]
        for lat_key in REPORT_LATENCIES:
            lines.append(f"- {lat_key.removesuffix('_ms').replace('_', ' ')} plan latency: "
                         f"{verdict(report['best_by_method'][lat_key])}")
    for lat_key in REPORT_LATENCIES:
        name = lat_key.removesuffix("_ms").replace("_", " ")
        if report["best_by_method"].get(lat_key):
            lines += ["", f"## Best score within a latency budget ({name} plan latency)", "",
                      "Per method (best over every backend and precision):", "",
                      P.format_best(report["best_by_method"][lat_key]), "",
                      "Per planner family:", "", P.format_best(report["best_by_family"][lat_key])]
    lines += ["", "## Every configuration", "", P.format_grid(report["points"], report["budgets"])]
    multi = [s for s in report["scores"] if s["seeds"] > 1]
    if multi:
        lines += ["", "## Per training seed", "", "| method | config | mean | seed std | per seed |", "|---|---|---|---|---|"]
        for s in sorted(multi, key=lambda s: (s["method"], s["t"] or 0, s["k"])):
            lines.append(f"| {P.METHOD_LABELS[s['method']]} | {s['config']} | {s['score']:.4g} | {s['seed_std']:.3g} | "
                         + ", ".join(f"{p['score']:.4g} (seed {p['run_seed']})" for p in s["per_seed"]) + " |")
    for n in report.get("notes", []):
        lines.append(f"\nnote: {n}")
    if report.get("plot"):
        lines += ["", f"![score vs plan latency]({Path(report['plot']).name})"]
    return "\n".join(lines) + "\n"


def parse_ints(s: str) -> list[int]:
    try:
        v = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {s!r}")
    return v


def parse_floats(s: str) -> list[float]:
    try:
        v = [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None
    if any(not x > 0 for x in v):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {s!r}")
    return v


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kdp", nargs="+", default=[], metavar="RUN", help="KDP (drift) run directories, one per training seed")
    ap.add_argument("--diffusion", nargs="+", default=[], metavar="RUN", help="diffusion run directories, one per seed")
    ap.add_argument("--task", choices=TASKS, default=None, help="check the runs' task (default: read from run.json)")
    ap.add_argument("--kdp-bundle", default=None, help="time this bundle instead of exporting the first KDP run")
    ap.add_argument("--diffusion-bundle", default=None, help="time this bundle instead of exporting the first diffusion run")
    ap.add_argument("--kdp-k", type=parse_ints, default=list(P.DEFAULT_KDP_K))
    ap.add_argument("--diffusion-t", type=parse_ints, default=list(P.DEFAULT_DIFFUSION_T))
    ap.add_argument("--diffusion-k", type=parse_ints, default=list(P.DEFAULT_DIFFUSION_K))
    ap.add_argument("--budgets-ms", type=parse_floats, default=list(P.DEFAULT_BUDGETS_MS))
    ap.add_argument("--rates", type=parse_floats, default=list(P.DEFAULT_RATES_HZ), help="control rates (Hz) whose periods are budgets")
    ap.add_argument("--episodes", type=int, default=None, help="[default: 50; pusht: 200]")
    ap.add_argument("--seed", type=int, default=None, help="first episode seed [default: 0; pusht: 100000]")
    ap.add_argument("--protocol", choices=["own-actions", "tracker"], default="own-actions", help="PointMaze")
    ap.add_argument("--action-steps", type=int, default=8, help="PushT: planned actions executed per plan")
    ap.add_argument("--formats", type=lambda s: [x for x in s.split(",") if x], default=["onnx", "tflite"],
                    help="export formats and timing backends (onnx,tflite)")
    ap.add_argument("--precision", choices=["fp32", "int8", "all"], default="all")
    ap.add_argument("--export-k", type=int, default=16, help="K of the exported TFLite files (they have a fixed K)")
    ap.add_argument("--export-closed-loop", type=int, default=0, help="export's closed-loop check episodes")
    ap.add_argument("--runs", type=int, default=300, help="timed plans per configuration")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--block", type=int, default=20, help="interleaving block (plans)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the scores (timing always uses 1)")
    ap.add_argument("--require-step", type=int, default=None, help="refuse runs trained fewer steps")
    ap.add_argument("--no-scores", action="store_true", help="latency only (no simulator)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pareto"))
    ap.add_argument("--tag", default="", help="report name suffix: <task>-<tag>.json")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress line while timing")
    args = ap.parse_args(argv)
    if not args.kdp and not args.diffusion:
        ap.error("pass at least one run: --kdp RUN ... and/or --diffusion RUN ...")
    bad = [f for f in args.formats if f not in ("onnx", "tflite")]
    if bad or not args.formats:
        ap.error(f"--formats: unknown {bad}; use onnx, tflite")
    return args


def run(args) -> dict:
    t_start = time.perf_counter()
    runs = ([check_run(p, "kdp", args.require_step) for p in args.kdp]
            + [check_run(p, "diffusion", args.require_step) for p in args.diffusion])
    task = check_task(runs, args.task)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = task + (f"-{args.tag}" if args.tag else "")
    budget_list = P.budgets(args.budgets_ms, args.rates)
    bundles = {}
    for fam, given in (("kdp", args.kdp_bundle), ("diffusion", args.diffusion_bundle)):
        first = next((r for r in runs if r.method == fam), None)
        if given:
            bundles[fam] = check_bundle(given, fam)
        elif first is not None:
            bundles[fam] = ensure_bundle(first, out, args)
    # 1. latency (before torch is imported: the timing process is the device runtime alone)
    opts = P.GridOptions(kdp_k=args.kdp_k, diffusion_t=args.diffusion_t, diffusion_k=args.diffusion_k,
                         backends=args.formats, precision=args.precision, runs=args.runs, warmup=args.warmup,
                         block=args.block, threads=1, progress=not args.quiet)
    torch_before = "torch" in sys.modules
    log(f"timing {len(bundles)} bundle(s), every configuration interleaved ...")
    latency = P.time_grid(list(bundles.values()), opts)
    latency["torch_imported_during_timing"] = torch_before
    latency["parity"] = {fam: bundle_parity(b) for fam, b in bundles.items()}
    log(f"timing done in {latency['wall_s']:.0f} s")
    # 2. scores
    notes = list(latency["notes"])
    per_seed, metric, proto_text = [], "score", ""
    if not args.no_scores:
        cache = ScoreCache(out / "work" / f"{task}-scores.json")  # keys hold run, step, config, protocol
        per_seed, metric, proto_text = measure_scores(runs, task, args, cache)
    scores = aggregate(per_seed)
    points = build_points(latency["rows"], scores)
    report = {
        "provenance": provenance(), "task": task, "score_metric": metric, "score_protocol": proto_text,
        "protocol": protocol_of(task, args) if not args.no_scores else None,
        "runs": {fam: [{"path": str(r.path), "step": r.step, "seed": r.seed} for r in runs if r.method == fam]
                 for fam in ("kdp", "diffusion")},
        "grid": {"kdp_k": args.kdp_k, "diffusion_t": args.diffusion_t, "diffusion_k": args.diffusion_k},
        "budgets": budget_list, "scores": scores, "scores_per_seed": per_seed, "points": points,
        "frontier": {lat: {f: [p["config"] for p in P.pareto_frontier([q for q in points if q["family"] == f], lat)]
                           for f in sorted({q["family"] for q in points})} for lat in P.LATENCIES},
        "best_by_family": {lat: _slim(P.best_per_budget(points, budget_list, lat)) for lat in REPORT_LATENCIES}
        if scores else {},
        "best_by_method": {lat: _slim(P.best_per_budget(points, budget_list, lat, family="planner"))
                           for lat in REPORT_LATENCIES} if scores else {},
        "latency": latency, "notes": notes,
    }
    if not args.no_plot:
        png = out / f"{stem}.png"
        P.plot_frontier(png, points, budget_list,
                        title=f"{task}: {metric if scores else 'plan latency'} per configuration "
                              f"({latency['host']['model']}, 1 thread)", score_name=metric)
        report["plot"] = str(png)
    report["wall_s"] = time.perf_counter() - t_start
    atomic_write_json(out / f"{stem}.json", report)
    atomic_write_text(out / f"{stem}.md", markdown(report))
    log(f"wrote {out / stem}.json / .md" + (" / .png" if not args.no_plot else "") + f" in {report['wall_s']:.0f} s")
    return report


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        run(args)
    except KDPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
