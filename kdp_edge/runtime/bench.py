"""``kdp-edge bench``: on-device plan latency of a bundle (numpy + onnxruntime / LiteRT).

What is timed is :meth:`Planner.plan` from a raw observation to a clipped action: input checks,
noise, the model, scoring all K candidates and action selection (``plan``), and the forward pass
alone (``model``). Every configuration is warmed up first; the configurations being compared at one
candidate count K (fp32 and int8, another bundle, the torch model) are timed in interleaved blocks
in the same process, so slow phases of a shared machine hit all of them alike and ratios are fair.

Reported per configuration (times in milliseconds): p50 / p95 / p99 / max / mean of plan and
model latency, throughput (plans per second, back to back), deadline misses at the control rate
(plans slower than one period), model file size, multiply-accumulates per plan (counted from the
ONNX graph: MatMul / Gemm / Conv / ConvTranspose output shapes, per candidate, times K) and the
process's peak RSS. The host section has the CPU model and the flags that decide whether int8 pays
off (x86: avx512_vnni / avx_vnni; ARM: asimddp dot product, i8mm).

Anything with ``.plan(obs, goal) -> Plan`` (``latency_ms``, optionally ``model_ms``) can be timed: a
denoiser planner's ``passes`` attribute (model calls per plan) multiplies the MAC count. This module
imports no torch: the torch reference (``--backend torch``) comes in through
``BenchOptions.load_planner`` (:func:`kdp_edge.torch_planner.load_any_planner`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import PRECISIONS, Bundle, BundleError, ModelFile, load_bundle
from ..errors import KDPError
from ..metrics import percentiles_ms
from .host import cpu_info, load_average, peak_rss_mb, versions
from .macs import count_macs
from .planner import Planner

BENCH_BACKENDS = ("onnx", "tflite", "torch")


@dataclass
class BenchOptions:
    """What ``kdp-edge bench`` times. ``rate_hz=None``: the bundle's ``control_rate_hz``."""

    backends: list[str] = field(default_factory=lambda: ["onnx"])
    precision: str = "all"  # fp32 | int8 | int8-dynamic | all (every precision the bundle has)
    candidates: list[int] = field(default_factory=lambda: [1, 16, 64])
    runs: int = 2000  # timed plans per configuration
    warmup: int = 100  # untimed plans per configuration first (on top of Planner.load's warm-up)
    rate_hz: float | None = None
    threads: int = 1
    block: int = 50  # interleaving block size (plans)
    compare: str | None = None  # another bundle timed in the same run
    seed: int = 0
    conditions: int = 256  # pool of (obs, goal) the timed plans cycle through
    progress: bool = True
    # (bundle_dir, backend, precision, k, threads, seed) -> planner; the app passes a torch-aware one
    load_planner: Any = None


@dataclass
class Subject:
    """One timed configuration: a planner plus what the report says about it."""

    label: str
    bundle: str
    backend: str
    precision: str
    k: int
    planner: Any  # .plan(obs, goal) -> Plan
    file: str = ""
    model_bytes: int = 0
    macs_per_plan: int | None = None
    which: str = "bundle"  # bundle | compare
    conds: list = field(default_factory=list, repr=False)  # (obs, goal) pairs for this bundle's dims
    plan_ms: list[float] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # CPU time of the planning thread per plan
    wall_s: float = 0.0

    def result(self, period_ms: float) -> dict[str, Any]:
        plan = np.asarray(self.plan_ms)
        model = np.asarray(self.model_ms)
        out = {
            "label": self.label, "bundle": self.bundle, "which": self.which, "backend": self.backend,
            "precision": self.precision, "k": self.k, "file": self.file, "model_bytes": self.model_bytes,
            "macs_per_plan": self.macs_per_plan,
            "plan": percentiles_ms(plan / 1e3),
            "model": percentiles_ms(model / 1e3) if np.isfinite(model).all() else None,
            "plan_cpu": percentiles_ms(np.asarray(self.cpu_ms) / 1e3),
            "throughput_plans_per_s": len(plan) / self.wall_s if self.wall_s > 0 else None,
            "deadline_ms": period_ms,
            "deadline_misses": int((plan > period_ms).sum()),
            "deadline_miss_rate": float((plan > period_ms).mean()),
        }
        out["plan"]["p95_ms"] = float(np.percentile(plan, 95))
        return out


# ---- planners -------------------------------------------------------------------------------------
def load_planner(bundle_dir: str | Path, backend: str, precision: str | None, k: int, threads: int = 1,
                 seed: int = 0):
    """A planner for ``bundle_dir`` on an exported model (:meth:`Planner.load` picks the generator or
    the denoiser planner by the model files' role). ``backend='torch'`` (the source checkpoint) is
    the training side's: :func:`kdp_edge.torch_planner.load_any_planner`, passed in as
    ``BenchOptions.load_planner`` by ``kdp-edge bench``."""
    if backend == "torch":
        raise BundleError("--backend torch needs the training side (kdp-edge[train]); the device runtime times "
                          "exported models only: use --backend onnx or tflite")
    return Planner.load(bundle_dir, backend=backend, precision=precision, threads=threads, candidates=k, seed=seed)


