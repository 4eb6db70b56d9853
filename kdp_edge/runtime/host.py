"""Facts about the host a benchmark ran on: CPU model and the flags that decide whether int8 pays off,
load average, peak RSS of this process, versions of the runtime packages. Standard library only."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm", "sve")
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model, architecture, cores and the int8-relevant flags.

    Reads ``/proc/cpuinfo`` (x86 ``flags``, ARM ``Features``); elsewhere (macOS, Windows) only
    :mod:`platform` is used and ``flags`` is empty. ``cpuinfo`` overrides the file (tests).
    """
    text = cpuinfo
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = val.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(val.split())
    if not model:
        try:
            model = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ")  # Raspberry Pi, Jetson
        except OSError:
            model = platform.processor() or platform.machine()
    present = {f: f in flags for f in CPU_FLAGS}
    return {
        "model": model, "arch": platform.machine(), "cores": os.cpu_count(), "system": platform.system(),
        "flags": present if flags else {}, "int8_dot_product": any(present[f] for f in INT8_DOT_FLAGS) if flags else None,
        "source": "/proc/cpuinfo" if flags else "platform (no CPU flags on this system)",
    }


def load_average() -> list[float] | None:
    """1/5/15-minute load average (None where unavailable): above the core count, other processes
    compete for the CPU and wall-time tails grow."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process in MB (``resource.getrusage``); None where unavailable."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1e6 if platform.system() == "Darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def versions(backends: list[str]) -> dict[str, str]:
    import sys

    import numpy as np

    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    import importlib.metadata as md

    for dist in ("onnxruntime", "ai-edge-litert", "tflite-runtime", "torch", "kdp-edge"):
        if dist == "torch" and "torch" not in backends:
            continue
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out
