"""Robot I/O and timing calibration (`kdp-edge calibrate io|latency`) and `kdp-edge run --calibration --timing`,
against the Python virtual robot with foreign raw units (issue #10)."""

from __future__ import annotations

import json
import signal
import subprocess
from contextlib import ExitStack

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SIGINT_DEFAULT, kdp_cmd

from calibration.robot_io import CalibrationError, RobotCalibration, check_against_hello
from firmware_bridge.link import SerialLink
from firmware_bridge.virtual_robot import start_virtual_robot
from kdp_edge.app.bridge_commands import cli

S_SCALE, S_OFFSET = [2.0, -3.0, 0.25, 5.0], [1.0, -2.0, 0.5, 30.0]
A_SCALE, A_OFFSET = [10.0, -20.0], [5.0, -3.0]


class HandPlant:
    """A robot moved by hand: each state channel follows a sinusoid of known model-unit amplitude."""

    state_dim, action_dim = 4, 2
    action_low, action_high = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    amp = np.array([1.0, 0.5, 2.0, 3.0])

    def reset(self, seed=None):
        self.t = 0.0
        return self.state()

    def state(self):
        return self.amp * np.sin(2 * np.pi * self.t / 1.0 + np.arange(4))  # 200 STATEs per cycle at 200 Hz

    def step(self, action, dt):
        self.t += dt
        return self.state()


def _rel_err(got, want):
    got, want = np.asarray(got, float), np.asarray(want, float)
    return np.abs(got - want) / np.maximum(np.abs(want), 1.0)


def _invoke(args):
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return res


def test_calibrate_io_hand_recovers_state_scale_offset(tmp_path):
    out = tmp_path / "robot.json"
    with start_virtual_robot(HandPlant(), 200, state_scale=S_SCALE, state_offset=S_OFFSET,
                             action_scale=A_SCALE, action_offset=A_OFFSET) as robot:
        res = _invoke(["calibrate", "io", "--port", robot.port, "--seconds", "2.2", "--out", str(out),
                       "--model-range", "0:-1,1", "--model-range", "1:0.5,-0.5",  # channel 1: reversed sign
                       "--model-range", "2:-2,2", "--model-range", "3:-3,3", "--state-units", "m,m,rad,rad"])
    assert "move the robot by hand" in res.output and "states," in res.output
    d = json.loads(out.read_text())
    assert d["format"] == "kdp-edge-robot-calibration" and d["version"] == 1 and d["created"]
    assert d["hello"]["state_dim"] == 4 and d["hello"]["fw_signature"].startswith("0x") and d["hello"]["fw_name"]
    cal = RobotCalibration.load(out)
    # channel 1's raw scale is negative: its range is declared reversed (0.5..-0.5), which gives the sign
    err_s, err_o = _rel_err(cal.state_scale, S_SCALE), _rel_err(cal.state_offset, S_OFFSET)
    print("hand: scale rel err", err_s.max(), "offset rel err", err_o.max())
    assert err_s.max() < 0.01 and err_o.max() < 0.01
    assert [c["units"] for c in d["state"]] == ["m", "m", "rad", "rad"]
    # actions: not swept -> identity, limits from HELLO (raw)
    assert [c["raw_min"] for c in d["action"]] == pytest.approx([-5.0, -23.0])