def precisions_in(bundle: Bundle, backend: str, want: str) -> list[str]:
    """The precisions to time for ``backend``: ``want`` or, for ``all``, every one the bundle has."""
    if backend == "torch":
        return ["fp32"]
    have = [p for p in PRECISIONS if any(f.format == backend and f.precision == p for f in bundle.manifest.files)]
    if want == "all":
        return have
    if want not in have:
        listing = ", ".join(f"{f.path} ({f.format} {f.precision})" for f in bundle.manifest.files)
        fix = "--quantize int8" if want == "int8" else "--quantize dynamic" if want == "int8-dynamic" else ""
        raise BundleError(f"{bundle.root} has no {backend} {want} model (it has: {listing}); re-export with "
                          f"kdp-edge export RUN_DIR --format {backend} {fix}".rstrip() + " or pick another --precision")
    return [want]


def bench_conditions(manifest, n: int = 256, seed: int = 0, goals: int = 4) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """``n`` plausible raw (obs [obs_dim], goal [goal_dim] or None) pairs with ``goals`` distinct
    goals (a deployed robot keeps one goal for many plans): :func:`kdp_edge.envs.plausible_conditions`
    (PointMaze bundles: positions in free cells, velocities N(0, 0.5); other bundles: N(0, 1))."""
    from ..envs import plausible_conditions

    return plausible_conditions(manifest.env, manifest.obs_dim, manifest.goal_dim, n, seed, goals)


# ---- the benchmark --------------------------------------------------------------------------------
def _macs_for(bundle: Bundle, f: ModelFile | None, cache: dict) -> dict | None:
    """MACs per candidate of the bundle's model, counted from an ONNX file (fp32 preferred)."""
    onnx_files = [x for x in bundle.manifest.files if x.format == "onnx" and x.role == (f.role if f else "generator")]
    onnx_files.sort(key=lambda x: x.precision != "fp32")
    if not onnx_files:
        return None
    path = bundle.path(onnx_files[0])
    if path not in cache:
        cache[path] = count_macs(path)
    return cache[path]


def build_subjects(bundle_dir: str | Path, opts: BenchOptions, k: int, which: str, cache: dict,
                   notes: list[str]) -> list[Subject]:
    """Load every planner to time at candidate count ``k`` for one bundle."""
    bundle = load_bundle(bundle_dir)
    name = bundle.root.name
    conds = bench_conditions(bundle.manifest, opts.conditions, opts.seed)  # same seed: same states if same env
    out = []
    for backend in opts.backends:
        if which == "compare" and backend == "torch":
            continue  # the torch reference is for the main bundle only
        for prec in precisions_in(bundle, backend, opts.precision):
            try:
                planner = (opts.load_planner or load_planner)(bundle_dir, backend, prec, k, opts.threads, opts.seed)
            except BundleError as exc:
                if backend == "tflite" and "for K=" in str(exc):
                    notes.append(f"{name}: no tflite {prec} file for K={k} (TFLite files have a fixed K; "
                                 f"export with --candidates {k}); skipped")
                    continue
                raise
            f = getattr(planner, "model_file", None)
            macs = _macs_for(bundle, f, cache)
            passes = int(getattr(planner, "passes", 1))
            label = f"{name} {backend} {prec}"
            out.append(Subject(
                label=label, bundle=str(bundle.root), backend=backend, precision=prec, k=k, planner=planner,
                file=f.path if f else "", model_bytes=int(f.bytes) if f else 0,
                macs_per_plan=macs["macs_per_candidate"] * k * passes if macs else None, which=which,
                conds=conds))
    return out


def time_subjects(subjects: list[Subject], runs: int, warmup: int, block: int, bar=None) -> None:
    """Warm up each subject, then time ``runs`` plans each in interleaved blocks of ``block``.

    Records per plan: wall latency (``Plan.latency_ms``), model latency (``Plan.model_ms``) and the
    planning thread's CPU time (``time.thread_time``). With one model thread the model runs on the
    calling thread, so CPU time excludes time the thread spent preempted by other processes: on a
    shared machine it shows what a dedicated core would see; wall time is what this machine saw.
    """
    for s in subjects:
        conds, n = s.conds, len(s.conds)
        for i in range(warmup):
            obs, goal = conds[i % n]
            s.planner.plan(obs, goal)
        if bar is not None:
            bar.update(warmup)
    done = 0
    while done < runs:
        m = min(block, runs - done)
        for s in subjects:
            plan_ms, model_ms, cpu_ms = s.plan_ms, s.model_ms, s.cpu_ms
            conds, n = s.conds, len(s.conds)
            t0 = time.perf_counter()
            for i in range(done, done + m):
                obs, goal = conds[i % n]
                c0 = time.thread_time()
                p = s.planner.plan(obs, goal)
                cpu_ms.append(1e3 * (time.thread_time() - c0))
                plan_ms.append(p.latency_ms)
                model_ms.append(getattr(p, "model_ms", float("nan")))
            s.wall_s += time.perf_counter() - t0
            if bar is not None:
                bar.update(m, k=s.k)
        done += m


