"""Score per millisecond: which planner configuration is best inside a latency budget (numpy only).

A robot has a latency budget (one control period, or less), not a candidate count K or a number of
denoiser passes T. This module turns a grid of planner configurations into that answer:

- :func:`time_grid` times every configuration of one or more bundles (a generator bundle at each K,
  a denoiser bundle at each T x K; ONNX fp32 / int8 and TFLite where the bundle has them; one
  thread) with :mod:`kdp_edge.runtime.bench`'s machinery, ALL of them interleaved in one process,
  so slow phases of a shared machine hit every configuration alike and latency ratios are fair;
- :func:`pareto_frontier` and :func:`best_under_budget` / :func:`best_per_budget` pick, per planner
  family (method + backend + precision), the non-dominated configurations and the best-scoring one
  whose plan latency (p50 or p99) fits a budget;
- :func:`plot_frontier` draws score against plan latency (log axis, one line per family, the budgets
  marked), or latency per configuration when no scores are known (on a robot there is no simulator:
  ``kdp-edge pareto --scores`` reads the scores bench/pareto.py measured).

Used by ``bench/pareto.py`` (scores in simulation + latency) and ``kdp-edge pareto`` (latency on the
user's board). Imports no torch and nothing from training.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import BundleError, load_bundle
from ..errors import KDPError
from .bench import Subject, _macs_for, bench_conditions, precisions_in, time_subjects
from .host import cpu_info, load_average, versions
from .planner import Planner, is_denoiser_bundle

DEFAULT_KDP_K = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_DIFFUSION_T = (2, 5, 10, 20)
DEFAULT_DIFFUSION_K = (1, 4, 16)
DEFAULT_RATES_HZ = (50.0, 100.0, 200.0)
DEFAULT_BUDGETS_MS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)  # sub-ms: a small MLP plans in well under 1 ms on x86
LATENCIES = ("p50_ms", "p99_ms")
METHOD_LABELS = {"kdp": "KDP", "diffusion": "diffusion"}


# ---- configurations ---------------------------------------------------------------------------------
def method_key(method: str) -> str:
    """``kdp`` for generator runs/bundles (manifest method ``drift``), ``diffusion`` for denoisers."""
    return "diffusion" if method == "diffusion" else "kdp"


def config_label(method: str, k: int, t: int | None = None) -> str:
    """``K=16`` for a one-pass planner, ``T=20 K=16`` for a denoiser."""
    return f"T={t} K={k}" if method_key(method) == "diffusion" and t else f"K={k}"


def family_label(method: str, backend: str, precision: str) -> str:
    """One line of the plot: method + where it runs, e.g. ``KDP onnx int8``."""
    return f"{METHOD_LABELS[method_key(method)]} {backend} {precision}"


def budgets(budgets_ms=DEFAULT_BUDGETS_MS, rates_hz=DEFAULT_RATES_HZ) -> list[dict[str, Any]]:
    """Latency budgets, sorted and merged: explicit milliseconds plus one control period per rate
    (a 100 Hz loop has 10 ms per plan). Each: ``ms``, ``rates_hz`` (the rates whose period it is) and
    ``label`` (``10 ms (100 Hz)``)."""
    merged: dict[float, dict[str, Any]] = {}
    for b in budgets_ms or ():
        if not b > 0:
            raise KDPError(f"latency budget {b} ms: budgets must be positive")
        merged.setdefault(round(float(b), 9), {"ms": float(b), "rates_hz": []})
    for r in rates_hz or ():
        if not r > 0:
            raise KDPError(f"control rate {r} Hz: rates must be positive")
        ms = 1e3 / float(r)
        merged.setdefault(round(ms, 9), {"ms": ms, "rates_hz": []})["rates_hz"].append(float(r))
    out = []
    for key in sorted(merged):
        b = merged[key]
        rates = ", ".join(f"{r:g} Hz" for r in sorted(b["rates_hz"]))
        b["label"] = f"{b['ms']:.3g} ms" + (f" ({rates})" if rates else "")
        out.append(b)
    return out


# ---- frontier and budgets ---------------------------------------------------------------------------
def _usable(p: dict, latency: str, score: str) -> bool:
    s, lat = p.get(score), p.get(latency)
    return s is not None and lat is not None and math.isfinite(s) and math.isfinite(lat)


def pareto_frontier(points: list[dict], latency: str = "p50_ms", score: str = "score") -> list[dict]:
    """The non-dominated points, fastest first: each is strictly better in score than every faster
    (or equally fast) one kept before it. Points without a finite score or latency are left out; of
    points with equal latency and score the first in ``points`` is kept."""
    pts = [p for p in points if _usable(p, latency, score)]
    order = sorted(range(len(pts)), key=lambda i: (pts[i][latency], -pts[i][score], i))
    out, best = [], -math.inf
    for i in order:
        if pts[i][score] > best:
            out.append(pts[i])
            best = pts[i][score]
    return out


def best_under_budget(points: list[dict], budget_ms: float, latency: str = "p50_ms", score: str = "score",
                      family: str = "family") -> dict[str, dict | None]:
    """Per family (``point[family]``), the highest-scoring point whose ``latency`` is at most
    ``budget_ms`` (inclusive). Ties in score go to the faster point, then to the one first in
    ``points``. Every family that has a scored point is in the result; one with none inside the budget
    maps to None (nothing of that family meets it)."""
    out: dict[str, dict | None] = {}
    for p in points:
        if not _usable(p, latency, score):
            continue
        fam = p[family]
        out.setdefault(fam, None)
        if p[latency] > budget_ms:
            continue
        cur = out[fam]
        if cur is None or p[score] > cur[score] or (p[score] == cur[score] and p[latency] < cur[latency]):
            out[fam] = p
    return out


def best_per_budget(points: list[dict], budget_list: list[dict], latency: str = "p50_ms",
                    score: str = "score", family: str = "family") -> list[dict[str, Any]]:
    """:func:`best_under_budget` for every budget of :func:`budgets`; ``winners`` lists the families
    whose best score is the highest inside the budget (several on an exact tie, none when no
    family meets the budget). ``family``: the key that groups points (``method`` for KDP vs
    diffusion over every backend and precision)."""
    rows = []
    for b in budget_list:
        best = best_under_budget(points, b["ms"], latency, score, family)
        scored = {f: p[score] for f, p in best.items() if p is not None}
        top = max(scored.values()) if scored else None
        rows.append({"budget_ms": b["ms"], "label": b["label"], "rates_hz": b.get("rates_hz", []), "latency": latency,
                     "best": best, "winners": sorted(f for f, s in scored.items() if s == top) if scored else []})
    return rows


# ---- timing -----------------------------------------------------------------------------------------
@dataclass
class GridOptions:
    """What :func:`time_grid` times: generator bundles at each ``kdp_k``, denoiser bundles at each
    ``diffusion_t`` x ``diffusion_k``; every (backend, precision) the bundle has among ``backends`` /
    ``precision`` (``all``: every precision)."""

    kdp_k: list[int] = field(default_factory=lambda: list(DEFAULT_KDP_K))
    diffusion_t: list[int] = field(default_factory=lambda: list(DEFAULT_DIFFUSION_T))
    diffusion_k: list[int] = field(default_factory=lambda: list(DEFAULT_DIFFUSION_K))
    backends: list[str] = field(default_factory=lambda: ["onnx", "tflite"])
    precision: str = "all"
    runs: int = 300  # timed plans per configuration
    warmup: int = 20  # untimed plans per configuration first
    block: int = 20  # interleaving block (plans per configuration per round)
    threads: int = 1
    seed: int = 0
    conditions: int = 256
    progress: bool = True


@dataclass
class GridSubject(Subject):
    """A :class:`~kdp_edge.runtime.bench.Subject` that knows its method and T."""

    method: str = "kdp"
    t: int | None = None


def _positive(name: str, values) -> list[int]:
    vals = [int(v) for v in values]
    if not vals or min(vals) < 1:
        raise KDPError(f"{name} must be a non-empty list of integers >= 1 (got {list(values)})")
    return vals


def grid_subjects(bundle_dir: str | Path, opts: GridOptions, notes: list[str], cache: dict) -> list[GridSubject]:
    """Load every planner configuration of one bundle (no warm-up: :func:`time_grid` warms up)."""
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    method = "diffusion" if is_denoiser_bundle(bundle) else "kdp"
    name = bundle.root.name
    grid = ([(t, k) for t in _positive("diffusion T", opts.diffusion_t) for k in _positive("diffusion K", opts.diffusion_k)]
            if method == "diffusion" else [(None, k) for k in _positive("K", opts.kdp_k)])
    conds = bench_conditions(m, opts.conditions, opts.seed)
    out: list[GridSubject] = []
    for backend in opts.backends:
        if method == "diffusion" and backend != "onnx":
            notes.append(f"{name}: diffusion bundles hold an ONNX denoiser only; {backend} skipped")
            continue
        try:
            precs = precisions_in(bundle, backend, opts.precision)
        except BundleError:
            precs = []
        if not precs:
            notes.append(f"{name}: no {backend} model" + ("" if opts.precision == "all" else f" at {opts.precision}")
                         + "; skipped")
            continue
        for prec in precs:
            missing_k = []
            for t, k in grid:
                try:
                    planner = Planner.load(bundle_dir, backend=backend, precision=prec, threads=opts.threads,
                                           candidates=k, seed=opts.seed, warmup=0, sample_steps=t)
                except BundleError as exc:
                    if backend == "tflite" and "for K=" in str(exc):
                        missing_k.append(k)
                        continue
                    raise
                f = planner.model_file
                macs = _macs_for(bundle, f, cache)
                passes = int(getattr(planner, "passes", 1))
                fam = family_label(method, backend, prec)
                out.append(GridSubject(
                    label=f"{fam} {config_label(method, k, t)}", bundle=str(bundle.root), backend=backend,
                    precision=prec, k=k, planner=planner, file=f.path, model_bytes=int(f.bytes),
                    macs_per_plan=macs["macs_per_candidate"] * k * passes if macs else None, conds=conds,
                    method=method, t=t))
            if missing_k:
                have = sorted({f.candidates for f in m.files if f.format == backend and f.precision == prec and f.candidates})
                notes.append(f"{name}: {backend} {prec} files have a fixed K ({', '.join(map(str, have)) or 'none'}); "
                             f"K={', '.join(map(str, sorted(set(missing_k))))} not timed on {backend} "
                             "(export with --candidates K for another)")
    return out


def time_grid(bundle_dirs: list[str | Path], opts: GridOptions, period_ms: float | None = None) -> dict[str, Any]:
    """Time every configuration of every bundle, all interleaved in one process (see the module
    docstring). Returns a JSON-able report: ``rows`` (one per configuration: method, backend,
    precision, K, T, family, config, plan / model / CPU-time percentiles, MACs per plan), ``notes``,
    ``host``, ``options``. ``period_ms`` (default: the first bundle's control period) only sets the
    rows' deadline-miss counts."""
    from ..progress import Progress

    if opts.runs < 1 or opts.warmup < 0 or opts.block < 1:
        raise KDPError("runs and block must be at least 1, warmup at least 0")
    if not bundle_dirs:
        raise KDPError("no bundle to time")
    notes: list[str] = []
    cache: dict = {}
    subjects: list[GridSubject] = []
    for b in bundle_dirs:
        subjects += grid_subjects(b, opts, notes, cache)
    if not subjects:
        raise BundleError(f"nothing to time: {'; '.join(notes) or 'no model matches the backends / precision'}")
    if period_ms is None:
        period_ms = 1e3 / load_bundle(bundle_dirs[0], verify=False).manifest.control_rate_hz
    load_before, t0 = load_average(), time.perf_counter()
    total = len(subjects) * (opts.runs + opts.warmup)
    with Progress(total, "pareto timing", enabled=opts.progress) as bar:
        time_subjects(subjects, opts.runs, opts.warmup, opts.block, bar)
    rows = []
    for s in subjects:
        r = s.result(period_ms)
        r.update(method=s.method, t=s.t, family=family_label(s.method, s.backend, s.precision),
                 config=config_label(s.method, s.k, s.t), p50_ms=r["plan"]["p50_ms"], p99_ms=r["plan"]["p99_ms"],
                 cpu_p50_ms=r["plan_cpu"]["p50_ms"], cpu_p99_ms=r["plan_cpu"]["p99_ms"])
        rows.append(r)
        s.planner = None
    backends = sorted({s.backend for s in subjects})
    return {
        "bundles": [str(b) for b in bundle_dirs], "rows": rows, "notes": notes,
        "options": {"kdp_k": opts.kdp_k, "diffusion_t": opts.diffusion_t, "diffusion_k": opts.diffusion_k,
                    "backends": opts.backends, "precision": opts.precision, "runs": opts.runs, "warmup": opts.warmup,
                    "block": opts.block, "threads": opts.threads, "seed": opts.seed, "conditions": opts.conditions,
                    "interleaved": "every configuration of every bundle, blocks of "
                                   f"{opts.block} plans, in one process"},
        "host": cpu_info() | {"load_average_before": load_before, "load_average_after": load_average()},
        "versions": versions(backends), "wall_s": time.perf_counter() - t0,
    }


# ---- scores from a bench/pareto.py report -----------------------------------------------------------
def score_table(report: dict) -> dict[tuple[str, int, int | None], dict]:
    """(method, K, T) -> {score, score_sem, ...} from a bench/pareto.py JSON's ``scores`` list."""
    out = {}
    for s in report.get("scores", []):
        key = (method_key(s["method"]), int(s["k"]), int(s["t"]) if s.get("t") else None)
        out[key] = s
    return out


def attach_scores(rows: list[dict], report: dict, env: str | None = None) -> list[str]:
    """Give every timed row the score bench/pareto.py measured for its (method, K, T) (``score``,
    ``score_sem``; None where the grid had no such point). Raises KDPError when ``env`` (the
    bundle's) differs from the report's task: scores of another task would be meaningless. Returns
    notes."""
    task = report.get("task")
    if env and task and env != task:
        raise KDPError(f"the scores file is for task {task}, the bundle for {env}: scores of another task do not "
                       "apply; measure them with python bench/pareto.py on runs of this task")
    table = score_table(report)
    if not table:
        raise KDPError("the scores file has no 'scores' list: pass a JSON written by bench/pareto.py")
    missing = []
    for r in rows:
        s = table.get((method_key(r["method"]), int(r["k"]), r.get("t")))
        r["score"] = s.get("score") if s else None
        r["score_sem"] = s.get("score_sem") if s else None
        if s is None:
            missing.append(r["label"])
    notes = [f"scores: {report.get('score_metric', 'score')} from {report.get('provenance', {}).get('command', 'a bench/pareto.py run')} "
             "(measured with the torch model of the training runs, same episodes for every configuration; "
             "int8 and TFLite rows carry the fp32 score of the same configuration)"]
    if missing:
        notes.append(f"no score in the file for: {', '.join(missing)} (left out of the score plot and of the best-per-budget tables)")
    return notes


# ---- output -----------------------------------------------------------------------------------------
def _ms(x) -> str:
    return "—" if x is None else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _sc(x, sem=None) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}" + (f" ± {sem:.2g}" if sem else "") if abs(x) < 10 else f"{x:.1f}" + (f" ± {sem:.1f}" if sem else "")