def test_calibrate_io_sweep_recovers_action_maps(tmp_path):
    ref, out, state_cal = tmp_path / "ref.json", tmp_path / "robot.json", tmp_path / "state.json"
    _invoke(["calibrate", "io", "--port", "sim://integrator?rate=100", "--sweep", "--hold-states", "10",
             "--out", str(ref)])  # the unscaled robot: model units = raw units; gives the reference response gains
    q = ("state_scale=" + ",".join(map(str, S_SCALE)) + "&state_offset=" + ",".join(map(str, S_OFFSET))
         + "&action_scale=" + ",".join(map(str, A_SCALE)) + "&action_offset=" + ",".join(map(str, A_OFFSET)))
    port = f"sim://integrator?rate=100&{q}"
    with ExitStack() as st:  # step 1 of the workflow (the hand recording, see the test above): the state maps
        from kdp_edge.app.calibrate_commands import _open

        _, caps = _open(st, port, 921600)
        RobotCalibration.from_maps(caps, S_SCALE, S_OFFSET).save(state_cal)
    res = _invoke(["calibrate", "io", "--port", port, "--sweep", "--hold-states", "10", "--reference", str(ref),
                   "--state-from", str(state_cal), "--out", str(out)])
    assert "[34/34] action 1" in res.output
    cal = RobotCalibration.load(out)
    errs = [_rel_err(cal.action_scale, A_SCALE), _rel_err(cal.action_offset, A_OFFSET)]
    print("sweep: max rel err action scale, offset", [float(e.max()) for e in errs])
    assert all(e.max() < 0.01 for e in errs)
    assert cal.state_scale.tolist() == S_SCALE and [c["response_channel"] for c in cal.action] == [2, 3]
    assert [c["mapping"] for c in cal.action] == ["sweep-reference"] * 2
    # a raw STATE maps back to model units and a model action to the raw command the robot expects
    assert cal.state_to_model(np.array(S_SCALE) * 0.5 + S_OFFSET) == pytest.approx([0.5] * 4, rel=1e-6)
    raw, clamped = cal.action_to_raw([0.5, 2.0])
    assert raw == pytest.approx([10, -23], rel=0.01) and clamped.tolist() == [False, True]


def test_calibrate_io_ctrl_c_still_writes(tmp_path, cli_env):
    out = tmp_path / "robot.json"
    p = subprocess.Popen(kdp_cmd("calibrate", "io", "--port", "sim://integrator?rate=100", "--seconds", "60",
                                 "--out", str(out)), env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, **SIGINT_DEFAULT)
    lines = []
    for line in p.stderr:  # wait until recording has started and made progress (a report per second)
        lines.append(line)
        if sum(" states, " in x for x in lines) >= 2:
            break
    p.send_signal(signal.SIGINT)
    rest_out, rest_err = p.communicate(timeout=30)
    assert p.returncode == 0, "".join(lines) + rest_err
    assert "interrupted" in rest_err and "wrote" in rest_out
    cal = RobotCalibration.load(out)
    assert cal.state_dim == 4 and not list(tmp_path.glob(".*.tmp"))


def test_calibrate_latency_recovers_injected_latency(tmp_path, tiny_bundle):
    out = tmp_path / "timing.json"
    _invoke(["calibrate", "latency", "--port", "sim://integrator?rate=100&latency_ms=20", "--bundle",
             str(tiny_bundle), "--out", str(out), "--pings", "20", "--seconds", "1", "--plans", "50"])
    d = json.loads(out.read_text())
    assert d["format"] == "kdp-edge-timing-calibration" and d["version"] == 1
    rtt, lt = d["link"]["rtt_ms"], d["link"]
    print("latency: rtt min", rtt["min_ms"], "p50", rtt["p50_ms"], "p99", rtt["p99_ms"],
          "state period controller p50", lt["state_period_controller_ms"]["p50_ms"])
    # The controller holds every HEARTBEAT for the injected 20 ms before answering, so no round trip is
    # shorter (a lower bound: load only adds to it); the fastest of the pings shows it once, not on both ways.
    assert rtt["n"] == 20 - lt["pings_lost"] >= 10
    assert 20.0 - 1e-6 <= rtt["min_ms"] <= rtt["p50_ms"] and rtt["min_ms"] < 40.0
    # the STATE period is the one the controller declares (HELLO), and the recommendation builds on it, not
    # on a period measured on a loaded host; the measured ones cover every STATE read (controller stamps too)
    assert lt["state_period_nominal_ms"] == 10.0 and d["hello"]["state_period_us"] == 10_000
    assert lt["states_received"] >= 3
    assert lt["state_period_controller_ms"]["n"] == lt["state_period_host_ms"]["n"] == lt["states_received"] - 1
    r = d["recommended"]
    assert r["offset_ms"] == pytest.approx(rtt["p50_ms"]) and r["rate_hz"] == pytest.approx(100 / r["state_rate_divisor"])
    assert r["basis"]["state_period_ms"] == 10.0
    assert d["plan_ms"]["n"] == 50 and "offset_plan_steps" in r and r["basis"]["plan_p99_ms"] > 0