def ratios(results: list[dict]) -> list[dict[str, Any]]:
    """int8 vs fp32 of the same bundle and backend, and compare-bundle vs bundle, per K.

    ``latency_ratio_*`` = other / reference (below 1: the other is faster); ``speedup_p50`` =
    reference p50 / other p50."""
    out = []

    def add(kind, ref, other):
        out.append({
            "kind": kind, "k": ref["k"], "reference": ref["label"], "other": other["label"],
            "latency_ratio_p50": other["plan"]["p50_ms"] / ref["plan"]["p50_ms"],
            "latency_ratio_p99": other["plan"]["p99_ms"] / ref["plan"]["p99_ms"],
            "model_ratio_p50": (other["model"]["p50_ms"] / ref["model"]["p50_ms"]
                                if other.get("model") and ref.get("model") else None),
            "speedup_p50": ref["plan"]["p50_ms"] / other["plan"]["p50_ms"],
        })

    main = [r for r in results if r["which"] == "bundle"]
    for r in main:
        if r["precision"] != "fp32":
            ref = next((x for x in main if x["k"] == r["k"] and x["backend"] == r["backend"]
                        and x["precision"] == "fp32"), None)
            if ref is not None:
                add(f"{r['precision']}/fp32", ref, r)
        if r["backend"] == "torch":
            for x in main:
                if x["k"] == r["k"] and x["backend"] != "torch":
                    add(f"{x['backend']} {x['precision']}/torch", r, x)
    for r in results:
        if r["which"] != "compare":
            continue
        ref = next((x for x in main if x["k"] == r["k"] and x["backend"] == r["backend"]
                    and x["precision"] == r["precision"]), None)
        if ref is not None:
            add("compare/bundle", ref, r)
    return out


def run_bench(bundle_dir: str | Path, opts: BenchOptions) -> tuple[dict[str, Any], list[Subject]]:
    """Run the benchmark; returns the JSON-able report and the subjects (with raw per-plan times)."""
    from ..progress import Progress

    bad = sorted(set(opts.backends) - set(BENCH_BACKENDS))
    if bad or not opts.backends:
        raise KDPError(f"unknown --backend {bad}: use {', '.join(BENCH_BACKENDS)} (comma-separated for several)")
    if opts.runs < 1 or not opts.candidates or min(opts.candidates) < 1:
        raise KDPError("--runs and every --candidates value must be at least 1")
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    rate = opts.rate_hz or m.control_rate_hz
    period_ms = 1e3 / rate
    notes: list[str] = []
    cache: dict = {}
    results: list[dict] = []
    subjects_all: list[Subject] = []
    t_start = time.perf_counter()
    load_before = load_average()
    by_k: dict[int, list[Subject]] = {}
    for k in opts.candidates:
        by_k[k] = build_subjects(bundle_dir, opts, k, "bundle", cache, notes)
        if opts.compare:
            by_k[k] += build_subjects(opts.compare, opts, k, "compare", cache, notes)
    total = sum(len(v) for v in by_k.values()) * (opts.runs + opts.warmup)
    with Progress(total, "bench", enabled=opts.progress) as bar:
        for subjects in by_k.values():
            time_subjects(subjects, opts.runs, opts.warmup, opts.block, bar)
            for s in subjects:
                results.append(s.result(period_ms))
                s.planner = None  # free the model once timed
            subjects_all += subjects
    if not results:
        raise BundleError(f"nothing to time: {'; '.join(notes) or 'no model matches --backend/--precision'}")
    report = {
        "bundle": str(bundle.root), "compare": str(opts.compare) if opts.compare else None,
        "env": m.env, "method": m.method, "horizon": m.horizon, "obs_dim": m.obs_dim, "act_dim": m.act_dim,
        "goal_dim": m.goal_dim, "window": m.window, "scoring": m.scoring.get("kind", "goal_distance") if m.scoring else "goal_distance",
        "options": {"backends": opts.backends, "precision": opts.precision, "candidates": opts.candidates,
                    "runs": opts.runs, "warmup": opts.warmup, "rate_hz": rate, "threads": opts.threads,
                    "block": opts.block, "seed": opts.seed, "conditions": opts.conditions},
        "host": cpu_info() | {"load_average_before": load_before, "load_average_after": load_average()},
        "versions": versions(opts.backends),
        "results": results, "ratios": ratios(results), "notes": notes,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_note": ("process peak, includes torch" if "torch" in opts.backends else
                          "process peak of the runtime (numpy + onnxruntime/LiteRT + this benchmark)"),
        "wall_s": time.perf_counter() - t_start,
    }
    return report, subjects_all

