"""bench/servo_bus.py (issue #26): the bound's byte counts are the encoders' packets, the virtual bus's
opt-in wire-time model delays every reply by at least its wire time (checked on the sim's own records,
not on wall-clock windows), a tiny run of the script writes the fields the README and docs cite, and
the control-rate verdict reads a run's summary and log right."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_bridge import servo_dynamixel as dxl
from firmware_bridge import servo_feetech as ft
from firmware_bridge.servo_bus import ServoBusLink
from firmware_bridge.servo_sim import ServoBusSim

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import servo_bus as bench  # noqa: E402

IDS = [1, 2, 3, 4, 5, 6]


def test_bound_counts_the_encoded_packets():
    """6 motors, positions: Feetech SYNC_READ 14 B, status 8 B each, SYNC_WRITE 26 B; Dynamixel 20 / 15 / 44 B
    (the sizes of the packets the encoders make for the link's registers), 10 bits a byte at 1 Mbaud."""
    goals_ft = {i: ft.to_bytes(2048, 2) for i in IDS}
    goals_dx = {i: dxl.to_bytes(2048, 4) for i in IDS}
    want = {
        "feetech": (len(ft.sync_read(IDS, ft.Reg.PRESENT_POSITION, 2)), len(ft.status(1, 0, bytes(2))),
                    len(ft.sync_write(ft.Reg.GOAL_POSITION, 2, goals_ft))),
        "dynamixel": (len(dxl.sync_read(IDS, dxl.Reg.PRESENT_POSITION, 4)), len(dxl.status(1, 0, bytes(4))),
                      len(dxl.sync_write(dxl.Reg.GOAL_POSITION, 4, goals_dx))),
    }
    assert want == {"feetech": (14, 8, 26), "dynamixel": (20, 15, 44)}
    for fam, (req, st, wr) in want.items():
        b = bench.bound(fam, 6, velocity=False, baud=1_000_000, return_delay_us=500)
        assert (b["bytes"]["request"], b["bytes"]["sync_write"]) == (req, wr)
        assert b["bytes"]["status_each"] == [st] * 6
        assert b["bytes_total"] == req + 6 * st + wr
        assert b["wire_ms"] == pytest.approx(10 * b["bytes_total"] / 1e3)  # 10 us a byte
        assert b["bound_ms"] == pytest.approx(b["wire_ms"] + 3.0)  # + 6 x 500 us
    # velocities: the same SYNC_READ reads 4 (Feetech) / 8 (Dynamixel) bytes per motor
    assert bench.bound("feetech", 6, True)["bytes"]["status_each"][0] == len(ft.status(1, 0, bytes(4))) == 10
    assert bench.bound("dynamixel", 6, True)["bytes"]["status_each"][0] == len(dxl.status(1, 0, bytes(8))) == 19


@pytest.mark.parametrize("family", ["feetech", "dynamixel"])
def test_wire_time_option_delays_each_reply(family):
    baud, rd_us = 1_000_000, 500.0
    with ServoBusSim(family, IDS, wire_baud=baud, return_delay_us=rd_us) as sim:
        link = ServoBusLink(sim.port, family, IDS, baud, reply_timeout_s=0.5, stop_on_close=False)
        with link:
            link.hello()
            for _ in range(3):
                s = link.read_state(0.0)
                assert s is not None
                assert link.send_action(list(s.values), 100, s.seq)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and [r.instruction for r in sim.wire_log][-1:] != ["sync_write"]:
                time.sleep(0.01)  # the sim logs the last SYNC_WRITE when it reads it
        log = list(sim.wire_log)
    byte_s = 10 / baud
    reads = [k for k, r in enumerate(log) if r.instruction == "sync_read"]
    assert len(reads) >= 4  # hello's position read + 3
    for k in reads:
        r = log[k]
        assert len(r.replies) == 6 and [q.servo_id for q in r.replies] == IDS
        assert r.t_request_end >= r.t_read + r.request_bytes * byte_s - 1e-9
        t = r.t_request_end
        for q in r.replies:  # each servo: its return delay, then its packet, after the previous one
            t += rd_us * 1e-6 + q.nbytes * byte_s
            assert q.t_due >= t - 1e-9
            assert q.t_sent >= q.t_due  # never written before its last byte would have arrived
            t = q.t_due
        last = r.replies[-1].t_due - r.t_read
        assert last >= (r.request_bytes + sum(q.nbytes for q in r.replies)) * byte_s + 6 * rd_us * 1e-6 - 1e-9
    for k in reads[1:]:  # a SYNC_WRITE before a read holds the wire: the read goes out after it
        prev = log[k - 1]
        if prev.instruction == "sync_write":
            assert log[k].t_request_end >= prev.t_request_end + log[k].request_bytes * byte_s - 1e-9


def test_wire_time_is_off_by_default_and_checked():
    sim = ServoBusSim("feetech", [1])
    assert sim.wire_baud is None and sim.return_delay_s == 0.0 and not sim.wire_log
    with pytest.raises(ValueError, match="wire_baud"):
        ServoBusSim("feetech", [1], return_delay_us=500)
    with pytest.raises(ValueError, match="wire_baud"):
        ServoBusSim("dynamixel", [1], wire_baud=0)


def test_script_smoke_writes_the_result_fields(tmp_path):
    """Every family, layout and bus model for a few cycles (no control loop: that needs a trained bundle)."""
    out = tmp_path / "servo"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "servo_bus.py"), "--cycles", "20", "--warmup", "5",
                        "--skip-loop", "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads((out / "servo-bus.json").read_text())
    assert res["provenance"]["command"].startswith("python bench/servo_bus.py")
    assert len(res["load_before"]) == 3 and len(res["load_after"]) == 3
    assert [(b["family"], b["velocity"]) for b in res["bounds"]] == [
        ("feetech", False), ("feetech", True), ("dynamixel", False), ("dynamixel", True)]
    assert len(res["cycle"]) == 12 and not res["loop"]
    bounds = {(b["family"], b["velocity"]): b for b in res["bounds"]}
    for c in res["cycle"]:
        assert c["cycle_ms"]["n"] == 20 and c["cycle_ms"]["p50_ms"] <= c["cycle_ms"]["p99_ms"] <= c["cycle_ms"]["max_ms"]
        b = bounds[(c["family"], c["velocity"])]
        if c["mode"] == "pty":
            assert "reply_lateness_ms" not in c["sim"]
            continue
        # every cycle holds one sync read on the modelled wire: its request, 6 replies (and return delays)
        read_ms = 10 * (b["bytes"]["request"] + sum(b["bytes"]["status_each"])) / 1e3
        read_ms += b["return_delay_ms"] if c["mode"] == "wire+rd" else 0.0
        assert c["cycle_ms"]["p50_ms"] >= read_ms - 1e-3
        assert c["sim"]["reply_lateness_ms"]["n"] >= 6 * 25
    md = (out / "servo-bus.md").read_text()
    assert md.startswith("Command: `python bench/servo_bus.py") and "| feetech | pos | 14 / 8 / 26 = 88 | 0.880 |" in md


