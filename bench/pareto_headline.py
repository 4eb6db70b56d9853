"""The headline of issue #29: the best score each planner reaches within a latency budget, every task.

    python bench/pareto_headline.py            # reads bench/results/pareto/<task>.json of every task present

Reads the per-task reports of ``bench/pareto.py`` (nothing is re-measured) and writes
``<out>/headline.json``, ``.md`` (one table: task x budget, best KDP and best diffusion configuration
over every backend and precision, and who is above) and ``.png`` (one panel per task: each method's
Pareto frontier of score against p50 plan latency, the 50 / 100 / 200 Hz periods marked).

"Above" needs a margin: a difference smaller than the two scores' standard errors combined
(sqrt(sem_a^2 + sem_b^2), over episodes and seeds as bench/pareto.py reports them) is a tie.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kdp_edge.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from kdp_edge.provenance import provenance, provenance_line  # noqa: E402
from kdp_edge.runtime import pareto as P  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from pareto import TASKS  # noqa: E402  (bench/pareto.py: the tasks it measures, in report order)

METHODS = tuple(P.METHOD_LABELS.values())  # ("KDP", "diffusion"), the keys of best_by_method
LAT = "p50_ms"


def verdict(kdp: dict | None, diff: dict | None) -> tuple[str, float | None]:
    """(who is above, KDP minus diffusion) for the two methods' best points inside one budget."""
    if kdp is None and diff is None:
        return "none fits", None
    if diff is None:
        return "KDP only", None
    if kdp is None:
        return "diffusion only", None
    delta = kdp["score"] - diff["score"]
    margin = math.hypot(kdp.get("score_sem") or 0.0, diff.get("score_sem") or 0.0)
    if abs(delta) <= margin:
        return "tie", delta
    return ("KDP" if delta > 0 else "diffusion"), delta


def task_rows(report: dict, latency: str) -> list[dict]:
    """One row per budget of ``report`` (a bench/pareto.py JSON): the best point of each method."""
    rows = []
    for b in report["best_by_method"][latency]:
        kdp, diff = (b["best"].get(m) for m in METHODS)
        who, delta = verdict(kdp, diff)
        rows.append({"task": report["task"], "budget_ms": b["budget_ms"], "label": b["label"],
                     "KDP": kdp, "diffusion": diff, "above": who, "kdp_minus_diffusion": delta})
    return rows


def _cell(p: dict | None, score_fmt: str) -> str:
    if p is None:
        return "—"
    backend = f"{p['backend']} {p['precision']}"
    return f"{p['score']:{score_fmt}} ({p['config']}, {backend}, {p[LAT]:.2f} ms)"


def score_format(report: dict) -> str:
    """Three decimals for fractions (PushT coverage), one for scores in the tens and hundreds."""
    top = max(abs(p["score"]) for p in report["points"] if p.get("score") is not None)
    return ".3f" if top < 10 else ".1f"


