"""PushT with real human demonstrations: KDP vs the diffusion baseline, side by side (issue #8).

    python bench/pusht.py --threads 2                       # train both (or load), evaluate 50 episodes
    python bench/pusht.py --no-train --episodes 50          # evaluate existing runs only
    python bench/pusht.py --recipe pusht-unet --tag unet --candidates 1   # both methods on the 1-D conv U-Net

Data: Diffusion Policy's 206 human PushT demonstrations, ``pusht_lowdim.npz``, looked up at --data,
else $KDP_PUSHT_DATA, else ../shared/datasets/pusht/pusht_lowdim.npz beside the repository. When it
is absent the benchmark says where it looked and exits 0 without results (nothing is downloaded).

Both methods use one training entry point, one checkpoint format and the same backbone (the
recipe's: MLP for ``pusht``, 1-D conv U-Net for ``pusht-unet``; kdp_edge.config.RECIPES) on the same
windows: 2 observations in (agent xy, block xy, cos/sin of the block angle; 12 values), 16
steps planned, 8 executed (Diffusion Policy's setting) or 2 (KDP replans cheaply). Evaluation:
gym-pusht, seeds 100000.., 300 steps, 200 episodes, K = 1 sample per plan and K = 16 with the
consensus choice (the medoid of the executed action chunks). Reported: mean max coverage (Diffusion
Policy's metric) and success (> 0.95) per method, with two references
(uniform random targets on the same episodes; the demonstrations replayed open loop), and plan
latency p50/p99 of one environment's plan, the methods interleaved in one process, with the ratio
diffusion / KDP. Writes <out>/pusht.json, pusht.md and pusht.png (pusht-<tag>.* with --tag).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from compare import time_interleaved  # noqa: E402

from kdp_edge.checkpoint import load_run  # noqa: E402
from kdp_edge.config import RECIPES, TrainConfig, merge, recipe  # noqa: E402
from kdp_edge.data.pusht import default_pusht_path, pusht_features  # noqa: E402
from kdp_edge.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from kdp_edge.planning import ScoringSpec  # noqa: E402
from kdp_edge.provenance import provenance, provenance_line  # noqa: E402
from kdp_edge.pusht import (  # noqa: E402
    PushTProtocol,
    planner_plan_fn,
    random_reference,
    replay_demos,
    rollout,
    summarize,
)
from kdp_edge.torch_planner import run_planner  # noqa: E402
from kdp_edge.train import Trainer  # noqa: E402

PUSHT_RECIPES = sorted(name for name in RECIPES if name.startswith("pusht"))  # shared with `train --recipe`
METHODS = {"kdp": {"method": "drift"}, "diffusion": {"method": "diffusion"}}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_run(method: str, data: Path, args) -> Path | None:
    run = Path(args.out) / f"pusht-{method}{'-' + args.tag if args.tag else ''}"
    if (run / "checkpoint.pt").exists():
        step = json.loads((run / "run.json").read_text())["step"]
        if step >= args.steps or args.no_train:
            return run
        log(f"resuming {run} at step {step} -> {args.steps}")
        prior = load_run(run)
        prior.cfg.optim.steps, prior.cfg.threads = args.steps, args.threads
        Trainer(prior.cfg, run, prior=prior, log=log).run(progress=False)
        return run
    if args.no_train:
        log(f"{run}: no run and --no-train: {method} skipped")
        return None
    extra = json.loads(args.set) if args.set else {}
    cfg = TrainConfig.from_dict(merge(args.base, merge(METHODS[method], merge({
        "data": {"path": str(data)}, "optim": {"steps": args.steps}, "threads": args.threads, "seed": args.seed}, extra))))
    log(f"training {method}: {args.steps} steps -> {run}")
    t0 = time.time()
    Trainer(cfg, run, log=log).run(progress=False)
    log(f"trained {method} in {time.time() - t0:.0f} s")
    return run


def variants(runs: dict[str, Path], eval_steps: list[int]):
    """(label, loaded run, model, network evaluations per plan): KDP once, diffusion once per T."""
    for method, run in runs.items():
        loaded = load_run(run)
        for t in (eval_steps if method == "diffusion" else [None]):
            model = loaded.build_model(ema=True)
            if t is None:
                yield method, loaded, model, 1
            else:
                model.set_sampler("ddim", t)
                yield f"diffusion T={t}", loaded, model, t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="pusht_lowdim.npz (default: $KDP_PUSHT_DATA or ../shared/datasets/pusht/)")
    ap.add_argument("--out", default="bench/results/pusht")
    ap.add_argument("--recipe", default="pusht", choices=PUSHT_RECIPES,
                    help="training recipe of new runs (both methods), from kdp_edge.config.RECIPES")
    ap.add_argument("--steps", type=int, default=None, help="training steps of each method (default: the recipe's)")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--tag", default="", help="variant name: runs in pusht-<method>-<tag>, report pusht-<tag>.json/.md/.png")
    ap.add_argument("--set", default="", help='JSON config overrides for new runs, e.g. \'{"optim": {"positives": 16}}\'')
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--episodes", type=int, default=200, help="50 is too few to rank recipes (see PushTProtocol)")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--eval-seed", type=int, default=100_000)
    ap.add_argument("--candidates", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--action-steps", type=int, nargs="+", default=[8, 2],
                    help="planned actions executed per plan, each value a protocol (Diffusion Policy: 8)")
    ap.add_argument("--eval-steps", type=int, nargs="+", default=[20], help="diffusion DDIM steps in closed loop")
    ap.add_argument("--latency-budget", type=float, default=20.0, help="seconds of interleaved timing")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pool", nargs="+", default=None, metavar="TAG",
                    help="write no new results: pool the reports pusht-<TAG>.json (one per training seed) into "
                         "pusht-<--tag>.json/.md, per configuration the seeds' means and their average")
    args = ap.parse_args()
    if args.pool:
        pool_seeds(Path(args.out), args.pool, args.tag or "seeds")
        return
    args.base = merge(TrainConfig().to_dict(), recipe(args.recipe))  # the recipe's full config
    if args.steps is None:
        args.steps = args.base["optim"]["steps"]
    os.chdir(ROOT)
    data = Path(args.data) if args.data else default_pusht_path()
    if not data.exists():
        print(f"bench/pusht.py: skipped: PushT demonstrations not found at {data} (looked at --data, then "
              f"$KDP_PUSHT_DATA, then ../shared/datasets/pusht/pusht_lowdim.npz); nothing is downloaded")
        return
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"pusht-{args.tag}" if args.tag else "pusht"  # a variant's report beside the recipe's
    runs = {m: r for m in args.methods if (r := ensure_run(m, data, args)) is not None}
    cmd = "python bench/pusht.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = {"command": cmd, "provenance": provenance(), "data": str(data), "recipe": args.recipe,
              "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "loadavg": [round(x, 2) for x in os.getloadavg()]},
              "runs": {}, "closed_loop": [], "references": {}, "latency": {}}
    for m, r in runs.items():
        info = json.loads((r / "run.json").read_text())
        last = json.loads((r / "metrics.jsonl").read_text().splitlines()[-1])
        arch = json.loads((r / "config.json").read_text())["model"]["arch"]
        if arch != args.base["model"]["arch"]:  # only an existing run can differ from the recipe
            log(f"note: {r} exists with backbone {arch}, not recipe {args.recipe}'s {args.base['model']['arch']}; "
                f"it is evaluated as it is (a new --tag or --out trains the recipe)")
        report["runs"][m] = {"run": str(r), "arch": arch, "parameters": info["parameters"], "steps": info["step"],
                             "train_steps_per_s": round(last.get("steps_per_s", float("nan")), 1),
                             "seed": json.loads((r / "config.json").read_text()).get("seed"),
                             # how the run was trained (command, commit), whoever evaluates it now
                             "trained_by": (json.loads((r / "provenance.json").read_text())
                                            if (r / "provenance.json").exists() else None)}
    protos = {(k, a): PushTProtocol(episodes=args.episodes, seed=args.eval_seed, action_steps=a, candidates=k)
              for a in args.action_steps for k in args.candidates}
    first = next(iter(protos.values()))
    report["protocol_text"] = first.describe(2, 16) + (
        f" (also executing {', '.join(map(str, args.action_steps[1:]))} of the 16)" if len(args.action_steps) > 1 else "")
    log("references: random targets on the same episodes, demonstrations replayed")
    report["references"]["random"] = random_reference(first)
    report["references"]["demos"] = replay_demos(data)
    curves = {}
    plan_fns = {}
    for label, loaded, model, nfe in variants(runs, args.eval_steps):
        info = loaded.info
        for (k, a), proto in protos.items():
            planner = run_planner(loaded, k, ScoringSpec.for_run(info, a), seed=args.eval_seed, model=model)
            plan = planner_plan_fn(planner)
            t0 = time.time()
            res = rollout(plan, proto, model.obs_dim, info.obs_history, f"{label} K={k} a={a}", progress=False)
            s = summarize(res)
            report["closed_loop"].append({"planner": label, "K": k, "action_steps": a, "network_evaluations": nfe, **s,
                                          "rollout_s": round(time.time() - t0, 1)})
            curves[f"{label} K={k}, {a} executed"] = res["max_coverage"]
            log(f"{label:>14} K={k:>2} {a} executed: mean max coverage {s['mean_max_coverage']:.3f} ± "
                f"{s['max_coverage_sem']:.3f}, success {100 * s['success_rate']:.0f}% ({time.time() - t0:.0f} s)")
            plan_fns.setdefault((label, k), plan)
        atomic_write_json(out / f"{stem}.json", report)
    # latency: one environment's plan (generation + consensus), methods interleaved
    z = np.load(data)
    obs = np.tile(pusht_features(z["state"][0]), 2)[None].astype(np.float32)
    for k in args.candidates:
        fns = {label: (lambda p=p: p(obs)) for (label, kk), p in plan_fns.items() if kk == k}
        if not fns:
            continue
        lat = time_interleaved(fns, args.latency_budget)
        base = lat.get("kdp")
        report["latency"][str(k)] = {label: v | ({"ratio_p50": v["p50_ms"] / base["p50_ms"]} if base else {})
                                     for label, v in lat.items()}
    atomic_write_json(out / f"{stem}.json", report)
    atomic_write_text(out / f"{stem}.md", markdown(report))
    figure(out / f"{stem}.png", curves, report)
    print(markdown(report))


def pool_seeds(out: Path, tags: list[str], tag: str) -> None:
    """One table over training seeds: for every (planner, K, executed) in all of ``pusht-<tag>.json``, each
    seed's mean max coverage and success, and their average (equal episode counts: the pooled mean)."""
    reports = {}
    for t in tags:
        f = out / f"pusht-{t}.json"
        if not f.exists():
            print(f"error: {f} not found. fix: run bench/pusht.py --tag {t} first (or name existing tags)",
                  file=sys.stderr)
            sys.exit(2)
        reports[t] = json.loads(f.read_text())
        for info in reports[t]["runs"].values():  # reports older than trained_by: read it from the run if it is here
            prov = Path(info["run"]) / "provenance.json"
            if info.get("trained_by") is None and prov.exists():
                info["trained_by"] = json.loads(prov.read_text())
            if info.get("seed") is None and (Path(info["run"]) / "config.json").exists():
                info["seed"] = json.loads((Path(info["run"]) / "config.json").read_text()).get("seed")
    rows = []
    keys = sorted({(c["planner"], c["K"], c["action_steps"]) for r in reports.values() for c in r["closed_loop"]},
                  key=lambda k: (k[0] != "kdp", k[0], k[1], -k[2]))
    for planner, k, a in keys:
        per = {t: next((c for c in r["closed_loop"] if (c["planner"], c["K"], c["action_steps"]) == (planner, k, a)),
                       None) for t, r in reports.items()}
        if any(v is None for v in per.values()):
            continue
        cov = [v["mean_max_coverage"] for v in per.values()]
        rows.append({"planner": planner, "K": k, "action_steps": a,
                     "episodes_per_seed": sorted({v["episodes"] for v in per.values()}),
                     "seeds": {t: {"mean_max_coverage": v["mean_max_coverage"], "max_coverage_sem": v["max_coverage_sem"],
                                   "success_rate": v["success_rate"],
                                   "training_seed": reports[t]["runs"].get(planner.split()[0], {}).get("seed")}
                               for t, v in per.items()},
                     "mean_max_coverage": float(np.mean(cov)),
                     "seed_range": [float(min(cov)), float(max(cov))],
                     "success_rate": float(np.mean([v["success_rate"] for v in per.values()]))})
    cmd = "python bench/pusht.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    pooled = {"command": cmd, "provenance": provenance(), "sources": {t: f"pusht-{t}.json" for t in tags},
              "protocols": {t: r["protocol_text"] for t, r in reports.items()},
              "runs": {t: r["runs"] for t, r in reports.items()}, "rows": rows,
              "references": next(iter(reports.values()))["references"],
              "latency": {t: r["latency"] for t, r in reports.items()}}
    lines = [provenance_line(pooled["provenance"]), "",
             f"Pooled over training seeds from {', '.join(f'`pusht-{t}.json`' for t in tags)} (each file: its own "
             "command, the commit that evaluated it, and each run's training provenance).", "",
             f"Protocol ({tags[0]}): {reports[tags[0]]['protocol_text']}", "",
             "| planner | K | executed per plan | " + " | ".join(f"{t}: coverage (success)" for t in tags)
             + " | mean over seeds | seed range | success |", "|---|---|---|" + "---|" * len(tags) + "---|---|---|"]
    for r in rows:
        cells = " | ".join(f"{r['seeds'][t]['mean_max_coverage']:.3f} ± {r['seeds'][t]['max_coverage_sem']:.3f} "
                           f"({100 * r['seeds'][t]['success_rate']:.0f}%)" for t in tags)
        lines.append(f"| {r['planner']} | {r['K']} | {r['action_steps']} | {cells} | {r['mean_max_coverage']:.3f} | "
                     f"{r['seed_range'][0]:.3f}-{r['seed_range'][1]:.3f} | {100 * r['success_rate']:.0f}% |")
    for name, x in pooled["references"].items():
        lines.append(f"| reference: {name} | - | - | " + " | ".join("" for _ in tags)
                     + f" | {x['mean_max_coverage']:.3f} | - | {100 * x['success_rate']:.0f}% |")
    lines += ["", "Plan latency p50 (ms, torch, one environment, interleaved per file):", ""]
    for t, lat in pooled["latency"].items():
        for k, per in lat.items():
            lines.append(f"- {t}, K = {k}: " + ", ".join(
                f"{label} {v['p50_ms']:.2f}" + (f" (x{v['ratio_p50']:.1f})" if "ratio_p50" in v else "")
                for label, v in per.items()))
    atomic_write_json(out / f"pusht-{tag}.json", pooled)
    atomic_write_text(out / f"pusht-{tag}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def markdown(r: dict) -> str:
    m = r["machine"]
    head = provenance_line(r["provenance"]) if "provenance" in r else f"Command: `{r['command']}`"
    lines = [head, "", f"Data: {r['data']}", "",
             f"Machine: {m['cpu']}, torch {m['torch']}, {m['threads']} thread(s); load average {m['loadavg']}.", "",
             f"Recipe of new runs: {r['recipe']}.", "", f"Protocol: {r['protocol_text']}", "",
             "| run | backbone | params | train steps | steps/s |", "|---|---|---|---|---|"]
    for name, x in r["runs"].items():
        lines.append(f"| {name} ({x['run']}) | {x['arch']} | {x['parameters']:,} | {x['steps']} | "
                     f"{x['train_steps_per_s']} |")
    lines += ["", "| planner | K | executed per plan | mean max coverage | success | mean steps | rollout s |",
              "|---|---|---|---|---|---|---|"]
    for c in sorted(r["closed_loop"], key=lambda c: (c["planner"] != "kdp", c["planner"], c["K"], -c["action_steps"])):
        lines.append(f"| {c['planner']} | {c['K']} | {c['action_steps']} | {c['mean_max_coverage']:.3f} ± "
                     f"{c['max_coverage_sem']:.3f} | {100 * c['success_rate']:.0f}% | {c['mean_steps']:.0f} | {c['rollout_s']} |")
    for name, x in r["references"].items():
        lines.append(f"| reference: {name} | - | - | {x['mean_max_coverage']:.3f} ± {x['max_coverage_sem']:.3f} | "
                     f"{100 * x['success_rate']:.0f}% | - | - |")
    if r["latency"]:
        lines += ["", "Plan latency (ms, one environment, torch, generation + consensus choice; interleaved):", "",
                  "| K | planner | p50 | p99 | ratio p50 vs KDP |", "|---|---|---|---|---|"]
        for k, rows in r["latency"].items():
            for label, v in rows.items():
                ratio = f"x{v['ratio_p50']:.1f}" if "ratio_p50" in v else "-"
                lines.append(f"| {k} | {label} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {ratio} |")
    lines += ["", "Targets: KDP mean max coverage >= 0.86 (Drifting Policy 0.86, Diffusion Policy 0.91)."]
    return "\n".join(lines) + "\n"


def figure(path: Path, curves: dict, report: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, cov in curves.items():
        ax.plot(np.sort(cov)[::-1], label=f"{label} (mean {cov.mean():.3f})")
    demos = report["references"].get("demos")
    if demos:
        ax.axhline(demos["mean_max_coverage"], ls="--", c="k", lw=1, label=f"demos mean {demos['mean_max_coverage']:.3f}")
    ax.axhline(0.95, ls=":", c="grey", lw=1, label="success 0.95")
    ax.set_xlabel("episode (sorted)")
    ax.set_ylabel("max coverage")
    ax.set_title("PushT: max coverage per episode")
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    main()