def _pointmaze_calibration(tmp_path, state_dim_override=None, signature=None):
    from kdp_edge.sim import PointMazePlant

    s_scale, s_off, a_scale, a_off = [2, 2, 0.5, 0.5], [1, -1, 0.2, 0.3], [-3, 4], [0.5, -1]
    with start_virtual_robot(PointMazePlant("umaze"), 50, state_scale=s_scale, state_offset=s_off,
                             action_scale=a_scale, action_offset=a_off) as robot:
        link = SerialLink(robot.port)
        caps = link.hello(3)
        link.close()
    cal = RobotCalibration.from_maps(caps, s_scale, s_off, a_scale, a_off)
    if state_dim_override:
        cal.state = cal.state[:state_dim_override]
    if signature:
        cal.hello["fw_signature"] = signature
    q = "&".join(f"{k}={','.join(map(str, v))}" for k, v in
                 (("state_scale", s_scale), ("state_offset", s_off), ("action_scale", a_scale), ("action_offset", a_off)))
    return cal, caps, q


def test_mismatched_calibration_is_refused(tmp_path, tiny_bundle):
    pytest.importorskip("mujoco")
    cal, caps, q = _pointmaze_calibration(tmp_path)
    check_against_hello(cal, caps)  # the right one passes
    wrong_dims, _, _ = _pointmaze_calibration(tmp_path, state_dim_override=3)
    wrong_sig, _, _ = _pointmaze_calibration(tmp_path, signature="0x12345678")
    for bad, msg in ((wrong_dims, "3 state / 2 action channels"), (wrong_sig, "signature 0x12345678")):
        path = tmp_path / "bad.json"
        bad.save(path)
        res = CliRunner().invoke(cli, ["run", str(tiny_bundle), "--port", f"sim://pointmaze-umaze?{q}",
                                       "--cycles", "3", "--calibration", str(path)])
        assert res.exit_code == 2, res.output
        assert msg in res.output and "re-run `kdp-edge calibrate io`" in res.output
    (tmp_path / "v2.json").write_text(json.dumps({**cal.to_dict(), "version": 2}))
    with pytest.raises(CalibrationError, match="version 2"):
        RobotCalibration.load(tmp_path / "v2.json")