def format_grid(rows: list[dict], budget_list: list[dict]) -> str:
    """Markdown: one row per configuration, fastest first within each family, with which budgets its
    p50 and p99 fit (``p50/p99``: both fit, ``p50``: only the median fits)."""
    has_score = any(r.get("score") is not None for r in rows)
    head = "| family | config | plan p50 ms | p99 ms | CPU p50 ms | MMAC/plan |" + (" score |" if has_score else "")
    head += "".join(f" {b['label']} |" for b in budget_list)
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in sorted(rows, key=lambda r: (r["family"], r["p50_ms"])):
        fits = []
        for b in budget_list:
            fits.append("p50/p99" if r["p99_ms"] <= b["ms"] else "p50" if r["p50_ms"] <= b["ms"] else "")
        macs = r.get("macs_per_plan")
        lines.append(f"| {r['family']} | {r['config']} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {_ms(r.get('cpu_p50_ms'))} | "
                     f"{'—' if not macs else f'{macs / 1e6:.2f}'} |"
                     + (f" {_sc(r.get('score'), r.get('score_sem'))} |" if has_score else "")
                     + "".join(f" {f} |" for f in fits))
    return "\n".join(lines)


def format_best(rows: list[dict], score: str = "score") -> str:
    """Markdown of :func:`best_per_budget`'s rows: per budget, each family's best configuration (its
    score and latency) and the winner; ``—`` where nothing of a family fits."""
    if not rows:
        return ""
    fams = sorted({f for r in rows for f in r["best"]})
    lat = rows[0]["latency"]
    head = f"| budget ({lat.removesuffix('_ms').replace('_', ' ')} plan latency) |" + "".join(f" {f} |" for f in fams) + " best |"
    lines = [head, "|" + "---|" * (len(fams) + 2)]
    for r in rows:
        cells = []
        for f in fams:
            p = r["best"].get(f)
            cells.append("— (none fits)" if p is None else
                         f"**{_sc(p[score])}** ({p['config']}, {_ms(p[lat])} ms)" if f in r["winners"] else
                         f"{_sc(p[score])} ({p['config']}, {_ms(p[lat])} ms)")
        win = " = ".join(r["winners"]) if r["winners"] else "none fits"
        lines.append(f"| {r['label']} |" + "".join(f" {c} |" for c in cells) + f" {win} |")
    return "\n".join(lines)


