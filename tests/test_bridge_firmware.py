"""The C reference firmware: unit tests, byte-exact interop with protocol.py, the virtual
controller over a real pty driven by the Python host, and the Arduino sketch on a host shim.

Timing is checked on the firmware's own clock (the ``timestamp_us`` of its frames: it stamps every frame of
a loop pass with that pass's time, after its watchdog check) and counters, and the host waits for what
happened (a number of STATEs, a flag, a counter) with a generous deadline, so the machine's load does not
decide the outcome."""

from __future__ import annotations

import random
import subprocess
import time

import pytest

from firmware_bridge import protocol as P
from firmware_bridge.cbuild import CVirtualController, build_firmware, toolchain_missing
from firmware_bridge.link import SerialLink

pytestmark = pytest.mark.skipif(toolchain_missing() is not None, reason=f"C toolchain: {toolchain_missing()}")

RATE = 100.0
PERIOD = 1.0 / RATE
DEADLINE_S = 30.0  # generous: every wait below returns as soon as its condition holds
ACTIVE, TRIPPED, STOPPED = P.StateFlags.ACTIVE, P.StateFlags.WATCHDOG_TRIPPED, P.StateFlags.STOPPED


def _us(a: int, b: int) -> int:
    """Microseconds from firmware timestamp ``b`` to ``a`` (the u32 clock wraps)."""
    return (a - b) % (1 << 32)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return build_firmware(tmp_path_factory.mktemp("fw"), targets=("all",))


@pytest.fixture
def vc(build):
    c = CVirtualController(build / "virtual_controller", "--rate", str(RATE), "--max-valid-ms", "500")
    yield c
    c.close()


@pytest.fixture
def link(vc):
    lk = SerialLink(vc.port)
    lk.hello(DEADLINE_S)
    yield lk
    lk.close()