def test_calibrated_closed_loop_in_sim_matches_unit_scale(tmp_path, tiny_bundle):
    pytest.importorskip("mujoco")
    cal, _, q = _pointmaze_calibration(tmp_path)
    cal_path, timing = tmp_path / "robot.json", tmp_path / "timing.json"
    cal.save(cal_path)
    timing.write_text(json.dumps({"format": "kdp-edge-timing-calibration", "version": 1,
                                  "recommended": {"rate_hz": 100.0, "offset_ms": 0.0}}))
    summaries = {}
    for name, port, extra in (("unit", "sim://pointmaze-umaze", ["--rate", "100"]),
                              ("calibrated", f"sim://pointmaze-umaze?{q}",
                               ["--calibration", str(cal_path), "--timing", str(timing)])):
        s, log = tmp_path / f"{name}.json", tmp_path / f"{name}.jsonl"
        res = CliRunner().invoke(cli, ["run", str(tiny_bundle), "--port", port, "--episodes", "1", "--summary", str(s),
                                       "--log", str(log), *extra])
        assert res.exit_code == 0, res.output
        summaries[name] = json.loads(s.read_text())
    u, c = summaries["unit"], summaries["calibrated"]
    print("closed loop: unit", u["sim"]["per_episode"], "calibrated", c["sim"]["per_episode"])
    assert c["rate_hz"] == 100.0 and c["timing"]["offset_ms"] == 0.0
    assert c["calibration"]["actions_clamped"] == 0
    assert c["sim"]["episodes"] == u["sim"]["episodes"] == 1
    # Both runs start the episode at the same place, at rest, so the first cycle's STATE in model units must
    # be the same whether the robot reports raw units (mapped by the calibration) or the model's; and the
    # calibrated commands must drive the ball as far as the unit run's (a wrong scale or offset stalls it or
    # slams it into a wall). The executed actions themselves are not compared: which step of a plan is due
    # depends on when its STATE arrived, which the scheduler decides.
    logs = {name: [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
            for name in ("unit", "calibrated")}
    first = {name: next(x for x in recs if x["sent"] and "obs" in x)["obs"] for name, recs in logs.items()}
    assert np.allclose(first["unit"], first["calibrated"], atol=1e-4), first
    assert np.allclose(first["unit"][2:], 0.0, atol=1e-4)  # at rest
    moved = {name: float(np.linalg.norm(np.subtract([x for x in recs if "obs" in x][-1]["obs"][:2], first[name][:2])))
             for name, recs in logs.items()}
    assert moved["unit"] > 0.05 and 0.25 < moved["calibrated"] / moved["unit"] < 4.0, moved
    recs = [json.loads(x) for x in (tmp_path / "calibrated.jsonl").read_text().splitlines()]
    r = next(x for x in recs if x["sent"] and "obs_raw" in x)
    assert np.allclose(cal.state_to_model(r["obs_raw"]), r["obs"], atol=1e-5)
    assert np.allclose(cal.action_to_raw(r["action"])[0], r["action_raw"], atol=1e-5)
    # --from-log: ranges of the raw states, matched to the model-unit ranges the log also holds
    obs = np.array([x["obs"] for x in recs if "obs" in x])
    mr = [f"{i}:{obs[:, i].min()},{obs[:, i].max()}" for i in range(4)]
    out = tmp_path / "from_log.json"
    _invoke(["calibrate", "io", "--from-log", str(tmp_path / "calibrated.jsonl"), "--out", str(out),
             *[a for m in mr for a in ("--model-range", m)]])
    fl = RobotCalibration.load(out)
    assert _rel_err(fl.state_scale, cal.state_scale).max() < 0.01 and fl.method == "log"
    assert _rel_err(fl.state_offset, cal.state_offset).max() < 0.01


def test_calibrate_io_waits_for_enter_on_a_terminal(tmp_path, cli_env):
    """On a terminal nothing is recorded before Enter; Ctrl-D (EOF) at the prompt writes nothing."""
    import os

    for answer, want_file in ((b"\n", True), (b"\x04", False)):
        out = tmp_path / f"robot-{want_file}.json"
        master, slave = os.openpty()
        p = subprocess.Popen(kdp_cmd("calibrate", "io", "--port", "sim://integrator?rate=100", "--seconds", "0.5",
                                     "--out", str(out)), env=cli_env, stdin=slave, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        os.close(slave)
        seen = b""
        while b"Press Enter" not in seen:  # the prompt has no newline: read raw bytes
            chunk = os.read(p.stderr.fileno(), 4096)
            assert chunk, "the command ended before prompting"
            seen += chunk
        assert not out.exists() and p.poll() is None  # waiting, nothing written
        os.write(master, answer)
        stdout, stderr = p.communicate(timeout=30)
        os.close(master)
        stderr = stderr.decode()
        assert out.exists() == want_file, stderr
        assert p.returncode == (0 if want_file else 130), stderr
        if not want_file:
            assert "nothing written" in stderr