def plot_frontier(path: str | Path, rows: list[dict], budget_list: list[dict], title: str = "",
                  score_name: str = "score") -> Path:
    """PNG. With scores: score against plan latency, p50 (left) and p99 (right), log x axis; per
    family its configurations as markers and its Pareto frontier as a line (labelled K or T,K); the
    budgets as vertical lines. Without scores: each configuration's p50 (dot) to p99 (bar end)
    latency, one row per configuration, the budgets marked."""
    from ..plots import _plt, save_fig

    plt = _plt()
    fams = sorted({r["family"] for r in rows})
    colors = {f: f"C{i}" for i, f in enumerate(fams)}
    scored = [r for r in rows if r.get("score") is not None]
    lats = [x for r in rows for x in (r["p50_ms"], r["p99_ms"])]
    lo, hi = min(lats) * 0.7, max(lats + [b["ms"] for b in budget_list if b["ms"] <= max(lats) * 3]) * 1.4
    if scored:
        fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
        for ax, lat in zip(axes, LATENCIES, strict=True):
            for f in fams:
                pts = [r for r in scored if r["family"] == f]
                if not pts:
                    continue
                x = [p[lat] for p in pts]
                y = [p["score"] for p in pts]
                yerr = [p.get("score_sem") or 0.0 for p in pts]
                ax.errorbar(x, y, yerr=yerr, fmt="o", ms=4, color=colors[f], alpha=0.55, lw=0.8, capsize=2)
                front = pareto_frontier(pts, lat)
                ax.plot([p[lat] for p in front], [p["score"] for p in front], "-", color=colors[f], lw=1.8,
                        label=f"{f} (frontier)")
                for p in front:  # labels on the frontier only (every point's config is in the table)
                    ax.annotate(p["config"].replace(" ", ","), (p[lat], p["score"]), fontsize=6, color=colors[f],
                                xytext=(3, 3), textcoords="offset points")
            _budget_lines(ax, budget_list, lo, hi)
            _log_axis(ax, lo, hi)
            ax.set_xlabel(f"plan latency {lat.removesuffix('_ms')} (ms, log scale)")
            ax.grid(alpha=0.25, which="both")
            ax.set_title(f"score vs {lat.removesuffix('_ms')} plan latency", fontsize=10)
        axes[0].set_ylabel(score_name)
        axes[0].legend(fontsize=7, loc="lower right")
    else:
        order = sorted(rows, key=lambda r: (r["family"], r["p50_ms"]))
        fig, ax = plt.subplots(figsize=(9, 0.28 * len(order) + 1.5))
        for i, r in enumerate(order):
            c = colors[r["family"]]
            ax.plot([r["p50_ms"], r["p99_ms"]], [i, i], "-", color=c, lw=2)
            ax.plot([r["p50_ms"]], [i], "o", color=c, ms=4)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels([f"{r['family']} {r['config']}" for r in order], fontsize=7)
        ax.invert_yaxis()
        _budget_lines(ax, budget_list, lo, hi)
        _log_axis(ax, lo, hi)
        ax.set_xlabel("plan latency, p50 (dot) to p99 (bar end), ms, log scale")
        ax.grid(alpha=0.25, axis="x", which="both")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_fig(fig, path)


