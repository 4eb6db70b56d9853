"""PointMaze quality benchmark: data -> train -> eval (both protocols) per maze, plus key ablations.

    python bench/pointmaze.py --mazes umaze medium large --steps 10000 --out bench/results/pointmaze
    python bench/pointmaze.py --mazes umaze --keys full condition --steps 10000   # ablations

Writes <out>/pointmaze.json and <out>/pointmaze.md (a table with the exact command). Reuses
datasets and finished runs found in <out> (delete them to start over).
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


def kdp(*args: str) -> None:
    cmd = [sys.executable, "-m", "kdp_edge.cli", *args]
    print("+", " ".join(shlex.quote(a) for a in cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def merge_rows(path: Path, new_rows: list[dict]) -> list[dict]:
    """Rows of an earlier invocation stay unless this one measured the same (maze, key, protocol)."""
    if not path.exists():
        return new_rows
    old = json.loads(path.read_text())
    old_rows = old.get("rows", [])
    for r in old_rows:
        r.setdefault("command", old.get("command", "?"))
    ident = lambda r: (r["maze"], r["key"], r["protocol"], r.get("dwell", 0), r.get("tag", ""))  # noqa: E731
    fresh = {ident(r) for r in new_rows}
    kept = [r for r in old_rows if ident(r) not in fresh]
    order = {"umaze": 0, "medium": 1, "large": 2}
    return sorted(kept + new_rows, key=lambda r: order.get(r["maze"], 9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mazes", nargs="+", default=["umaze", "medium", "large"])
    ap.add_argument("--keys", nargs="+", default=["condition+descriptor"])
    ap.add_argument("--data-steps", type=int, default=1_000_000)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--dwell", type=int, default=0, help="data: hold 0..N steps at each reached goal (0: D4RL)")
    ap.add_argument("--tag", default="", help="suffix of the run directories (e.g. the model variant)")
    ap.add_argument("--steps", type=int, default=10_000, help="training steps")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--protocols", nargs="+", default=["tracker", "own-actions"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/pointmaze")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for maze in args.mazes:
        tag = f"-dwell{args.dwell}" if args.dwell else ""
        data = out / f"{maze}{tag}.hdf5"
        if not data.exists():
            kdp("data", "pointmaze", "--maze", maze, "--steps", str(args.data_steps), "--noise", str(args.noise),
                "--dwell", str(args.dwell), "--out", str(data))
        for key in args.keys:
            run = out / f"{maze}-{key.replace('+', '_')}{tag}{'-' + args.tag if args.tag else ''}"
            t0 = time.perf_counter()
            if not (run / "checkpoint.pt").exists():
                kdp("train", "--data", str(data), "--out", str(run), "--key", key, "--steps", str(args.steps),
                    "--threads", str(args.threads), "--quiet")
            elif json.loads((run / "run.json").read_text())["step"] < args.steps:
                kdp("train", "--resume", "--out", str(run), "--steps", str(args.steps), "--quiet")
            train_s = time.perf_counter() - t0
            metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            for proto in args.protocols:
                rep_path = run / f"eval-{proto}.json"
                if not rep_path.exists():
                    kdp("eval", str(run), "--env", f"pointmaze-{maze}", "--episodes", str(args.episodes),
                        "--protocol", proto, "--out", str(rep_path), "--plot", str(run / f"eval-{proto}.png"),
                        "--threads", str(args.threads), "--quiet")
                rep = json.loads(rep_path.read_text())
                rows.append({
                    "maze": maze, "key": key, "protocol": proto, "dwell": args.dwell, "tag": args.tag, "train_steps": rep["checkpoint"]["step"],
                    "train_seconds_this_invocation": round(train_s, 1),
                    "train_steps_per_s": metrics[-1].get("steps_per_s"),
                    "parameters": rep["checkpoint"]["parameters"],
                    "kdp": rep["kdp"], "expert": rep["expert"], "random": rep["random"],
                    "ratio_to_expert": rep["kdp"]["normalized_score_mean"] / rep["expert"]["normalized_score_mean"],
                    "diversity": metrics[-1]["diversity"], "staticness": metrics[-1]["staticness"],
                    "protocol_text": rep["protocol_text"],
                })
    cmd = "python bench/pointmaze.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    prov = provenance()
    for r in rows:
        r["command"] = cmd
        r["provenance"] = prov
    rows = merge_rows(out / "pointmaze.json", rows)
    (out / "pointmaze.json").write_text(json.dumps({"rows": rows}, indent=2))
    commands = list(dict.fromkeys(provenance_line(r["provenance"]) if "provenance" in r else f"Command: `{r.get('command', '?')}`"
                                  for r in rows))
    lines = [*(f"- {c}" for c in commands), "",
             "| maze | data dwell | key | protocol | KDP score | success | expert | random | KDP / expert | diversity (m) | static-ness | params | plan p50 / p99 (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        k, lat = r["kdp"], r["kdp"]["plan_latency"]
        lines.append(
            f"| {r['maze']} | {r.get('dwell', 0)} | {r['key']} | {r['protocol']} | {k['normalized_score_mean']:.1f} ± {k['normalized_score_sem']:.1f} | "
            f"{100 * k['success_rate']:.0f}% | {r['expert']['normalized_score_mean']:.1f} | {r['random']['normalized_score_mean']:.1f} | "
            f"{r['ratio_to_expert']:.2f} | {r['diversity']:.3f} | {r['staticness']:.2f} | {r['parameters']:,} | "
            f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f} |")
    (out / "pointmaze.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
