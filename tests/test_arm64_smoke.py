"""scripts/arm64-smoke without the emulation: the one-line skip where a precondition is missing (exit 0,
--strict exit 2) and the arm64 check script's comparison / pass-fail logic on synthetic arrays."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "arm64-smoke"


def _load_check():
    spec = importlib.util.spec_from_file_location("arm64_smoke_check", ROOT / "scripts" / "arm64_smoke_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


check = _load_check()


def _smoke(tmp_path, *args, missing: str):
    env = dict(os.environ, KDP_ARM64_ASSUME_MISSING=missing, KDP_ARM64_CACHE=str(tmp_path / "cache"),
               KDP_ARM64_RESULTS=str(tmp_path / "results"))
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize("missing", ["arch", "root", "binfmt", "apt"])
def test_missing_precondition_prints_one_skip_line(tmp_path, missing):
    r = _smoke(tmp_path, missing=missing)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = (r.stdout + r.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith("arm64-smoke: skipped: "), lines
    assert not (tmp_path / "results").exists()


def test_strict_skip_exits_2(tmp_path):
    r = _smoke(tmp_path, "--strict", missing="root")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout.startswith("arm64-smoke: skipped: ") and r.stdout.count("\n") == 1


def test_unknown_option(tmp_path):
    r = _smoke(tmp_path, "--frobnicate", missing="root")
    assert r.returncode == 64 and "unknown option" in r.stderr


def _windows(seed=0, shape=(3, 16, 8, 6)):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_compare_outputs_measures():
    ref = _windows()
    out = ref.copy()
    out[0, 0, 0, 4] += 0.2  # step 0, first action dim (action_slice (4, 6)), range 2 -> 0.1 of range
    m = check.compare_outputs(ref, out, (4, 6), np.array([2.0, 2.0]))
    assert m["finite"] and m["shape_ok"]
    assert m["max_abs"] == pytest.approx(0.2, rel=1e-5)
    assert m["rel_max"] == pytest.approx(0.2 / np.abs(ref).max(), rel=1e-5)
    n_first = 3 * 16 * 2  # elements in [..., 0, 4:6]
    assert m["first_action_rms_frac"] == pytest.approx(np.sqrt(0.1 ** 2 / n_first), rel=1e-4)


def test_fp32_judge_passes_tiny_and_fails_large_error():
    ref = _windows(1)
    scale = np.abs(ref).max()
    ok, _ = check.judge("fp32", check.compare_outputs(ref, ref + 1e-7 * scale, (4, 6), 2.0))
    assert ok
    ok, why = check.judge("fp32", check.compare_outputs(ref, ref * (1 + 1e-3), (4, 6), 2.0))
    assert not ok and "rel_max" in why


def test_int8_judge_uses_the_budget():
    ref = _windows(2)
    small = ref + np.random.default_rng(3).normal(0, 0.01, ref.shape)  # ~0.5% of a range of 2
    big = ref + np.random.default_rng(3).normal(0, 0.2, ref.shape)  # ~10%
    assert check.judge("int8", check.compare_outputs(ref, small, (4, 6), 2.0), budget=0.02)[0]
    ok, why = check.judge("int8", check.compare_outputs(ref, big, (4, 6), 2.0), budget=0.02)
    assert not ok and "budget" in why


def test_non_finite_or_wrong_shape_fails():
    ref = _windows(4)
    bad = ref.copy()
    bad[1, 2, 3, 0] = np.nan
    assert not check.judge("fp32", check.compare_outputs(ref, bad, (4, 6), 2.0))[0]
    assert not check.judge("int8", check.compare_outputs(ref, bad, (4, 6), 2.0), budget=1.0)[0]
    assert not check.judge("fp32", check.compare_outputs(ref, ref[:, :8], (4, 6), 2.0))[0]


def test_report_summary_and_atomic_files(tmp_path):
    result = {"ok": True, "environment": {"machine": "aarch64", "python": "3.11.2", "os": "Debian 12"},
              "models": {"m.onnx": {"file": "m.onnx", "precision": "fp32", "vs_x86_same_file": {"rel_max": 1e-7}}},
              "bench": {"results": [{"label": "onnx fp32", "k": 16, "p50_ms": 3.0}]}, "checks": []}
    (tmp_path / "r.json").write_text(json.dumps(result))
    rc = check.main(["report", "--result", str(tmp_path / "r.json"), "--out-dir", str(tmp_path / "out")])
    assert rc == 0
    doc = json.loads((tmp_path / "out" / "smoke.json").read_text())
    assert doc["ok"] and any("NOT device timings" in x for x in doc["summary"])
    assert "emulation" in (tmp_path / "out" / "smoke.md").read_text()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]