def _log_axis(ax, lo: float, hi: float) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if lo <= t <= hi]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _budget_lines(ax, budget_list: list[dict], lo: float, hi: float) -> None:
    for b in budget_list:
        if not lo <= b["ms"] <= hi:
            continue
        rate = bool(b.get("rates_hz"))
        ax.axvline(b["ms"], color="red" if rate else "0.5", ls="--" if rate else ":", lw=1.0, alpha=0.7)
        ax.text(b["ms"], 1.0, f" {b['label']}", rotation=90, va="top", ha="right", fontsize=6.5,
                color="red" if rate else "0.35", transform=ax.get_xaxis_transform())


def bundle_env(bundle_dirs: list[str | Path]) -> str:
    """The task of the bundles (``bundle.json`` env); KDPError when they differ (one task per frontier)."""
    envs = {str(b): load_bundle(b, verify=False).manifest.env for b in bundle_dirs}
    if len(set(envs.values())) > 1:
        raise KDPError("the bundles are for different tasks (" + ", ".join(f"{b}: {e or '?'}" for b, e in envs.items())
                       + "); compare bundles of one task")
    return next(iter(envs.values()))


def format_report(report: dict[str, Any], budget_list: list[dict]) -> str:
    """What ``kdp-edge pareto`` prints: host and options, every configuration with the budgets it
    fits, and (with scores) the best configuration per budget and family."""
    o, h = report["options"], report["host"]
    lines = [f"bundles: {', '.join(report['bundles'])} ({report.get('env') or 'env unknown'})",
             f"host: {h['model']} ({h['arch']}, {h['cores']} cores); {o['threads']} thread(s), {o['runs']} timed plans per "
             f"configuration after {o['warmup']} warm-up, {o['interleaved']}; plan = whole Planner.plan, wall time",
             "", format_grid(report["rows"], budget_list)]
    if any(r.get("score") is not None for r in report["rows"]):
        for lat in LATENCIES:
            lines += ["", f"best score within each budget ({lat.removesuffix('_ms')} plan latency):", "",
                      format_best(best_per_budget(report["rows"], budget_list, lat))]
    lines += [""] + [f"note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines)


def latency_summary(rows: list[dict]) -> dict[str, Any]:
    """Fastest and slowest p50 per family (for a one-line description)."""
    out = {}
    for f in sorted({r["family"] for r in rows}):
        p = [r["p50_ms"] for r in rows if r["family"] == f]
        out[f] = {"configs": len(p), "p50_min_ms": float(np.min(p)), "p50_max_ms": float(np.max(p))}
    return out


__all__ = ["DEFAULT_BUDGETS_MS", "DEFAULT_DIFFUSION_K", "DEFAULT_DIFFUSION_T", "DEFAULT_KDP_K", "DEFAULT_RATES_HZ",
           "GridOptions", "attach_scores", "best_per_budget", "best_under_budget", "budgets", "bundle_env", "config_label",
           "family_label", "format_best", "format_grid", "format_report", "method_key", "pareto_frontier", "plot_frontier",
           "score_table", "time_grid"]
