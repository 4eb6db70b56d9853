"""``kdp-edge bench``'s output: the markdown table of a report and the latency histogram plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _f(x, fmt="{:.3f}") -> str:
    return "—" if x is None else fmt.format(x)


def format_markdown(report: dict[str, Any]) -> str:
    """A readable table of the report (what ``kdp-edge bench`` prints)."""
    o, h = report["options"], report["host"]
    flags = ", ".join(f for f, on in h.get("flags", {}).items() if on) or "unknown"
    load = h.get("load_average_before"), h.get("load_average_after")
    load_txt = (f"; load average {load[0][0]:.2f} before, {load[1][0]:.2f} after" if all(load) else "")
    lines = [
        f"bundle: {report['bundle']} ({report['env'] or 'env unknown'}, horizon {report['horizon']}, "
        f"scoring {report['scoring']})",
        f"host: {h['model']} ({h['arch']}, {h['cores']} cores; flags: {flags}; "
        f"int8 dot product: {'yes' if h.get('int8_dot_product') else 'no' if h.get('int8_dot_product') is False else 'unknown'}"
        f"{load_txt})",
        f"{o['runs']} timed plans per row after {o['warmup']} warm-up, {o['threads']} thread(s), interleaved blocks of "
        f"{o['block']}; deadline {1e3 / o['rate_hz']:.1f} ms ({o['rate_hz']:g} Hz); times in ms; plan = whole "
        "Planner.plan (wall), model = forward pass (wall), CPU = planning thread's CPU time per plan (excludes "
        "preemption by other processes)",
        "",
        "| model | K | plan p50 | p95 | p99 | max | model p50 | model p99 | CPU p50 | CPU p99 | plans/s | misses "
        "| size MB | MMAC/plan |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        p, md = r["plan"], r.get("model") or {}
        lines.append(
            f"| {r['label']} | {r['k']} | {p['p50_ms']:.3f} | {p['p95_ms']:.3f} | {p['p99_ms']:.3f} | {p['max_ms']:.2f} | "
            f"{_f(md.get('p50_ms'))} | {_f(md.get('p99_ms'))} | {r['plan_cpu']['p50_ms']:.3f} | "
            f"{r['plan_cpu']['p99_ms']:.3f} | {_f(r['throughput_plans_per_s'], '{:.0f}')} | "
            f"{r['deadline_misses']} | {r['model_bytes'] / 1e6:.2f} | "
            f"{_f(r['macs_per_plan'] / 1e6 if r['macs_per_plan'] else None, '{:.2f}')} |")
    if report["ratios"]:
        lines += ["", "| ratio | K | plan p50 | plan p99 | model p50 | speed-up (p50) |", "|---|---|---|---|---|---|"]
        for x in report["ratios"]:
            lines.append(f"| {x['kind']}: {x['other']} vs {x['reference']} | {x['k']} | {x['latency_ratio_p50']:.2f} | "
                         f"{x['latency_ratio_p99']:.2f} | {_f(x['model_ratio_p50'], '{:.2f}')} | "
                         f"{x['speedup_p50']:.2f}x |")
    lines.append("")
    rss = report.get("peak_rss_mb")
    lines.append(f"peak RSS: {_f(rss, '{:.0f}')} MB ({report['peak_rss_note']})")
    for n in report.get("notes", []):
        lines.append(f"note: {n}")
    return "\n".join(lines)


def plot_histograms(path: str | Path, subjects: list, period_ms: float) -> Path:
    """Latency histograms of whole plans, one panel per K, one colour per configuration (PNG): wall
    time filled, the planning thread's CPU time as an outline; times beyond the largest p99.5 are
    piled into the last bin. ``subjects``: the timed ``kdp_edge.runtime.bench.Subject`` list of ``run_bench``."""
    from ..plots import _plt, save_fig

    plt = _plt()
    from matplotlib.ticker import NullFormatter

    ks = sorted({s.k for s in subjects})
    fig, axes = plt.subplots(len(ks), 1, figsize=(7.5, 2.6 * len(ks)), squeeze=False)
    for ax, k in zip(axes[:, 0], ks, strict=True):
        group = [s for s in subjects if s.k == k]
        hi = max(float(np.percentile(s.plan_ms, 99.5)) for s in group) * 1.1
        lo = min(float(np.min(s.cpu_ms or s.plan_ms)) for s in group) * 0.9
        bins = np.geomspace(max(lo, 1e-3), hi, 80)  # log axis: the tail is visible next to the bulk
        for i, s in enumerate(group):
            color = f"C{i}"
            p50, p99 = np.percentile(s.plan_ms, [50, 99])
            ax.hist(np.clip(s.plan_ms, lo, hi), bins=bins, alpha=0.5, color=color,
                    label=f"{s.label}: p50 {p50:.3f}, p99 {p99:.3f} ms")
            if s.cpu_ms:
                ax.hist(np.clip(s.cpu_ms, lo, hi), bins=bins, histtype="step", color=color, lw=1.0)
        if period_ms <= hi:
            ax.axvline(period_ms, color="red", lw=1, ls="--", label=f"deadline {period_ms:.1f} ms")
        ax.set_title(f"K = {k}: plan latency, wall (filled) and CPU time (outline)", fontsize=9)
        ax.set_xscale("log")
        ticks = [t for t in (0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200) if lo <= t <= hi]
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("ms (log scale)")
        ax.set_ylabel("plans")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_fig(fig, path)
