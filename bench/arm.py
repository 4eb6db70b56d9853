"""Arm task benchmark (issue #26): data -> train -> eval vs expert / random -> int8 export (parity gate,
closed loop) -> the bundle on the virtual arm behind a servo bus (``kdp-edge run --port sim://feetech-arm``).

    python bench/arm.py --data-steps 200000 --steps 5000 --out bench/results/arm

Every stage is the ``kdp-edge`` command line (printed as it runs), one torch / ORT thread. The score
(defined in kdp_edge/envs/arm.py): per episode 100 x (return - random's) / (expert's - random's),
return = steps with every joint within 0.05 rad of the goal until the first entry into the forbidden
region. ``kdp-edge eval`` plays ``--episodes`` seeded episodes (seed ``--eval-seed``) on the numpy
plant; ``kdp-edge run`` plays the first ``--run-episodes`` of the same episodes in real time on the
virtual Feetech bus, the bundle talking servo packets over a pty. Writes <out>/arm.json and
<out>/arm.md; reuses the dataset, run and bundle found in <out> (delete them to start over).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdp_edge.provenance import provenance, provenance_line  # noqa: E402


def kdp(*args: str) -> float:
    """Run one kdp-edge command (checked); returns its wall time in seconds."""
    cmd = [sys.executable, "-m", "kdp_edge.cli", *args]
    print("+ kdp-edge", " ".join(shlex.quote(a) for a in args), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-steps", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=5_000, help="training steps")
    ap.add_argument("--seed", type=int, default=0, help="data and training seed")
    ap.add_argument("--episodes", type=int, default=50, help="kdp-edge eval episodes")
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--run-episodes", type=int, default=5, help="episodes through the virtual servo bus")
    ap.add_argument("--bus", choices=["feetech", "dynamixel"], default="feetech")
    ap.add_argument("--out", default="bench/results/arm")
    args = ap.parse_args()
    prov = provenance()  # before any stage writes a (tracked) result file: "dirty" is about the code
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, run, bundle = out / "arm.hdf5", out / "run", out / "bundle-int8"
    t: dict[str, float] = {}
    if not data.exists():
        t["data_s"] = kdp("data", "arm", "--steps", str(args.data_steps), "--seed", str(args.seed), "--out", str(data))
    if not (run / "checkpoint.pt").exists():
        t["train_s"] = kdp("train", "--data", str(data), "--out", str(run), "--steps", str(args.steps), "--seed",
                           str(args.seed), "--threads", "1", "--quiet")
    ev = run / f"eval-arm-seed{args.eval_seed}-e{args.episodes}.json"  # a reused report has this episode count
    if not ev.exists():
        t["eval_s"] = kdp("eval", str(run), "--env", "arm", "--episodes", str(args.episodes), "--seed", str(args.eval_seed),
                          "--threads", "1", "--out", str(ev), "--quiet")
    if not (bundle / "bundle.json").exists():
        t["export_s"] = kdp("export", str(run), "--out", str(bundle), "--quantize", "int8", "--int8-only",
                            "--closed-loop-episodes", "20")
    summary = out / f"run-{args.bus}-arm.json"
    t["run_s"] = kdp("run", str(bundle), "--port", f"sim://{args.bus}-arm", "--episodes", str(args.run_episodes),
                     "--seed", str(args.eval_seed), "--threads", "1", "--summary", str(summary))

    old = json.loads((out / "arm.json").read_text()) if (out / "arm.json").exists() else {}
    # stages reused from an earlier invocation keep the times it measured (with its command and commit)
    earlier = {k: v for k, v in old.get("seconds", {}).items() if k not in t}
    rep = json.loads(ev.read_text())
    manifest = json.loads((bundle / "bundle.json").read_text())
    (path, parity), = ((p, v) for p, v in manifest["parity"].items() if "int8" in p)
    s = json.loads(summary.read_text())
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    res = {
        "command": "python bench/arm.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "provenance": prov, "args": vars(args),
        "seconds": earlier | {k: round(v, 1) for k, v in t.items()},
        "seconds_measured_by": {k: old.get("seconds_measured_by", {}).get(k, "earlier: " + old.get("command", "?")
                                    + " at commit " + str(old.get("provenance", {}).get("commit", "?"))[:12])
                                if k in earlier else "this invocation" for k in earlier | t},
        "train": {"steps": rep["checkpoint"]["step"], "parameters": rep["checkpoint"]["parameters"],
                  "arch": rep["checkpoint"]["arch"], "steps_per_s": metrics[-1].get("steps_per_s")},
        "eval": {"protocol_text": rep["protocol_text"], **{k: rep[k] for k in ("kdp", "expert", "random")}},
        "int8": {"file": path, "bytes": next(f["bytes"] for f in manifest["files"] if f["path"] == path),
                 "first_action_rms_frac": parity["first_action_rms_frac"], "within_budget": parity["within_budget"],
                 "budget_first_action_frac": parity["budget_first_action_frac"],
                 "closed_loop": parity.get("closed_loop")},
        "servo_bus_run": {"port": s["port"], "sim": {k: v for k, v in s["sim"].items() if k != "per_episode"},
                          "per_episode": [{k: e[k] for k in ("episode", "normalized_score", "success", "region_entered",
                                                             "return", "expert_return", "arrival_step", "closest_error")}
                                          for e in s["sim"].get("per_episode", [])],
                          "plan_ms": s.get("plan_ms"), "counts": s["counts"],
                          "link": {k: v for k, v in s["link"].items() if k.startswith("bus_") or k == "actions_sent"}},
    }
    (out / "arm.json").write_text(json.dumps(res, indent=2))
    k, ex, rn = rep["kdp"], rep["expert"], rep["random"]
    row = lambda n, r: (f"| {n} | {r['normalized_score_mean']:.1f} ± {r['normalized_score_sem']:.1f} | "  # noqa: E731
                        f"{100 * r['success_rate']:.0f}% | {100 * r['region_entered_rate']:.0f}% | "
                        + (f"{r['mean_arrival_step']:.0f}" if r.get("mean_arrival_step") else "-")
                        + f" | {r['closest_error_median']:.3f} |")
    sm, cl, ln = s["sim"], parity.get("closed_loop") or {}, s["link"]
    lines = [
        "# Arm task: KDP vs the scripted expert", "", f"- {provenance_line(res['provenance'])}", "",
        f"Protocol: {rep['protocol_text']}", "",
        f"Training: {res['train']['steps']} steps, {res['train']['arch']}, {res['train']['parameters']:,} parameters, "
        f"{args.data_steps:,} data steps (seed {args.seed}), one thread. Stage wall times (s): "
        + ", ".join(f"{k.removesuffix('_s')} {v:.0f}" for k, v in res["seconds"].items()) + ".", "",
        f"## `kdp-edge eval` ({rep['protocol']['episodes']} episodes, seed {rep['protocol']['seed']}, numpy plant, torch planner)", "",
        "| policy | normalised score | success | region entered | mean arrival step | closest to the goal (rad, median) |",
        "|---|---|---|---|---|---|",
        row("kdp", k), row("expert", ex), row("random", rn), "",
        f"Plan latency (torch, K=16): p50 {k['plan_latency']['p50_ms']:.2f} ms, p99 {k['plan_latency']['p99_ms']:.2f} ms.", "",
        "## int8 export", "",
        f"`{path}` ({res['int8']['bytes'] / 1e6:.2f} MB): first-action rms error {100 * parity['first_action_rms_frac']:.2f}% "
        f"of the action range (budget {100 * parity['budget_first_action_frac']:g}%, within: {parity['within_budget']}); "
        + (f"export's closed-loop check on {cl.get('episodes')} episodes (seed {cl.get('seed')}): int8 "
           f"{cl.get('score_mean', float('nan')):.2f} ± {cl.get('score_sem', float('nan')):.2f}, success "
           f"{100 * cl.get('success_rate', 0):.0f}%; torch {cl.get('torch_score_mean', float('nan')):.2f} ± "
           f"{cl.get('torch_score_sem', float('nan')):.2f}, success {100 * cl.get('torch_success_rate', 0):.0f}%." if cl else
           "no closed-loop check."), "",
        f"## `kdp-edge run --port sim://{args.bus}-arm` (int8 bundle, real time, virtual {args.bus} bus)", "",
        f"{sm.get('episodes', 0)} episodes (the first of the eval's episodes, seed {args.eval_seed}): normalised score "
        + (f"{sm['normalized_score_mean']:.1f} ± {sm['normalized_score_sem']:.1f}, success {100 * sm['success_rate']:.0f}%"
           if sm.get("episodes") else sm.get("note", "")) + ".",
        f"Plan latency p50 {s.get('plan_ms', {}).get('p50_ms', float('nan')):.2f} ms, p99 "
        f"{s.get('plan_ms', {}).get('p99_ms', float('nan')):.2f} ms; cycles {s['counts']['cycles']}, deadline misses "
        f"{s['counts']['deadline_misses']}; servo bus: sync reads {ln.get('bus_sync_reads', 0)}, missed STATEs "
        f"{ln.get('bus_states_missed', 0)}, checksum errors {ln.get('bus_checksum_errors', 0)}, goals clamped "
        f"{ln.get('bus_goals_clamped', 0)}.", "",
        "| episode | score | success | region entered | return | expert return | closest (rad) |", "|---|---|---|---|---|---|---|",
        *(f"| {e['episode']} | {e['normalized_score']:.1f} | {e['success']} | {e['region_entered']} | {e['return']} | "
          f"{e['expert_return']:.0f} | {e['closest_error']:.3f} |" for e in res["servo_bus_run"]["per_episode"]),
    ]
    (out / "arm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
