"""`kdp-edge run` end to end over a pty against the virtual PointMaze robot (sim:// port)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from conftest import SIGINT_DEFAULT, kdp_cmd


def test_run_sim_episode_logs_every_cycle(tiny_bundle, tmp_path, cli_env):
    log, summary = tmp_path / "run.jsonl", tmp_path / "summary.json"
    r = subprocess.run(kdp_cmd("run", str(tiny_bundle), "--port", "sim://pointmaze-umaze", "--rate", "100",
                               "--episodes", "1", "--log", str(log), "--summary", str(summary)),
                       env=cli_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "run summary" in r.stdout and "plan latency" in r.stdout
    s = json.loads(summary.read_text())
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert s["counts"]["cycles"] == len(recs) > 100
    assert s["sim"]["episodes"] == 1 and "normalized_score_mean" in s["sim"]
    assert s["link"]["rx_crc_errors"] == 0 and s["stopped_by"] == "end"
    sent = [x for x in recs if x["sent"]]
    assert len(sent) >= 0.9 * len(recs)
    for x in sent:  # timestamps are ordered within a cycle
        assert x["t_state_rx"] <= x["t_plan_start"] <= x["t_plan_end"] <= x["t_action_tx"]
        assert x["source"] in ("plan", "fallback") and len(x["action"]) == 2
    wu = s["warmup"]  # whole plans on the first STATE before cycle 0; the counted misses come after it
    assert wu["plans"] >= 1 and "over_deadline" in wu and "warm-up before the first cycle" in r.stdout
    assert "deadline misses" in r.stdout and "(after warm-up)" in r.stdout
    seqs = [x["seq"] for x in recs if x["seq"] is not None]
    assert seqs == sorted(seqs), "states are consumed in order"


def test_run_slow_planner_falls_back_and_counts_misses(tiny_bundle, tmp_path, cli_env):
    summary = tmp_path / "s.json"
    r = subprocess.run(kdp_cmd("run", str(tiny_bundle), "--port", "sim://pointmaze-umaze", "--rate", "100",
                               "--cycles", "60", "--slow-plan-ms", "12", "--summary", str(summary)),
                       env=cli_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    c = json.loads(summary.read_text())["counts"]
    assert c["deadline_misses"] >= 50 and c["fallback_actions"] >= 40


def test_run_ctrl_c_stops_cleanly(tiny_bundle, tmp_path, cli_env):
    log = tmp_path / "run.jsonl"
    p = subprocess.Popen(kdp_cmd("run", str(tiny_bundle), "--port", "sim://pointmaze-umaze", "--duration", "60",
                                 "--log", str(log)), env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, **SIGINT_DEFAULT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or log.stat().st_size < 2000):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert "stopped by SIGINT" in out
    lines = log.read_text().splitlines()
    assert lines and all(json.loads(x)["cycle"] == i for i, x in enumerate(lines)), "log complete and parseable"


def test_run_clear_errors(tiny_bundle, tmp_path, cli_env):
    r = subprocess.run(kdp_cmd("run", str(tmp_path / "nope"), "--port", "sim://pointmaze-umaze"),
                       env=cli_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "bundle directory not found" in r.stderr
    r = subprocess.run(kdp_cmd("run", str(tiny_bundle), "--port", "sim://cartpole"),
                       env=cli_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "sim://pointmaze-umaze" in r.stderr
    # a bundle made for UMaze against another maze's simulator: a refusal naming both, not a ValueError
    r = subprocess.run(kdp_cmd("run", str(tiny_bundle), "--port", "sim://pointmaze-medium"),
                       env=cli_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "pointmaze-umaze" in r.stderr and "pointmaze-medium" in r.stderr and "fix:" in r.stderr
    r = subprocess.run(kdp_cmd("run", str(tiny_bundle), "--port", "/dev/ttyNOPE0"),
                       env=cli_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "/dev/ttyNOPE0" in r.stderr
