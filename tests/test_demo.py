"""`kdp-edge demo --quick` end to end: every artefact exists, parses and says the chain worked (the README's
main job)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import kdp_cmd


@pytest.mark.slow
def test_demo_quick_writes_every_artefact(tmp_path, cli_env):
    pytest.importorskip("litert_torch", reason="the demo exports TFLite: install the tflite extra")
    out = tmp_path / "demo"
    r = subprocess.run(kdp_cmd("demo", "--quick", "--out", str(out)), env=cli_env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for stage in ("data", "train", "eval", "export", "diffusion", "bench", "run"):
        assert f"] {stage}:" in r.stderr, f"no progress line for stage {stage}"
    for name in ("eval.json", "bench.json", "bench-vs-diffusion.json", "run-summary.json", "bundle/bundle.json",
                 "diffusion-bundle/bundle.json"):
        json.loads((out / name).read_text())
    for png in ("rollouts.png", "latency.png", "parity.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    lines = (out / "run.jsonl").read_text().splitlines()
    assert lines and all("plan_ms" in json.loads(x) for x in lines)
    report = (out / "report.md").read_text()
    for section in ("Closed loop (PointMaze UMaze)", "fp32 vs int8 parity", "On-device latency", "KDP vs diffusion",
                    "serial link", "Commands"):
        assert section in report, section
    man = json.loads((out / "bundle" / "bundle.json").read_text())
    assert {(f["format"], f["precision"]) for f in man["files"]} >= {("onnx", "int8"), ("tflite", "int8")}
    assert "Three scores for one model" in report and "rollouts.png" in report
    times = json.loads((out / "stage-times.json").read_text())  # each command's own time, one entry per command
    assert {"data", "train", "eval", "export", "diffusion train", "diffusion export", "bench", "bench vs diffusion",
            "run"} <= set(times)
    assert "train:" in r.stderr and "eta" in r.stderr, "training shows progress (steps, rate, ETA) in the demo"
    assert "torchao" not in r.stderr and "absl" not in r.stderr, "third-party export noise stays in export.log"
    run_summary = json.loads((out / "run-summary.json").read_text())
    assert run_summary["warmup"]["plans"] >= 1 and "after warm-up" in report
    # what the artefacts say, not only that they parse: the int8 gate held, the robot reached the goal, the
    # link was clean
    for name, parity in man["parity"].items():
        if "int8" in name:
            assert parity["within_budget"] and 0 < parity["first_action_rms_frac"] <= 0.02, (name, parity)
    assert not any("FORCED" in f["notes"] for f in man["files"])
    ev = json.loads((out / "eval.json").read_text())
    assert ev["kdp"]["success_rate"] > 0 and ev["kdp"]["normalized_score_mean"] > ev["random"]["normalized_score_mean"]
    assert run_summary["sim"]["success_rate"] > 0 and run_summary["stopped_by"] == "end"
    link = run_summary["link"]
    assert link["rx_crc_errors"] == 0 and link["rx_malformed"] == 0 and link["actions_refused_stale"] == 0
    assert run_summary["counts"]["actions_sent"] > 0 and run_summary["counts"]["send_failed"] == 0
    # a second invocation reuses every stage and regenerates the report, keeping the stages' real times
    r2 = subprocess.run(kdp_cmd("demo", "--quick", "--out", str(out)), env=cli_env, capture_output=True, text=True,
                        timeout=300)
    assert r2.returncode == 0 and r2.stderr.count("already done") >= 7
    report2 = (out / "report.md").read_text()
    assert "reused every stage" in report2 and f"{sum(times.values()) / 60:.1f} min" in report2
