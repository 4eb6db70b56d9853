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
    assert c["deadline_misses"] >= 50 and c["fallback_actions"] >= 1
    # every missed cycle sends the plan step due now, or nothing when its STATE is already older than the
    # age bound (valid-for less one period: 20 ms at 100 Hz; a 12 ms plan after a STATE that waited in the buffer)
    assert c["fallback_actions"] + c["stale_obs_refused"] + c["send_failed"] >= c["deadline_misses"] - 2


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


# ---- bounded logs and a summary that survives a crash (#25) ---------------------------------------------

def _poll_json(path, pred, timeout_s=90.0, proc=None):
    """Poll ``path`` until it holds JSON satisfying ``pred`` (no sleeping to synchronise: each look is a read)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        if path.exists():
            try:
                d = json.loads(path.read_text())
            except ValueError:  # never expected (atomic writes), but fail on the assert below, not here
                d = None
            if d is not None and pred(d):
                return d
        time.sleep(0.05)
    raise AssertionError(f"{path} never satisfied the condition within {timeout_s} s")


def test_log_rotation_keeps_at_most_k_plus_one_files_of_bounded_size(tmp_path):
    from kdp_edge.app.run import JsonlLog

    p = tmp_path / "run.jsonl"
    jl = JsonlLog(str(p), max_bytes=5000, keep=2)
    for i in range(2000):
        jl.write({"cycle": i, "pad": "x" * 40})
    jl.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["run.jsonl", "run.jsonl.1", "run.jsonl.2"]
    assert all(f.stat().st_size <= 5000 for f in files) and jl.rotations > 10
    cycles = [json.loads(x)["cycle"] for f in (p.with_name("run.jsonl.2"), p.with_name("run.jsonl.1"), p)
              for x in f.read_text().splitlines()]
    assert cycles == list(range(cycles[0], 2000)), "the newest lines, whole and in order, the oldest dropped"
    jl0 = JsonlLog(str(tmp_path / "k0.jsonl"), max_bytes=3000, keep=0)
    for i in range(500):
        jl0.write({"cycle": i})
    jl0.close()
    assert not (tmp_path / "k0.jsonl.1").exists() and (tmp_path / "k0.jsonl").stat().st_size <= 3000


def test_run_log_max_mb_needs_a_log(tiny_bundle, tmp_path, cli_env):
    r = subprocess.run(kdp_cmd("run", str(tiny_bundle), "--port", "sim://pointmaze-umaze", "--log-max-mb", "1"),
                       env=cli_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--log" in r.stderr and "fix:" in r.stderr and "Traceback" not in r.stderr


def test_run_summary_survives_sigkill_and_logs_stay_bounded(tiny_bundle, tmp_path, cli_env):
    log, summary = tmp_path / "logs" / "run.jsonl", tmp_path / "summary.json"
    p = subprocess.Popen(kdp_cmd("run", str(tiny_bundle), "--port", "sim://pointmaze-umaze", "--rate", "100",
                                 "--duration", "600", "--log", str(log), "--log-max-mb", "0.03", "--log-keep", "2",
                                 "--summary", str(summary), "--summary-every", "0.2"),
                         env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # wait for a periodic summary written after the log has rotated at least twice
        d = _poll_json(summary, lambda d: d.get("log", {}).get("rotations", 0) >= 3, proc=p)
    finally:
        p.kill()  # SIGKILL: no handler runs, no final write
        p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    s = json.loads(summary.read_text())  # whatever the last periodic write was: complete, valid JSON
    assert s["final"] is False and s["counts"]["cycles"] >= d["counts"]["cycles"] > 0
    assert s["plan_ms"]["n"] == s["counts"]["plans"] and "histograms" in s
    names = sorted(f.name for f in log.parent.iterdir())
    assert names == ["run.jsonl", "run.jsonl.1", "run.jsonl.2"], names
    assert all((log.parent / n).stat().st_size <= 30_000 for n in names)
    for n in names[1:]:  # rotated files are whole lines
        assert all(json.loads(x)["cycle"] >= 0 for x in (log.parent / n).read_text().splitlines())


def test_run_sigterm_writes_the_final_summary(tiny_bundle, tmp_path, cli_env):
    summary = tmp_path / "summary.json"
    p = subprocess.Popen(kdp_cmd("run", str(tiny_bundle), "--port", "sim://pointmaze-umaze", "--rate", "100",
                                 "--duration", "600", "--summary", str(summary), "--summary-every", "0.2"),
                         env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        d = _poll_json(summary, lambda d: d["counts"]["cycles"] >= 50, proc=p)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err
    s = json.loads(summary.read_text())
    assert s["final"] is True and s["stopped_by"] == "SIGTERM" and s["counts"]["cycles"] >= d["counts"]["cycles"]
    assert "stopped by SIGTERM" in out
