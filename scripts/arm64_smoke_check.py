#!/usr/bin/env python3
"""Helper of ``scripts/arm64-smoke``: reference outputs on the host, checks inside the arm64 root.

    # host (x86-64, the dev venv): fixed inputs and the x86 outputs of every model file of the bundle
    python scripts/arm64_smoke_check.py reference --bundle B --out ref.npz
    # inside the emulated Debian bookworm arm64 root (Python 3.11, kdp-edge installed from its wheel, no torch)
    python arm64_smoke_check.py check --bundle B --ref ref.npz --out result.json --work DIR
    # host: summary, bench/results/arm64/smoke.json and smoke.md (atomic writes)
    python scripts/arm64_smoke_check.py report --result result.json --extra extra.json --out-dir DIR

Both sides run the same runtime code path: the backend that ``Planner.load`` builds
(``kdp_edge.runtime.planner.make_backend``) called on the same feeds (obs, goal and noise stored in
ref.npz), one thread, so the comparison is deterministic.

Error measures (outputs are candidate windows [N, K, H, D], raw units; float64 for the maths):

* ``rel_max = max|arm - x86| / max|x86|`` over every element. fp32 files must have rel_max <= 1e-5.
* ``first_action_rms_frac = rms((arm - x86)[..., step 0, action dims] / (action_high - action_low))``,
  the measure the export's int8 budget is stated in (export/parity.py; ``bundle.json`` ->
  ``parity.<file>.budget_first_action_frac``). An int8 file passes when both its error against
  the x86 output of the same int8 file and against the x86 fp32 output (the float model; the
  export compares against torch, which the fp32 files match to ~1e-6) are within that budget.

Only the standard library and numpy are imported at module level (the test suite imports this
file); kdp_edge is imported inside the functions that need it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FP32_RTOL = 1e-5  # fp32 files: max relative error (rel_max) arm64 vs x86
DEFAULT_INT8_BUDGET = 0.02  # used only when bundle.json has no budget for an int8 file
N_CONDITIONS = 8
INPUT_SEED = 20251125
EMULATED_NOTE = "emulated (qemu-user on x86-64): NOT device timings"


# ---- comparison (pure numpy: unit-tested on synthetic arrays) ----------------------------------------
def compare_outputs(ref: np.ndarray, out: np.ndarray, action_slice: tuple[int, int],
                    action_range: np.ndarray | float) -> dict:
    """Errors of ``out`` against ``ref`` (both [..., H, D] windows; see the module docstring)."""
    ref = np.asarray(ref, np.float64)
    out = np.asarray(out, np.float64)
    if ref.shape != out.shape:
        return {"shape_ok": False, "finite": bool(np.isfinite(out).all()), "ref_shape": list(ref.shape),
                "shape": list(out.shape), "max_abs": math.inf, "rel_max": math.inf,
                "first_action_rms_frac": math.inf}
    finite = bool(np.isfinite(out).all())
    e = out - ref
    lo, hi = action_slice
    width = np.maximum(np.asarray(action_range, np.float64), 1e-6)
    first = e[..., 0, lo:hi] / width
    max_abs = float(np.abs(e).max()) if finite else math.inf
    ref_max = float(np.abs(ref).max())
    return {
        "shape_ok": True, "finite": finite, "max_abs": max_abs, "ref_max_abs": ref_max,
        "rel_max": max_abs / max(ref_max, 1e-12) if finite else math.inf,
        "first_action_rms_frac": float(np.sqrt(np.mean(first ** 2))) if finite else math.inf,
    }


def judge(precision: str, metrics: dict, budget: float | None = None, fp32_rtol: float = FP32_RTOL) -> tuple[bool, str]:
    """Pass/fail of one comparison: fp32 by ``rel_max <= fp32_rtol``; int8 by
    ``first_action_rms_frac <= budget``. Returns (ok, one-line reason)."""
    if not metrics.get("shape_ok", True):
        return False, f"output shape {metrics.get('shape')} != reference {metrics.get('ref_shape')}"
    if not metrics["finite"]:
        return False, "output contains NaN/inf"
    if precision == "fp32":
        ok = metrics["rel_max"] <= fp32_rtol
        return ok, f"rel_max {metrics['rel_max']:.2e} {'<=' if ok else '>'} {fp32_rtol:.0e}"
    b = DEFAULT_INT8_BUDGET if budget is None else float(budget)
    ok = metrics["first_action_rms_frac"] <= b
    return ok, (f"first-action rms {100 * metrics['first_action_rms_frac']:.3f}% of range "
                f"{'<=' if ok else '>'} budget {100 * b:.3g}%")


# ---- small utilities ----------------------------------------------------------------------------------
def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise
    return path


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _load(bundle_dir: str):
    from kdp_edge.bundle import load_bundle

    b = load_bundle(bundle_dir, verify=True)
    m = b.manifest
    k = m.default_candidates
    files = [f for f in m.files if f.role == "generator" and f.accepts(k)]
    return b, m, k, files


def _label(f) -> str:
    return f"{f.format}-{f.precision}"


def _run_file(bundle, f, feeds: list[dict]) -> np.ndarray:
    from kdp_edge.runtime.planner import make_backend

    backend = make_backend(bundle, f, threads=1, providers=None)
    return np.stack([backend(fd) for fd in feeds])


def _feeds(ref, m) -> list[dict]:
    out = []
    for i in range(len(ref["obs"])):
        fd = {"obs": ref["obs"][i], "noise": ref["noise"][i]}
        if m.goal_dim:
            fd["goal"] = ref["goal"][i]
        out.append(fd)
    return out


def _plans(bundle_dir: str, backend: str, precision: str, k: int, conds, noise) -> dict:
    from kdp_edge.runtime import Planner

    p = Planner.load(bundle_dir, backend=backend, precision=precision, candidates=k, threads=1, warmup=2)
    acts, choices = [], []
    for (obs, goal), nz in zip(conds, noise, strict=True):
        plan = p.plan(obs, goal, noise=nz)
        acts.append(np.asarray(plan.action, np.float32))
        choices.append(plan.choice)
    return {"actions": np.stack(acts), "choices": np.asarray(choices, np.int64)}


def _precisions(files, backend: str) -> list[str]:
    return [f.precision for f in files if f.format == backend and f.precision in ("fp32", "int8")]


# ---- host: reference --------------------------------------------------------------------------------
def cmd_reference(args) -> int:
    from kdp_edge.runtime.bench import bench_conditions

    bundle, m, k, files = _load(args.bundle)
    conds = bench_conditions(m, N_CONDITIONS, seed=INPUT_SEED)
    rng = np.random.default_rng(INPUT_SEED)
    obs = np.stack([np.repeat(np.asarray(o, np.float32)[None], k, 0) for o, _ in conds])
    goal = (np.stack([np.repeat(np.asarray(g, np.float32)[None], k, 0) for _, g in conds]) if m.goal_dim
            else np.zeros((len(conds), k, 0), np.float32))
    noise = rng.standard_normal((len(conds), k, m.horizon, m.window_dim), dtype=np.float32)
    arrays = {"obs": obs, "goal": goal, "noise": noise, "obs1": obs[:, 0], "goal1": goal[:, 0]}
    feeds = _feeds(arrays, m)
    labels = []
    for f in files:
        arrays[f"out/{f.path}"] = _run_file(bundle, f, feeds)
        labels.append(f.path)
    for backend in ("onnx", "tflite"):
        for prec in _precisions(files, backend):
            pl = _plans(args.bundle, backend, prec, k, _conds(arrays, m), noise)
            arrays[f"plan/{backend}-{prec}/actions"] = pl["actions"]
            arrays[f"plan/{backend}-{prec}/choices"] = pl["choices"]
    meta = {"files": labels, "k": k, "conditions": len(conds), "seed": INPUT_SEED, "machine": platform.machine(),
            "python": platform.python_version(), "onnxruntime": _dist_version("onnxruntime"),
            "ai_edge_litert": _dist_version("ai-edge-litert"), "numpy": np.__version__}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays)
    print(f"reference: {len(files)} model files x {len(conds)} conditions x K={k} on {platform.machine()} -> {args.out}")
    return 0


def _conds(arrays, m):
    return [(arrays["obs1"][i], arrays["goal1"][i] if m.goal_dim else None) for i in range(len(arrays["obs1"]))]


# ---- inside the root: check ----------------------------------------------------------------------------
class Checks:
    def __init__(self):
        self.items: list[dict] = []

    def add(self, name: str, ok: bool, detail: str, **data) -> bool:
        self.items.append({"name": name, "ok": bool(ok), "detail": detail, **_jsonable(data)})
        print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)
        return ok

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.items)


def check_environment(c: Checks) -> dict:
    info = {"machine": platform.machine(), "python": platform.python_version(),
            "numpy": np.__version__, "onnxruntime": _dist_version("onnxruntime"),
            "ai_edge_litert": _dist_version("ai-edge-litert"), "pyserial": _dist_version("pyserial"),
            "cobs": _dist_version("cobs"), "click": _dist_version("click"), "kdp_edge": _dist_version("kdp-edge")}
    try:
        info["os"] = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines()
                          if "=" in line).get("PRETTY_NAME", "").strip('"')
    except OSError:
        info["os"] = ""
    c.add("arm64 python", info["machine"] == "aarch64", f"{info['machine']}, Python {info['python']}, {info['os']}")
    try:
        import torch  # noqa: F401

        c.add("no torch", False, "import torch succeeded: the device install must not contain torch")
    except ImportError:
        c.add("no torch", True, "import torch fails (device install without torch)")
    import kdp_edge

    where = str(Path(kdp_edge.__file__).resolve())
    info["kdp_edge_file"] = where
    c.add("kdp-edge from the wheel", "site-packages" in where, f"kdp_edge {info['kdp_edge']} at {where}")
    return info


def check_models(c: Checks, args, ref, bundle, m, k, files) -> dict:
    feeds = _feeds(ref, m)
    lo_hi = m.action_slice
    width = (np.asarray(m.action_high, np.float64) - np.asarray(m.action_low, np.float64)
             if m.action_low else np.ones(m.act_dim))
    fp32_ref = {f.format: f.path for f in files if f.precision == "fp32"}
    out = {}
    for f in files:
        key = f"out/{f.path}"
        if key not in ref:
            c.add(f"model {f.path}", False, "no x86 reference for this file (bundle changed after reference?)")
            continue
        t0 = time.perf_counter()
        try:
            y = _run_file(bundle, f, feeds)
        except Exception as exc:  # noqa: BLE001 - report any load/run error as a failed check
            c.add(f"model {f.path}", False, f"{type(exc).__name__}: {exc}")
            continue
        dt = time.perf_counter() - t0
        same = compare_outputs(ref[key], y, lo_hi, width)
        rec = {"file": f.path, "format": f.format, "precision": f.precision, "vs_x86_same_file": same,
               "run_s_emulated": round(dt, 3)}
        if f.precision == "fp32":
            ok, why = judge("fp32", same)
            c.add(f"{_label(f)} ({f.path}) vs x86", ok, why, rel_max=same["rel_max"])
        else:
            budget = m.parity.get(f.path, {}).get("budget_first_action_frac")
            rec["budget_first_action_frac"] = budget if budget is not None else DEFAULT_INT8_BUDGET
            rec["budget_source"] = "bundle.json parity" if budget is not None else "default (not in bundle.json)"
            ok1, why1 = judge("int8", same, budget)
            ref_fp32 = fp32_ref.get(f.format) or fp32_ref.get("onnx")
            if ref_fp32 is not None:
                vs_fp = compare_outputs(ref[f"out/{ref_fp32}"], y, lo_hi, width)
                rec["vs_x86_fp32"] = vs_fp | {"reference_file": ref_fp32}
                ok2, why2 = judge("int8", vs_fp, budget)
            else:
                ok2, why2 = True, "no fp32 file in the bundle"
            c.add(f"{_label(f)} ({f.path}) vs x86 int8", ok1, why1)
            c.add(f"{_label(f)} ({f.path}) vs x86 fp32", ok2, why2)
            ok = ok1 and ok2
        rec["ok"] = ok
        out[f.path] = rec
    return out


def check_plans(c: Checks, args, ref, m, k, files) -> dict:
    lo = np.asarray(m.action_low, np.float32) if m.action_low else None
    hi = np.asarray(m.action_high, np.float32) if m.action_high else None
    out = {}
    for backend in ("onnx", "tflite"):
        for prec in _precisions(files, backend):
            name = f"{backend}-{prec}"
            try:
                pl = _plans(args.bundle, backend, prec, k, _conds(ref, m), ref["noise"])
            except Exception as exc:  # noqa: BLE001
                c.add(f"Planner.plan {name}", False, f"{type(exc).__name__}: {exc}")
                continue
            a = pl["actions"]
            finite = bool(np.isfinite(a).all())
            inside = finite and (lo is None or bool(((a >= lo - 1e-6) & (a <= hi + 1e-6)).all()))
            host_a, host_c = ref.get(f"plan/{name}/actions"), ref.get(f"plan/{name}/choices")
            rec = {"plans": len(a), "finite": finite, "within_bounds": inside, "first_action": a[0].tolist()}
            detail = f"{len(a)} plans, actions finite and within [{m.action_low}, {m.action_high}]"
            ok = finite and inside
            if host_a is not None:
                same_choice = float(np.mean(pl["choices"] == host_c))
                rec["same_choice_as_x86"] = same_choice
                rec["action_max_abs_diff_vs_x86"] = float(np.abs(a.astype(np.float64) - host_a).max())
                detail += f"; same candidate as x86 in {100 * same_choice:.0f}%"
                if prec == "fp32" and same_choice < 1.0:
                    ok = False
                    detail += " (fp32 must pick the same candidate)"
            if not (finite and inside):
                detail = f"actions not finite or outside the bounds: {a.tolist()}"
            c.add(f"Planner.plan {name}", ok, detail)
            out[name] = rec | {"ok": ok}
    return out


def _kdp_edge_exe() -> list[str]:
    exe = Path(sys.executable).parent / "kdp-edge"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "kdp_edge.cli"]


def check_bench(c: Checks, args, work: Path) -> dict:
    out_json = work / "bench.json"
    cmd = _kdp_edge_exe() + ["bench", args.bundle, "--backend", "onnx,tflite", "-k", str(args.k), "--runs",
                              str(args.bench_runs), "--warmup", "5", "--threads", "1", "--out", str(out_json), "--quiet"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.step_timeout)
    wall = time.monotonic() - t0
    if r.returncode != 0 or not out_json.exists():
        c.add("kdp-edge bench", False, f"exit {r.returncode}: {(r.stderr or r.stdout)[-800:]}")
        return {"ok": False}
    rep = json.loads(out_json.read_text())
    rows = [{"label": x["label"], "k": x["k"], "p50_ms": x["plan"]["p50_ms"], "p99_ms": x["plan"]["p99_ms"],
             "n": x["plan"]["n"]} for x in rep["results"]]
    ok = len(rows) >= 2 and all(row["n"] == args.bench_runs for row in rows)
    txt = ", ".join(f"{row['label']} K={row['k']} p50 {row['p50_ms']:.2f} ms" for row in rows)
    c.add("kdp-edge bench", ok, f"{len(rows)} configurations x {args.bench_runs} runs ({EMULATED_NOTE}): {txt}")
    return {"ok": ok, "note": EMULATED_NOTE, "command": " ".join(["kdp-edge", *cmd[len(_kdp_edge_exe()):]]),
            "results": rows, "wall_s": round(wall, 1), "host_cpu_seen": rep.get("host", {}).get("cpu")}


def _read_line(proc: subprocess.Popen, prefix: str, timeout: float) -> str | None:
    end = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
        elif proc.poll() is not None:
            return None
    return None


def check_serial(c: Checks, args, work: Path) -> dict:
    """``kdp-edge virtual-controller`` (Python virtual robot on a pty) and ``kdp-edge run`` against it."""
    vc_cmd = _kdp_edge_exe() + ["virtual-controller", "--plant", "integrator", "--axes", str(args.axes),
                                "--rate", str(args.serial_rate), "--duration", str(args.step_timeout)]
    vc_err = open(work / "virtual_controller.stderr", "w+")
    vc = subprocess.Popen(vc_cmd, stdout=subprocess.PIPE, stderr=vc_err)
    rec: dict = {"ok": False}
    try:
        port = _read_line(vc, "PTY ", 120)
        if not port:
            vc_err.seek(0)
            c.add("serial round trip", False, f"virtual controller printed no PTY line: {vc_err.read()[-600:]}")
            return rec
        rec["port"] = port
        rec["pty"] = os.path.realpath(port)
        summary = work / "run_summary.json"
        run_cmd = _kdp_edge_exe() + ["run", args.bundle, "--port", port, "--cycles", str(args.cycles), "--rate",
                                     str(args.run_rate), "--goal", ",".join(["0.5"] * args.goal_dim),
                                     "--summary", str(summary), "--log", str(work / "run.jsonl")]
        t0 = time.monotonic()
        r = subprocess.run(run_cmd, capture_output=True, text=True, timeout=args.step_timeout)
        rec["run_wall_s"] = round(time.monotonic() - t0, 1)
        rec["run_exit"] = r.returncode
        if r.returncode != 0 or not summary.exists():
            c.add("serial round trip", False, f"kdp-edge run exit {r.returncode}: {(r.stderr or r.stdout)[-800:]}")
            return rec
        s = json.loads(summary.read_text())
        counts, link = s["counts"], s["link"]
        rec.update(cycles=counts["cycles"], plans=counts["plans"], actions_sent=counts["actions_sent"],
                   fallback_actions=counts["fallback_actions"], deadline_misses=counts["deadline_misses"],
                   model=s["bundle"]["model"],
                   link={k: v for k, v in link.items() if isinstance(v, (int, float)) and v})
    finally:
        if vc.poll() is None:
            vc.send_signal(signal.SIGINT)
            try:
                vc.wait(20)
            except subprocess.TimeoutExpired:
                vc.kill()
                vc.wait()
        vc_err.seek(0)
        err = vc_err.read()
        vc_err.close()
    stats = {}
    for line in err.splitlines():
        if line.startswith("stats "):
            stats = json.loads(line[len("stats "):])
    rec["controller_stats"] = {k: v for k, v in stats.items() if v}
    received = int(stats.get("actions_accepted", 0))  # ControllerCore's counter of ACTIONs applied
    rec["controller_actions"] = received
    rec["controller_rejected"] = int(stats.get("actions_rejected", 0))
    crc = link.get("rx_crc_errors", 0) + stats.get("rx_crc_errors", 0)
    ok = (rec.get("run_exit") == 0 and rec["actions_sent"] >= args.cycles // 2 and received > 0 and crc == 0)
    rec["ok"] = ok
    c.add("serial round trip", ok, f"kdp-edge run -> pty {rec['pty']} -> virtual controller: {rec['cycles']} cycles, "
          f"{rec['actions_sent']} actions sent, controller got {received}, CRC errors {crc}")
    return rec


def check_pytest(c: Checks, args, work: Path) -> dict:
    tests = [str(Path(args.tests) / t) for t in args.pytest_files]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests, *args.pytest_args]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.step_timeout, cwd=args.tests)
    wall = time.monotonic() - t0
    last = [x for x in r.stdout.strip().splitlines() if x.strip()][-1:] or [""]
    ok = r.returncode == 0
    c.add("bridge tests (pytest)", ok, f"{' '.join(args.pytest_files)}: {last[0]} ({wall:.0f}s)"
          + ("" if ok else "\n" + r.stdout[-2000:] + r.stderr[-1000:]))
    return {"ok": ok, "files": args.pytest_files, "result": last[0], "wall_s": round(wall, 1)}


def cmd_check(args) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    c = Checks()
    result: dict = {"note": EMULATED_NOTE}
    print("arm64 checks:", flush=True)
    result["environment"] = check_environment(c)
    ref = dict(np.load(args.ref))
    bundle, m, k, files = _load(args.bundle)
    args.k, args.goal_dim, args.axes = k, m.goal_dim, m.act_dim
    result["bundle"] = {"env": m.env, "k": k, "files": [f.path for f in files], "obs_dim": m.obs_dim,
                        "act_dim": m.act_dim, "goal_dim": m.goal_dim, "horizon": m.horizon}
    result["models"] = check_models(c, args, ref, bundle, m, k, files)
    result["plans"] = check_plans(c, args, ref, m, k, files)
    if m.obs_dim == 2 * m.act_dim:  # the integrator virtual controller has state_dim = 2 * axes
        result["serial"] = check_serial(c, args, work)
    else:
        c.add("serial round trip", False, f"bundle obs_dim {m.obs_dim} != 2 x act_dim {m.act_dim}: no matching "
              "virtual controller plant (the smoke's bundle is PointMaze: 4 = 2 x 2)")
    if args.tests:
        result["pytest"] = check_pytest(c, args, work)
    result["bench"] = check_bench(c, args, work)
    result["checks"] = c.items
    result["ok"] = c.ok
    result["wall_s"] = round(time.monotonic() - t0, 1)
    atomic_write_text(args.out, json.dumps(_jsonable(result), indent=2) + "\n")
    print(f"arm64 checks: {'all passed' if c.ok else 'FAILED'} ({sum(x['ok'] for x in c.items)}/{len(c.items)}, "
          f"{result['wall_s']:.0f}s emulated)", flush=True)
    return 0 if c.ok else 1


# ---- host: report ----------------------------------------------------------------------------------------
def summarize(result: dict, extra: dict) -> tuple[list[str], bool]:
    """The verified checklist as text lines, and whether everything passed."""
    lines: list[str] = []
    env = result.get("environment", {})
    ok_all = bool(result.get("ok"))
    if not result:
        lines.append(f"the arm64 checks wrote no result (exit {extra.get('check_exit', '?')}: crashed or timed out; "
                     "see the log)")
        ok_all = False
    else:
        no_torch = any(c["name"] == "no torch" and c["ok"] for c in result.get("checks", []))
        lines.append(f"arm64 root: {env.get('os', '?')}, {env.get('machine', '?')}, Python {env.get('python', '?')}; "
                     f"numpy {env.get('numpy')}, onnxruntime {env.get('onnxruntime')}, ai-edge-litert "
                     f"{env.get('ai_edge_litert')}, pyserial {env.get('pyserial')}, cobs {env.get('cobs')}; "
                     f"{'torch absent' if no_torch else 'torch NOT verified absent'}"
                     + (f"; install: {extra['install']}" if extra.get("install") else ""))
    fp32 = [r for r in result.get("models", {}).values() if r["precision"] == "fp32"]
    if fp32:
        worst = max(r["vs_x86_same_file"]["rel_max"] for r in fp32)
        lines.append("fp32 vs x86 (max|d|/max|ref|): " + ", ".join(
            f"{r['file']} {r['vs_x86_same_file']['rel_max']:.1e}" for r in fp32) + f"; worst {worst:.1e} (limit 1e-5)")
    for r in result.get("models", {}).values():
        if r["precision"] != "fp32":
            s = r["vs_x86_same_file"]["first_action_rms_frac"]
            f = r.get("vs_x86_fp32", {}).get("first_action_rms_frac", float("nan"))
            lines.append(f"int8 {r['file']}: first-action rms vs x86 int8 {100 * s:.3f}%, vs x86 fp32 {100 * f:.3f}% "
                         f"of range; budget {100 * r['budget_first_action_frac']:.3g}% ({r['budget_source']})")
    for name, p in result.get("plans", {}).items():
        lines.append(f"Planner.plan {name}: {p.get('plans')} fixed-input plans, finite & within bounds "
                     f"{p.get('within_bounds')}, same candidate as x86 {100 * p.get('same_choice_as_x86', 0):.0f}%")
    s = result.get("serial", {})
    if s:
        lines.append(f"serial over pty {s.get('pty')}: kdp-edge run -> virtual controller, {s.get('cycles')} cycles, "
                     f"{s.get('actions_sent')} actions sent, controller received {s.get('controller_actions')}, "
                     f"exit {s.get('run_exit')}")
    pt = result.get("pytest")
    if pt:
        lines.append(f"bridge tests in the root: {' '.join(pt['files'])}: {pt['result']}")
    b = result.get("bench", {})
    if b.get("results"):
        lines.append("kdp-edge bench (" + EMULATED_NOTE + "): " + ", ".join(
            f"{r['label']} K={r['k']} p50 {r['p50_ms']:.2f} ms" for r in b["results"]))
    fw = extra.get("firmware", {})
    if fw.get("status") == "ok":
        for t in fw.get("targets", []):
            lines.append(f"firmware {t['target']} ({fw.get('compiler', '')}): " + ", ".join(
                f"{o['source']} text {o['text']} B data {o['data']} B bss {o['bss']} B" for o in t["objects"])
                + f"; undefined symbols: {', '.join(t.get('undefined', [])) or 'none'}")
        ok_all = ok_all and fw.get("ok", True)
    elif fw:
        lines.append(f"firmware cross-compile: {fw.get('status')}: {fw.get('detail', '')}")
        ok_all = ok_all and fw.get("status") != "failed"
    t = extra.get("timings", {})
    if t:
        lines.append("times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()))
    return lines, ok_all


def cmd_report(args) -> int:
    result = json.loads(Path(args.result).read_text()) if args.result and Path(args.result).exists() else {}
    extra = json.loads(Path(args.extra).read_text()) if args.extra and Path(args.extra).exists() else {}
    lines, ok = summarize(result, extra)
    out = Path(args.out_dir)
    runs = []  # the last runs' wall times (cold and warm cache), carried over from the previous smoke.json
    try:
        runs = list(json.loads((out / "smoke.json").read_text()).get("runs", []))
    except (OSError, ValueError, AttributeError):
        runs = []
    runs = (runs + [{"finished": extra.get("finished"), "cache_state": extra.get("cache_state"), "ok": ok,
                     "total_s": extra.get("timings", {}).get("total_s"), "timings": extra.get("timings", {}),
                     "host": extra.get("host")}])[-10:]
    doc = {"ok": ok, "summary": lines, "result": result, **extra, "runs": runs}
    atomic_write_text(out / "smoke.json", json.dumps(_jsonable(doc), indent=2) + "\n")
    md = ["# arm64 smoke (Raspberry Pi OS Bookworm base under qemu-user emulation)", "",
          f"Written by `scripts/arm64-smoke` ({extra.get('finished', '')}, cache {extra.get('cache_state', '?')}). "
          "Correctness only: every timing from inside the emulated root is qemu-user emulation on an x86-64 host, "
          "not a device number.", "", f"Result: {'PASSED' if ok else 'FAILED'}", ""]
    md += [f"- {x}" for x in lines]
    md += ["", "Recent runs (wall time of the whole script; `cold`: something had to be built or downloaded):", "",
           "| finished (UTC) | cache | total s | root fs s | install s | checks s | result |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        t = r.get("timings", {})
        md.append(f"| {r.get('finished')} | {r.get('cache_state')} | {r.get('total_s')} | {t.get('rootfs_s', '-')} | "
                  f"{t.get('install_s', '-')} | {t.get('checks_s', '-')} | {'passed' if r.get('ok') else 'FAILED'} |")
    checks = result.get("checks", [])
    if checks:
        md += ["", "| check | result | detail |", "|---|---|---|"]
        md += [f"| {c['name']} | {'ok' if c['ok'] else 'FAIL'} | {c['detail'].splitlines()[0]} |" for c in checks]
    atomic_write_text(out / "smoke.md", "\n".join(md) + "\n")
    print("arm64-smoke verified:" if ok else "arm64-smoke FAILED; what ran:")
    for x in lines:
        print(f"  - {x}")
    print(f"  results: {out / 'smoke.json'} , {out / 'smoke.md'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reference")
    r.add_argument("--bundle", required=True)
    r.add_argument("--out", required=True)
    c = sub.add_parser("check")
    c.add_argument("--bundle", required=True)
    c.add_argument("--ref", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--work", default=tempfile.gettempdir())
    c.add_argument("--bench-runs", type=int, default=20)
    c.add_argument("--cycles", type=int, default=40)
    c.add_argument("--run-rate", type=float, default=20.0)
    c.add_argument("--serial-rate", type=float, default=50.0)
    c.add_argument("--step-timeout", type=float, default=300.0)
    c.add_argument("--tests", default="", help="directory with the bridge test files (empty: skip pytest)")
    c.add_argument("--pytest-files", nargs="*", default=["test_bridge_protocol.py"])
    c.add_argument("--pytest-args", nargs="*", default=[])
    p = sub.add_parser("report")
    p.add_argument("--result", default="")
    p.add_argument("--extra", default="")
    p.add_argument("--out-dir", required=True)
    args = ap.parse_args(argv)
    return {"reference": cmd_reference, "check": cmd_check, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