def _records(periods_ms, misses=0):
    t, out = 100.0, []
    for k, p in enumerate(periods_ms):
        out.append({"cycle": k, "t_tick": t, "deadline_miss": k < misses})
        t += p / 1e3
    return out


def test_loop_verdict_from_summary_and_log():
    summary = {"counts": {"cycles": 101, "deadline_misses": 0, "fallback_actions": 0, "no_obs": 0, "actions_sent": 101},
               "link": {"bus_states_missed": 0}, "plan_ms": {"p50_ms": 1.0, "p99_ms": 1.5, "max_ms": 2.0},
               "jitter_ms": {}, "tick_to_tx_ms": {"p99_ms": 1.6}, "bundle": {"model": "m"}}
    ok = bench.loop_result(summary, _records([10.0] * 101), 101, 100.0)
    assert ok["pass"] and ok["sustained_hz"] == pytest.approx(100.0) and ok["late_periods"] == 0
    slow = bench.loop_result(summary, _records([10.5] * 101), 101, 100.0)  # 95 Hz: below the target rate
    assert not slow["pass"] and slow["sustained_hz"] == pytest.approx(1e3 / 10.5)
    missed = bench.loop_result({**summary, "counts": {**summary["counts"], "deadline_misses": 1}},
                               _records([10.0] * 101), 101, 100.0)
    assert not missed["pass"]
    short = bench.loop_result({**summary, "counts": {**summary["counts"], "cycles": 50}}, _records([10.0] * 50), 101, 100.0)
    assert not short["pass"]
    hiccup = bench.loop_result(summary, _records([10.0] * 50 + [25.0] + [10.0] * 50), 101, 100.0)
    assert hiccup["late_periods"] == 1 and hiccup["period_ms"]["max_ms"] == pytest.approx(25.0)
    cfg = {"rate_hz": 100.0, "loop_cycles": 101}
    rows = [{"family": "feetech", "mode": "wire+rd", "velocity": False, "host_rt": None,
             "cycle_ms": {"p50_ms": 4.0, "p99_ms": 5.0}}]
    v = bench.verdict([{**ok, "family": "feetech", "realtime": None},
                       {**slow, "family": "feetech", "realtime": 50}], rows, cfg)
    assert not v["pass"] and "room for about 200 / 154 Hz" in v["text"]
    assert v["text"].count("FAIL") == 1 and "period mean 10.500 ms" in v["text"]
    assert bench.verdict([{**ok, "family": "feetech", "realtime": None}], rows, cfg)["pass"]