def test_c_unit_tests_pass(build):
    proc = subprocess.run([str(build / "test_proto")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    passed, failed = [int(w) for w in proc.stdout.split() if w.isdigit()][:2]
    assert passed >= 70 and failed == 0


def _python_vectors() -> dict[str, P.Message]:
    """The messages test_proto.c --vectors builds (same seqs: one writer, in order)."""
    state64 = tuple((i + 1) * 1.25 for i in range(64))
    return {
        "hello_req": P.HelloReq(0xA1B2C3D4, seq=0, timestamp_us=1000),
        "hello": P.Hello(0xA1B2C3D4, 0x01020304, 0x000102, 0xFEEDFACE, 20000, 4, (-1.0, -2.5), (1.0, 2.5), 500,
                         "kdp-vc", seq=1, timestamp_us=2000),
        "state": P.State(0x01020304, int(P.StateFlags.WATCHDOG_TRIPPED | P.StateFlags.SATURATED), 17,
                         (1.5, -0.25, 0.0, 1e6), seq=2, timestamp_us=0xFFFFFFFF),
        "state64": P.State(0x01020304, int(P.StateFlags.WATCHDOG_TRIPPED | P.StateFlags.SATURATED), 17, state64,
                           seq=3, timestamp_us=3000),
        "action": P.Action(2, 100, (0.5, -0.75), seq=4, timestamp_us=4000),
        "heartbeat": P.Heartbeat(7, 8, True, seq=5, timestamp_us=5000),
        "fault": P.Fault(P.FaultCode.WATCHDOG, "expired", seq=6, timestamp_us=6000),
        "estop": P.Estop(P.FaultCode.OVERCURRENT, "", seq=7, timestamp_us=7000),
        "stop": P.Stop(6, seq=8, timestamp_us=8000),
        "reset": P.ResetNotice(0x0BADF00D, P.ResetCause.WATCHDOG, seq=9, timestamp_us=9000),
    }


def test_c_and_python_encode_identical_bytes(build):
    out = subprocess.run([str(build / "test_proto"), "--vectors"], capture_output=True, text=True, timeout=30).stdout
    c_frames = dict(line.split() for line in out.strip().splitlines())
    py = _python_vectors()
    assert set(c_frames) == set(py)
    for name, msg in py.items():
        assert bytes.fromhex(c_frames[name]) == P.encode(msg), name
        assert P.decode(bytes.fromhex(c_frames[name])) == msg


def test_c_parser_agrees_with_python_decoder_on_corrupted_streams(build):
    rng = random.Random(1234)
    msgs = list(_python_vectors().values())
    stream = bytearray()
    for i in range(400):
        wire = bytearray(P.encode(msgs[i % len(msgs)]))
        op = rng.random()
        if op < 0.15:
            wire[rng.randrange(len(wire) - 1)] ^= 1 << rng.randrange(8)
        elif op < 0.25:
            wire = wire[: rng.randrange(1, len(wire))]
        elif op < 0.30:
            wire = bytearray(rng.getrandbits(8) for _ in range(rng.randrange(1, 400))) + wire
        elif op < 0.33:
            wire[-1] = 0x55  # lost delimiter
        stream += wire
    proc = subprocess.run([str(build / "test_proto"), "--parse"], input=stream.hex(), capture_output=True, text=True,
                          timeout=60)
    lines = proc.stdout.strip().splitlines()
    c_frames = [tuple(ln.split()) for ln in lines[:-1]]
    c_stats = dict(kv.split("=") for kv in lines[-1].split()[1:])
    dec = P.FrameDecoder()
    py = dec.feed(bytes(stream))
    py_frames = [(str(int(m.TYPE)), str(m.seq), str(m.timestamp_us), m.payload().hex()) for m in py]
    assert c_frames == py_frames
    s = dec.stats
    assert int(c_stats["ok"]) == s.frames_ok > 200
    assert int(c_stats["crc"]) == s.crc_errors and int(c_stats["malformed"]) == s.malformed
    assert int(c_stats["oversize"]) == s.oversize and int(c_stats["resyncs"]) == s.resyncs > 20


def test_hello_and_state_stream(vc, link):
    caps = link.caps
    assert (caps.state_dim, caps.action_dim) == (4, 2)
    assert caps.fw_name.startswith("kdp-virtual-controller") and caps.max_valid_for_ms == 500
    assert caps.state_period_us == 10_000
    states = _read_until(link, lambda seen: len(seen) >= 40)
    assert all(b.seq > a.seq for a, b in zip(states, states[1:], strict=False))
    assert link.stats["rx_crc_errors"] == 0 and link.stats["frames_lost"] == 0
    # The rate on the firmware's clock. A quiet stream is STATEs only, so a seq gap counts ticks. Ticks are
    # due a period apart (a tick that ran more than two periods late moves the next one to a period after
    # it), run when due or later, and stamp their STATE with that time: n ticks on span at least (n - 2)
    # periods of its clock, however late a loaded machine runs them (it never streams faster than it says).
    stamps = [s.timestamp_us for s in states]
    assert all(0 < _us(b, a) < 1 << 31 for a, b in zip(stamps, stamps[1:], strict=False))
    for i in (0, len(states) // 2):
        ticks = states[-1].seq - states[i].seq
        assert _us(stamps[-1], stamps[i]) >= (ticks - 2) * caps.state_period_us, (i, ticks)


def _read_until(link, done, act=None):
    """Read STATEs until ``done(states read so far)`` (``act(state)`` on each); returns them, in order."""
    seen, t_end = [], time.monotonic() + DEADLINE_S
    while not (seen and done(seen)):
        assert time.monotonic() < t_end, f"condition not met in {DEADLINE_S} s ({len(seen)} STATEs read)"
        s = link.read_state(0.05)
        if s is not None:
            seen.append(s)
            if act is not None:
                act(s)
    return seen


def _drive(link, states, action, valid_for_ms=100, seen=None):
    """Act on ``states`` STATEs (action tagged with each); returns the last one (``seen``: collects them all)."""
    got = _read_until(link, lambda ss: len(ss) >= states, lambda s: link.send_action(action, valid_for_ms, s.seq))
    if seen is not None:
        seen += got
    return got[-1]


def test_action_applied_in_commanded_direction(vc, link):
    s = _drive(link, 40, (1.0, -0.5), valid_for_ms=500)
    x, y, vx, vy = s.values
    assert vx > 0.2 and vy < -0.1 and x > 0 and y < 0 and abs(vx) > abs(vy)
    assert s.has(ACTIVE) and s.last_action_seq > 0
    s2 = _drive(link, 10, (5.0, 0.0), valid_for_ms=500)  # out of limits: host clips (and the controller would too)
    assert link.stats["actions_clipped"] >= 1 and s2.values[2] > s.values[2]


def test_watchdog_trips_after_host_goes_quiet(vc, link):
    seen: list = []
    last = _drive(link, 20, (1.0, 1.0), valid_for_ms=500, seen=seen)
    assert link.send_action((1.0, 1.0), 100, last.seq)  # the last ACTION, valid 100 ms; then the host goes quiet
    seen += _read_until(link, lambda ss: ss[-1].has(TRIPPED))
    trip_state = seen[-1]
    expired = trip_state.last_action_seq  # the ACTION that expired: the last one the firmware accepted
    before = [s for s in seen if s.last_action_seq != expired]
    after = [s for s in seen if s.last_action_seq == expired]
    # On the firmware's clock it accepted that ACTION after the last STATE answering an older one (ts_lo; the
    # host answered ``last``, so there is one) and no later than the first STATE answering it (ts_hi). It
    # checks its watchdog before the STATE of the same pass and stamps both with that pass's time, so a STATE
    # stamped before the deadline (acceptance + valid_for) says ACTIVE and one stamped from it on says
    # WATCHDOG_TRIPPED, whenever a loaded machine let the passes run.
    ts_lo, ts_hi, valid_us = before[-1].timestamp_us, after[0].timestamp_us, 100_000
    assert 0 < _us(ts_hi, ts_lo) < 1 << 31
    for s in after:
        assert s.has(ACTIVE) != s.has(TRIPPED)
        if s.has(ACTIVE):
            assert _us(s.timestamp_us, ts_hi) < valid_us  # not tripped late
        else:
            assert _us(s.timestamp_us, ts_lo) >= valid_us  # not tripped early
    link.poll()
    (fault,) = [f for f in link.faults if f.code == P.FaultCode.WATCHDOG]
    assert _us(fault.timestamp_us, ts_lo) >= valid_us  # the trip itself, stamped on the firmware's clock
    assert _us(trip_state.timestamp_us, fault.timestamp_us) < 1 << 31  # ... before the STATE that reported it
    later = [link.read_state(DEADLINE_S) for _ in range(3)][-1]
    assert later.values[2:] == trip_state.values[2:]  # velocity frozen: outputs are zero


def test_stop_zeroes_outputs(vc, link):
    _drive(link, 20, (1.0, 1.0), valid_for_ms=400)
    assert link.send_stop()
    s1 = _read_until(link, lambda ss: ss[-1].has(STOPPED))[-1]
    s2 = [link.read_state(DEADLINE_S) for _ in range(3)][-1]
    assert s1.has(STOPPED) and not s1.has(ACTIVE)
    assert s2.values[2:] == s1.values[2:] and s1.values[2] > 0
    vc.close()
    assert vc.stats()["stops"] == 1 and vc.stats()["actions_accepted"] >= 10


def test_dims_scale_offset_options(build):
    with CVirtualController(build / "virtual_controller", "--rate", "200", "--state-dim", "7", "--action-dim", "3",
                            "--state-offset", "10", "--action-scale", "2", "--action-offset", "1") as c:
        with SerialLink(c.port) as lk:
            caps = lk.hello(DEADLINE_S)
            assert (caps.state_dim, caps.action_dim) == (7, 3)
            assert caps.action_min == (-1.0,) * 3 and caps.action_max == (3.0,) * 3
            s = lk.read_state(DEADLINE_S)
            assert s.values == (10.0,) * 7  # x = v = 0 plus the offset; entries past 2*action_dim are 0 + offset


def test_arduino_sketch_on_host_shim(build):
    """The sketch (compiled against a tiny Arduino.h shim) answers HELLO, drives PWM from an ACTION
    and its watchdog zeroes the PWM (asserted inside sketch_host); its bytes decode in Python."""
    build_firmware(build, targets=("sketch-check",))
    proc = subprocess.run([str(build / "sketch_host")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "0 failed" in proc.stderr, proc.stderr
    dec = P.FrameDecoder()
    msgs = dec.feed(bytes.fromhex(proc.stdout.strip()))
    assert dec.stats.rejected == 0
    kinds = [type(m).__name__ for m in msgs]
    assert kinds[:2] == ["ResetNotice", "Hello"] and kinds.count("State") >= 28
    states = [m for m in msgs if isinstance(m, P.State)]
    assert states[-1].has(P.StateFlags.WATCHDOG_TRIPPED)
    assert any(s.has(P.StateFlags.ACTIVE) for s in states)


def _drive_any(link, states, action=(0.1, 0.1), valid_for_ms=30):
    """Like _drive but acts on every STATE the link returns, finite or not (a careless host)."""
    _read_until(link, lambda ss: len(ss) >= states, lambda s: link.send_action(action, valid_for_ms, s.seq))


def _poll(pred, timeout_s=DEADLINE_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    return None


def test_fault_commands_and_the_stale_action_check(build, tmp_path):
    """--commands: every fault is answered once in effect; the controller's own check counts an ACTION
    tagged with an out-of-range STATE (invalid_accepted) and one tagged with a STATE older than the
    --stale-ms bound (stale_accepted); reopen moves --link to a new pty and the link reconnects."""
    link_path = str(tmp_path / "tty")
    with CVirtualController(build / "virtual_controller", "--rate", "100", "--link", link_path, "--stale-ms", "50",
                            commands=True) as c:
        assert c.port == link_path
        with SerialLink(c.port) as lk:
            lk.hello(DEADLINE_S)
            _drive_any(lk, 20)
            base = c.live_stats()
            assert base["actions_accepted"] >= 5 and base["stale_accepted"] == 0 and base["invalid_accepted"] == 0
            assert c.command("range 20") == "OK range 20"
            _drive_any(lk, 40)  # a host that acts on the 1e30 STATEs (the run loop's --obs-abs-max refuses them)
            assert _poll(lambda: c.live_stats()["bad_states"] >= 20)
            assert c.live_stats()["invalid_accepted"] >= 1
            # an ACTION answering a STATE that 15 newer ones followed (its ticks are due a period apart, so
            # >= 13 periods on the firmware's clock even if that STATE's tick ran late; > --stale-ms 50):
            # accepted by the protocol (nothing newer was acted on), counted stale by the check
            s = lk.read_state(DEADLINE_S)
            n0 = lk.stats["states_received"]
            assert _poll(lambda: lk.poll() or lk.stats["states_received"] - n0 >= 15)  # taken in, not returned
            lk.send_action([0.1, 0.1], 30, s.seq)
            assert _poll(lambda: c.live_stats()["stale_accepted"] >= 1)
            assert c.live_stats()["max_age_us"] >= 13 * 10_000  # the age the firmware measured
            before = c.live_stats()
            assert c.command("garbage 200") == "OK garbage 200"
            assert c.command("bitflip 4") == "OK bitflip 4"
            assert c.command("stall 100") == "OK stall 100"
            assert c.command("reboot").startswith("OK reboot ")
            _drive_any(lk, 50)  # STATEs of the new boot only count once the link has its HELLO
            assert lk.stats["controller_resets"] == 1 and lk.stats["rx_crc_errors"] + lk.stats["rx_malformed"] >= 1
            reply = c.command("reopen 200")
            assert reply.startswith("OK reopen 1 /dev/pts/")
            _drive_any(lk, 50)
            assert lk.stats["reconnects"] >= 1
            after = c.live_stats()
            assert after["actions_accepted"] > before["actions_accepted"] + 20 and after["reboots"] == 1
            assert after["states_stalled"] >= 5 and after["garbage_bytes"] == 200 and after["reopens"] == 1
            assert any(e["event"] == "recovered" and e["cmd"] == "reopen" for e in c.events)
            with pytest.raises(RuntimeError):
                c.command("explode")
    assert c.stats()["reboots"] == 1 and c.stats()["actions_accepted"] >= after["actions_accepted"]
