"""Quality study runner (issue #22): train a grid of config variants on one PointMaze dataset, evaluate
each through ``kdp-edge eval`` (own actions, K = 1 and K = 16), and tabulate score, success,
static-ness, candidate diversity, start jump and training time.

    python bench/study.py --study key-role --maze medium --steps 10000 --seeds 0 --out bench/results/study

A study is a named list of variants in :data:`STUDIES`; each variant is a config override (the same
dict ``kdp-edge train --config`` takes), so every variant is a product option, not a patch. Datasets
and run directories live under ``<out>/<maze>-runs/`` (not committed) and are reused: a finished run
is evaluated again only when its report is missing, an unfinished one resumes. Writes
``<out>/<study>-<maze>.json`` and ``.md``; each row records the command, commit, machine and date of
the invocation that measured it (rows of other invocations are kept, so variants can run in parallel
processes and be merged).
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

# Key weights 3 / 10 / 30 scale the condition inside the condition+descriptor key (KeySpec.cond_weight).
STUDIES: dict[str, list[tuple]] = {  # name -> [(variant, config override[, {"reuse": variant, "eval_args": [...]}])]
    # Where the key matters: positives pooled over the batch's conditions (only the key can tell which of
    # them belong to a condition) against the kNN default, naive full-window key vs keyed.
    "key-role": [
        ("knn, full key", {"optim": {"positive_source": "knn"}, "drift": {"key": {"kind": "full"}}}),
        ("knn, keyed (w 3, default)", {}, {"reuse": "KDP default (knn P 32, keyed w 3)"}),  # the baseline study's run
        ("pooled, full key", {"optim": {"positive_source": "pooled"}, "drift": {"key": {"kind": "full"}}}),
        ("pooled, keyed w 3", {"optim": {"positive_source": "pooled"}}),
        ("pooled, keyed w 10", {"optim": {"positive_source": "pooled"}, "drift": {"key": {"cond_weight": 10.0}}}),
        ("pooled, keyed w 30", {"optim": {"positive_source": "pooled"}, "drift": {"key": {"cond_weight": 30.0}}}),
    ],
    # The reference pair every other row is read against: today's default and the diffusion baseline on the
    # same data, backbone, batch of G x N windows and steps (DDIM T = 20 at evaluation).
    "baseline": [
        ("KDP default (knn P 32, keyed w 3)", {}),
        ("diffusion DDIM T = 20", {"method": "diffusion"}),
    ],
    # Planning-time options ride on a trained variant: ("name", {}, {"reuse": "variant", "eval_args": [...]}).
    # Candidate noise scaled 1 .. 1 + spread (--noise-spread, commit aadc8f4) lost on --eval-seed 1000 and was
    # removed; its numbers stay in bench/results/study/noise-spread-medium-seed1000.md.
    # The gain on the drift's repulsion (DriftConfig.repulsion; 1 is the drifting field) as a trained knob for
    # candidate spread. Above 1 the generator diverged (1.5 at 10k steps: diversity 823 vs 0.175, the softmax
    # weights do not decay with distance, so the net push outward never balances), so only gains below 1
    # (narrower, sharper plans) are studied further.
    "repulsion": [
        ("repulsion 1 (default)", {}, {"reuse": "KDP default (knn P 32, keyed w 3)"}),
        ("repulsion 1.5", {"drift": {"repulsion": 1.5}}),
        ("repulsion 0.75", {"drift": {"repulsion": 0.75}}),
        ("repulsion 0.5", {"drift": {"repulsion": 0.5}}),
    ],
    # The PD-tracker protocol (Diffuser's: PD toward the planned position 8 steps ahead) on the baseline's runs,
    # through the shared Planner (issue #21 re-measures README's tracker rows; run with --candidates 16).
    "tracker": [
        ("KDP default, tracker", {}, {"reuse": "KDP default (knn P 32, keyed w 3)", "eval_args": ["--protocol", "tracker"]}),
        ("diffusion DDIM T = 20, tracker", {"method": "diffusion"},
         {"reuse": "diffusion DDIM T = 20", "eval_args": ["--protocol", "tracker"]}),
    ],
    # README's KDP-vs-diffusion table (issue #3) through the shared Planner (issue #21): the key ablations (naive
    # whole-window key, condition-only key) and diffusion at T = 5 beside the baseline pair, own actions and the
    # PD tracker (run with --candidates 16; the baseline and tracker studies hold the default and T = 20 rows).
    "ablation": [
        ("naive drift (full key)", {"drift": {"key": {"kind": "full"}}}),
        ("condition-only key", {"drift": {"key": {"kind": "condition"}}}),
        ("diffusion DDIM T = 5", {"method": "diffusion"}, {"reuse": "diffusion DDIM T = 20", "eval_args": ["--sample-steps", "5"]}),
        ("naive drift (full key), tracker", {"drift": {"key": {"kind": "full"}}},
         {"reuse": "naive drift (full key)", "eval_args": ["--protocol", "tracker"]}),
        ("condition-only key, tracker", {"drift": {"key": {"kind": "condition"}}},
         {"reuse": "condition-only key", "eval_args": ["--protocol", "tracker"]}),
        ("diffusion DDIM T = 5, tracker", {"method": "diffusion"},
         {"reuse": "diffusion DDIM T = 20", "eval_args": ["--sample-steps", "5", "--protocol", "tracker"]}),
    ],
    # The positive set at a fixed budget of generated windows per batch (G x N = 512).
    "positives": [
        ("knn P 32, 32 x 16 (default)", {}, {"reuse": "KDP default (knn P 32, keyed w 3)"}),
        ("own, 32 x 16", {"optim": {"positive_source": "own"}}),
        ("own, 64 x 8", {"optim": {"positive_source": "own", "conditions": 64, "samples": 8}}),
        ("own, 128 x 4", {"optim": {"positive_source": "own", "conditions": 128, "samples": 4}}),
    ],
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def kdp(*args: str) -> None:
    cmd = [sys.executable, "-m", "kdp_edge.cli", *args]
    print("+ kdp-edge", " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def train_and_eval(name: str, override: dict, seed: int, data: Path, runs: Path, args, extra: dict | None = None) -> dict:
    """Train (or resume, or reuse) the variant's run and evaluate it at every K. ``extra``: ``reuse`` (the
    name of another variant whose run this one evaluates, e.g. with other planning options) and
    ``eval_args`` (extra ``kdp-edge eval`` flags: planning-time options such as ``-k`` or ``--sample-steps``)."""
    extra = extra or {}
    eval_args = list(extra.get("eval_args", []))
    run = runs / f"{slug(extra.get('reuse', name))}-s{seed}"
    run.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not (run / "checkpoint.pt").exists():
        cfg_path = run.parent / f"{run.name}.config.json"  # written only by the variant that trains the run
        cfg_path.write_text(json.dumps(override | {"seed": seed}, indent=2))
        kdp("train", "--data", str(data), "--out", str(run), "--config", str(cfg_path), "--steps", str(args.steps),
            "--threads", str(args.threads), "--quiet")
    elif json.loads((run / "run.json").read_text())["step"] < args.steps:
        kdp("train", "--resume", "--out", str(run), "--steps", str(args.steps), "--quiet")
    train_s = time.perf_counter() - t0
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = [m for m in metrics if "staticness" in m][-1]
    row = {"variant": name, "override": override, "eval_args": eval_args, "seed": seed, "eval_seed": args.eval_seed,
           "goals": args.goals, "run": str(run.relative_to(ROOT)),
           "train_steps": last.get("step"), "train_seconds_this_invocation": round(train_s, 1),
           "steps_per_s": last.get("steps_per_s"),
           **{k: last.get(k) for k in ("diversity", "staticness", "start_jump_ratio", "action_rms")}}
    for k in args.candidates:
        tag = "".join(f"-{slug(a)}" for a in eval_args)
        tag += f"-seed{args.eval_seed}" if args.eval_seed else ""
        tag += "-random-goals" if args.goals == "random" else ""
        tag += f"-e{args.episodes}" if args.episodes != 50 else ""
        rep_path = run / f"eval-k{k}{tag}{'-refs' if args.references else ''}.json"
        if not rep_path.exists():
            kdp("eval", str(run), "--env", f"pointmaze-{args.maze}", "--episodes", str(args.episodes), "-k", str(k),
                "--protocol", "own-actions", "--seed", str(args.eval_seed), "--goals", args.goals,
                *([] if args.references else ["--no-references"]), *eval_args,
                "--out", str(rep_path), "--threads", str(args.threads), "--quiet")
        rep = json.loads(rep_path.read_text())
        row[f"k{k}"] = rep["kdp"]
        if "expert" in rep:
            row["expert"] = rep["expert"]
        row["protocol_text"] = rep["protocol_text"]
    return row


def table(rows: list[dict], candidates: list[int]) -> list[str]:
    """One row per (variant, seed): score, success and stalled episodes per K, the scripted expert on the
    same episodes when measured, and the trainer's sample metrics."""
    experts = any("expert" in r for r in rows)
    head = "| variant | seed | " + " | ".join(f"K = {k} score | K = {k} success (stalled)" for k in candidates)
    head += " | expert score | expert success (stalled)" if experts else ""
    head += " | static-ness | diversity | start jump | action RMS | steps/s |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]

    def cell(s: dict) -> str:
        stalled = f" ({len(s['stalled_episodes'])})" if "stalled_episodes" in s else ""
        return f"{s['normalized_score_mean']:.1f} ± {s['normalized_score_sem']:.1f} | {100 * s['success_rate']:.0f}%{stalled}"

    fmt = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
    for r in rows:
        cells = [cell(r[f"k{k}"]) for k in candidates]
        if experts:
            cells.append(cell(r["expert"]) if "expert" in r else "— | —")
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells) + f" | {fmt(r['staticness'], '.2f')} | "
                     f"{fmt(r['diversity'], '.3f')} | {fmt(r['start_jump_ratio'], '.2f')} | "
                     f"{fmt(r['action_rms'], '.2f')} | {fmt(r['steps_per_s'], '.1f')} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", choices=sorted(STUDIES), required=True)
    ap.add_argument("--variants", nargs="+", default=None, help="run only these variants (names as in the table)")
    ap.add_argument("--maze", choices=["umaze", "medium", "large"], default="medium")
    ap.add_argument("--data-steps", type=int, default=1_000_000)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--dwell", type=int, default=100)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--candidates", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--eval-seed", type=int, default=0, help="first episode seed (0: the reported protocol; pick "
                    "planning options on other seeds, e.g. 1000)")
    ap.add_argument("--goals", choices=["fixed", "random"], default="fixed")
    ap.add_argument("--references", action="store_true", help="also roll out the scripted expert and random policy")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/study")
    args = ap.parse_args()
    variants = [(v[0], v[1], v[2] if len(v) > 2 else {}) for v in STUDIES[args.study]
                if args.variants is None or v[0] in args.variants]
    if args.variants and len(variants) != len(args.variants):
        known = [v[0] for v in STUDIES[args.study]]
        print(f"error: unknown variant(s) in {args.variants}; study '{args.study}' has {known}", file=sys.stderr)
        sys.exit(2)
    out = ROOT / args.out
    runs = out / f"{args.maze}-runs"
    runs.mkdir(parents=True, exist_ok=True)
    data = runs / f"{args.maze}-dwell{args.dwell}.hdf5"
    if not data.exists():
        kdp("data", "pointmaze", "--maze", args.maze, "--steps", str(args.data_steps), "--noise", str(args.noise),
            "--dwell", str(args.dwell), "--out", str(data))
    rows = [train_and_eval(name, override, seed, data, runs, args, extra)
            for name, override, extra in variants for seed in args.seeds]
    prov = provenance()
    for r in rows:
        r["provenance"] = prov
    stem = out / (f"{args.study}-{args.maze}" + ("-random-goals" if args.goals == "random" else "")
                  + (f"-seed{args.eval_seed}" if args.eval_seed else ""))
    ident = lambda r: (r["variant"], r["seed"], r.get("eval_seed", 0))  # noqa: E731
    if stem.with_suffix(".json").exists():  # rows of other invocations (other variants or seeds) stay
        fresh = {ident(r) for r in rows}
        old = [r for r in json.loads(stem.with_suffix(".json").read_text())["rows"] if ident(r) not in fresh]
        order = {v[0]: i for i, v in enumerate(STUDIES[args.study])}
        rows = sorted(old + rows, key=lambda r: (order.get(r["variant"], 99), r["seed"]))
    report = {"provenance": prov, "study": args.study, "maze": args.maze, "train_steps": args.steps,
              "data": {"steps": args.data_steps, "noise": args.noise, "dwell": args.dwell}, "rows": rows}
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    commands = list(dict.fromkeys(provenance_line(r["provenance"]) for r in rows))
    lines = [*(f"- {c}" for c in commands), "", f"Protocol: {rows[0]['protocol_text'] if rows else ''}; "
             f"{args.steps} training steps, MLP 3 x 320, data {args.data_steps} steps, noise {args.noise}, "
             f"dwell {args.dwell}. Static-ness, diversity, start jump (first planned step / data step) and action RMS "
             "are the trainer's last sample metrics on 64 probe conditions.", "", *table(rows, args.candidates)]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