def format_md(reports: list[dict], rows: list[dict], prov: dict) -> str:
    lines = ["# Best score within a latency budget: KDP vs diffusion, every task", "",
             provenance_line(prov), "",
             "Read from the per-task reports of `bench/pareto.py` (each names its runs, seeds, episodes and "
             "commit):", ""]
    for r in reports:
        runs = r["runs"]
        seeds = {m: len(v) for m, v in runs.items()}
        path = Path(r["_path"])
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        lines.append(f"- {r['task']}: `{shown}` ({r['score_metric']}; training seeds: "
                     f"KDP {seeds.get('kdp', 0)}, diffusion {seeds.get('diffusion', 0)}; "
                     f"{r['provenance']['date']}, commit {r['provenance']['commit'][:12]})")
    lines += ["", "Budget = p50 whole-plan latency on the device runtime, one thread, this machine. 'tie': the "
              "difference is within the two scores' combined standard error.", "",
              "## Summary: best KDP / best diffusion score within each budget, and who is above", ""]
    labels = list(dict.fromkeys(row["label"] for row in rows))
    lines += ["| task | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for r in reports:
        fmt = score_format(r)
        mine = {row["label"]: row for row in rows if row["task"] == r["task"]}
        cells = []
        for lab in labels:
            row = mine.get(lab)
            if row is None or (row["KDP"] is None and row["diffusion"] is None):
                cells.append("—")
                continue
            sc = [f"{row[m]['score']:{fmt}}" if row[m] else "—" for m in METHODS]
            cells.append(f"{sc[0]} / {sc[1]} ({row['above']})")
        lines.append(f"| {r['task']} | " + " | ".join(cells) + " |")
    lines += ["", "Per task: best score (configuration, backend, p50 latency) of each method.", ""]
    for r in reports:
        fmt = score_format(r)
        lines += [f"## {r['task']}", "", "| budget (p50) | best KDP | best diffusion | above (KDP − diffusion) |",
                  "|---|---|---|---|"]
        for row in (x for x in rows if x["task"] == r["task"]):
            d = row["kdp_minus_diffusion"]
            who = row["above"] + (f" ({d:+{fmt}})" if d is not None else "")
            lines.append(f"| {row['label']} | {_cell(row['KDP'], fmt)} | {_cell(row['diffusion'], fmt)} | {who} |")
        lines.append("")
    return "\n".join(lines)


def plot(path: Path, reports: list[dict]) -> Path:
    from kdp_edge.plots import _plt, save_fig

    plt = _plt()
    n = len(reports)
    cols = 2 if n > 1 else 1
    fig, axes = plt.subplots((n + 1) // 2 if n > 1 else 1, cols, figsize=(6.2 * cols, 4.4 * ((n + 1) // 2)),
                             squeeze=False)
    colors = {"KDP": "C0", "diffusion": "C3"}
    for ax, r in zip(axes.flat, reports, strict=False):
        pts = [p for p in r["points"] if p.get("score") is not None]
        lats = [p[LAT] for p in pts]
        lo, hi = min(lats) * 0.7, max(lats) * 1.6
        budget_list = r["budgets"]
        for m in METHODS:
            mine = [p for p in pts if p["planner"] == m]
            ax.plot([p[LAT] for p in mine], [p["score"] for p in mine], "o", ms=3, alpha=0.35, color=colors[m])
            front = P.pareto_frontier(mine, LAT)
            ax.errorbar([p[LAT] for p in front], [p["score"] for p in front],
                        yerr=[p.get("score_sem") or 0.0 for p in front], fmt="-o", ms=4, lw=1.8, capsize=2,
                        color=colors[m], label=f"{m} frontier")
            for p in front:
                ax.annotate(p["config"].replace(" ", ","), (p[LAT], p["score"]), fontsize=6, color=colors[m],
                            xytext=(3, -9 if m == "KDP" else 4), textcoords="offset points")
        P._budget_lines(ax, budget_list, lo, hi)
        P._log_axis(ax, lo, hi)
        seeds = max(len(v) for v in r["runs"].values())
        ax.set_title(f"{r['task']} ({seeds} training seed{'s' if seeds > 1 else ''})", fontsize=10)
        ax.set_xlabel("plan latency p50 (ms, log scale)")
        ax.set_ylabel(r["score_metric"].split(" (")[0])
        ax.grid(alpha=0.25, which="both")
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Score per millisecond: best configuration of each planner by plan latency", fontsize=11)
    fig.tight_layout()
    return save_fig(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="*", help="bench/pareto.py JSON files (default: <dir>/<task>.json of every task)")
    ap.add_argument("--dir", default=str(ROOT / "bench" / "results" / "pareto"))
    ap.add_argument("--out", default=None, help="output stem (default: <dir>/headline)")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.reports] or [Path(args.dir) / f"{t}.json" for t in TASKS
                                                if (Path(args.dir) / f"{t}.json").exists()]
    if not paths:
        print(f"error: no bench/pareto.py report in {args.dir}; run bench/pareto.py first", file=sys.stderr)
        return 2
    reports = []
    for p in paths:
        try:
            r = json.loads(p.read_text())
            r["best_by_method"][LAT]
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: {p} is not a bench/pareto.py report ({exc}); re-run bench/pareto.py", file=sys.stderr)
            return 2
        r["_path"] = str(p.resolve())
        reports.append(r)
    reports.sort(key=lambda r: TASKS.index(r["task"]) if r["task"] in TASKS else 99)
    rows = [row for r in reports for row in task_rows(r, LAT)]
    prov = provenance()
    stem = Path(args.out) if args.out else Path(args.dir) / "headline"
    out = {"provenance": prov, "latency": LAT,
           "reports": [{"task": r["task"], "path": r["_path"], "provenance": r["provenance"], "runs": r["runs"],
                        "score_metric": r["score_metric"]} for r in reports],
           "rows": rows}
    if not args.no_plot:
        out["plot"] = str(plot(stem.with_suffix(".png"), reports))
    atomic_write_json(stem.with_suffix(".json"), out)
    atomic_write_text(stem.with_suffix(".md"), format_md(reports, rows, prov))
    print(f"wrote {stem.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
