"""SerialLink against loop://, socket:// and the Python virtual robot on a real pty, with faults.

Nothing here depends on how fast the machine is: the host waits for what happened (a number of STATEs, a
flag, a counter of the virtual robot) with a generous deadline that it leaves as soon as the condition
holds, and timing claims are checked on the controller's own records (its tick log, the times it received
an ACTION and its watchdog tripped), not on when the host happened to look."""

from __future__ import annotations

import errno
import grp
import math
import os
import socket
import threading
import time

import numpy as np
import pytest
import serial

from firmware_bridge import errors as E
from firmware_bridge import protocol as P
from firmware_bridge.link import SerialLink
from firmware_bridge.plants import IntegratorPlant
from firmware_bridge.seqnum import seq_newer
from firmware_bridge.virtual_robot import VirtualRobot, start_virtual_robot

RATE = 100.0
PERIOD = 1.0 / RATE
DEADLINE_S = 30.0  # generous: every wait below returns as soon as its condition holds
ACTIVE, TRIPPED, STOPPED = P.StateFlags.ACTIVE, P.StateFlags.WATCHDOG_TRIPPED, P.StateFlags.STOPPED


@pytest.fixture
def robot():
    r = start_virtual_robot(IntegratorPlant(), rate_hz=RATE)
    yield r
    r.close()


@pytest.fixture
def link(robot):
    lk = SerialLink(robot.port)
    lk.hello(2.0)
    yield lk
    lk.close()


def drive(link: SerialLink, states: int, action=(0.5, -0.5), valid_for_ms: int = 100, during=None):
    """Host control loop until ``states`` STATEs were acted on: newest state -> action tagged with its seq.
    Returns the states seen."""
    seen = []
    t_end = time.monotonic() + DEADLINE_S
    while len(seen) < states:
        assert time.monotonic() < t_end, f"only {len(seen)} of {states} STATEs in {DEADLINE_S} s"
        s = link.read_state(0.05)
        if during is not None:
            during(s)
        if s is None:
            continue
        seen.append(s)
        link.send_action(action, valid_for_ms, s.seq)
    return seen


def read_until(link: SerialLink, pred) -> list[P.State]:
    """Read STATEs (acting on none) until ``pred(state)``; returns those read, the matching one last."""
    seen = []
    t_end = time.monotonic() + DEADLINE_S
    while not seen or not pred(seen[-1]):
        assert time.monotonic() < t_end, f"no matching STATE in {DEADLINE_S} s (read {len(seen)})"
        s = link.read_state(0.05)
        if s is not None:
            seen.append(s)
    return seen


def accepted(robot: VirtualRobot) -> int:
    return robot.stats.get("actions_accepted", 0)


def assert_nothing_stale(robot: VirtualRobot, max_future: int = 0) -> None:
    """The controller never received an ACTION planned from an older STATE than a previous one."""
    log = robot.action_log
    stale = [a for a in log if not a.accepted and a.reason.startswith("stale")]
    assert not stale, f"host sent stale actions: {stale[:3]}"
    future = [a for a in log if not a.accepted and a.reason.startswith("future")]
    assert len(future) <= max_future
    accepted = [a for a in log if a.accepted]
    for prev, cur in zip(accepted, accepted[1:], strict=False):
        assert not seq_newer(prev.state_seq, cur.state_seq)


# ------------------------------------------------------------------ basic session over a pty


def test_hello_and_state_stream(robot, link):
    caps = link.caps
    assert (caps.state_dim, caps.action_dim) == (4, 2)
    assert caps.state_period_us == 10_000 and caps.boot_id == robot.boot_id
    assert caps.action_min == (-1.0, -1.0) and caps.action_max == (1.0, 1.0)
    seqs = [s.seq for s in drive(link, 30, action=(0.0, 0.0))]
    assert all(seq_newer(b, a) for a, b in zip(seqs, seqs[1:], strict=False))
    assert link.stats["rx_crc_errors"] == 0 and link.stats["rx_malformed"] == 0 and link.stats["frames_lost"] == 0
    # the controller's own schedule: one STATE per tick, none run before it was due, each due one period after
    # the previous one unless that one ran more than two periods late (then one period after it ran: a
    # controller that fell behind skips ticks rather than bunching them); every STATE the host got was one
    log = robot.tick_log
    sent = {t.seq for t in log}
    assert set(seqs) <= sent and len(sent) == len(log) >= 30
    assert all(t.time >= t.due for t in log)
    for a, b in zip(log, log[1:], strict=False):
        assert b.tick == a.tick + 1
        late = a.time - a.due > 2 * PERIOD
        assert b.due == pytest.approx(a.time + PERIOD if late else a.due + PERIOD, abs=1e-9)


def test_action_moves_plant_in_commanded_direction(robot, link):
    states = drive(link, 40, action=(1.0, -1.0), valid_for_ms=500)
    x, y, vx, vy = states[-1].values
    assert vx > 0.2 and vy < -0.2 and x > 0 and y < 0
    assert list(robot.outputs) == [1.0, -1.0]
    assert states[-1].has(P.StateFlags.ACTIVE)
    assert states[-1].last_action_seq != 0
    assert_nothing_stale(robot)


def test_watchdog_trips_within_valid_for(robot, link):
    s = link.read_state(DEADLINE_S)
    assert link.send_action((1.0, 1.0), 100, s.seq)
    seen = read_until(link, lambda st: st.has(TRIPPED))  # the host sees the trip
    (acc,) = [a for a in robot.action_log if a.accepted]
    (trip,) = robot.watchdog_log
    # on the controller's clock: the deadline is its receipt + valid_for, and the watchdog never trips early
    assert trip.action_seq == acc.seq and trip.deadline == pytest.approx(acc.rx_time + 0.1, abs=1e-9)
    assert trip.time >= trip.deadline
    # every tick before the deadline applied the action; every tick from it on had zero outputs and said so
    ticks = [t for t in robot.tick_log if t.time >= acc.rx_time]
    active = [t for t in ticks if t.time < trip.deadline]
    assert active and all(t.flags & ACTIVE and not t.flags & TRIPPED for t in active)
    assert all(t.flags & TRIPPED and not t.flags & ACTIVE for t in ticks if t.time >= trip.deadline)
    assert len(active) <= 0.1 / PERIOD + 3  # ticks are due >= a period apart: valid_for (+ catching up)
    by_seq = {t.seq: t for t in robot.tick_log}
    assert all(st.flags == by_seq[st.seq].flags for st in seen if st.seq in by_seq)  # what the host read
    assert list(robot.outputs) == [0.0, 0.0]
    link.poll()
    assert any(f.code == P.FaultCode.WATCHDOG for f in link.faults)
    assert link.stats["watchdog_trips_seen"] == 1


def test_stop_zeroes_outputs_and_blocks_older_actions(robot, link):
    drive(link, 20, action=(1.0, 1.0), valid_for_ms=500)
    last = link.latest_state
    assert link.send_stop()
    assert robot.wait_for(lambda: robot.stats.get("stops", 0) == 1)
    assert list(robot.outputs) == [0.0, 0.0]
    s1 = read_until(link, lambda st: st.has(STOPPED))[-1]
    s2 = link.read_state(DEADLINE_S)
    assert s2.has(STOPPED) and not s2.has(ACTIVE)
    assert s1.values[2:] == s2.values[2:]  # velocity constant: outputs really zero
    # the controller rejects an ACTION planned before the STOP even if the host sends one
    n = len(robot.action_log)
    link._returned = last  # simulate a buggy host replaying an old plan
    link.send_action((1.0, 1.0), 500, last.seq)
    assert robot.wait_for(lambda: len(robot.action_log) > n)
    assert robot.action_log[-1].reason == "before STOP" and list(robot.outputs) == [0.0, 0.0]
    s3 = link.read_state(DEADLINE_S)
    assert link.send_action((1.0, 1.0), 500, s3.seq)
    assert robot.wait_for(lambda: len(robot.action_log) > n + 1)
    assert robot.action_log[-1].accepted and list(robot.outputs) == [1.0, 1.0]


def test_send_action_refusals(robot, link):
    s_old = link.read_state(DEADLINE_S)
    s_new = link.read_state(DEADLINE_S)
    assert seq_newer(s_new.seq, s_old.seq)
    assert not link.send_action((0.1, 0.1), 50, s_old.seq)
    assert link.stats["actions_refused_stale"] == 1
    assert not link.send_action((math.nan, 0.1), 50, s_new.seq)
    assert link.stats["actions_refused_nonfinite"] == 1
    with pytest.raises(ValueError):
        link.send_action((0.1,), 50, s_new.seq)
    with pytest.raises(ValueError):
        link.send_action((0.1, 0.1), 0, s_new.seq)
    assert link.send_action(np.array([5.0, -5.0]), 500, s_new.seq)
    assert link.stats["actions_clipped"] == 1
    assert robot.wait_for(lambda: accepted(robot) == 1)
    assert list(robot.outputs) == [1.0, -1.0]
    assert robot.stats.get("actions_rejected", 0) == 0


def test_newest_state_wins(robot, link):
    first = link.read_state(DEADLINE_S)
    st0 = link.stats
    # the host looks away while the controller sends 20 more STATEs, then takes them in without returning any
    (tick0,) = [t.tick for t in robot.tick_log if t.seq == first.seq]
    assert robot.wait_for(lambda: robot.ticks > tick0 + 20)
    t_end = time.monotonic() + DEADLINE_S
    while link.stats["states_received"] - st0["states_received"] < 20:
        assert time.monotonic() < t_end
        link.poll()
        time.sleep(0.005)
    newest = link.read_state(0.0)
    received = link.stats["states_received"] - st0["states_received"]
    assert newest is not None and newest.seq - first.seq >= 20
    assert link.stats["states_dropped_stale"] - st0["states_dropped_stale"] == received - 1  # all but the newest
    # nothing old was returned: the link got exactly the STATEs the controller sent up to the one returned
    sent = [t.seq for t in robot.tick_log if seq_newer(t.seq, first.seq) and not seq_newer(t.seq, newest.seq)]
    assert len(sent) == received
    nxt = link.read_state(DEADLINE_S)
    assert seq_newer(nxt.seq, newest.seq)


def test_ping_and_success_flag():
    with start_virtual_robot(IntegratorPlant(goal=np.zeros(2)), rate_hz=RATE) as r, SerialLink(r.port) as lk:
        lk.hello(DEADLINE_S)
        rtt = lk.ping(DEADLINE_S)
        assert rtt is not None and rtt > 0 and r.stats["heartbeats"] == 1  # answered by the controller
        assert lk.read_state(DEADLINE_S).has(P.StateFlags.SUCCESS)
        assert r.plant_info() == {"success": True}


# ------------------------------------------------------------------ injected faults


FAULTS = {
    "garbage": (lambda r: [r.inject_garbage(200) for _ in range(3)], lambda st: st["rx_resyncs"] >= 1),
    "bitflip": (lambda r: r.corrupt_next_states(5, "bitflip"), lambda st: st["rx_crc_errors"] + st["rx_malformed"] >= 4),
    "truncate": (lambda r: r.corrupt_next_states(5, "truncate"), lambda st: st["rx_crc_errors"] + st["rx_malformed"] >= 4),
    # consecutive frames without delimiter merge into one bad segment: 1 error, 6 frames lost
    "drop_delimiter": (lambda r: r.corrupt_next_states(5, "drop_delimiter"),
                       lambda st: st["rx_malformed"] + st["rx_crc_errors"] + st["rx_oversize"] >= 1 and st["frames_lost"] >= 5),
    "duplicate": (lambda r: r.corrupt_next_states(5, "duplicate"), lambda st: st["states_duplicate"] >= 3),
    "out_of_order": (lambda r: r.replay_old_states(5, age=4), lambda st: st["states_out_of_order"] >= 3),
    "nan": (lambda r: r.nan_states(10), lambda st: st["states_nonfinite"] >= 10),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_injection_no_crash_nothing_stale(robot, link, fault):
    inject, check = FAULTS[fault]
    drive(link, 10)
    inject(robot)
    nan_seqs = []
    drive(link, 40, during=lambda s: s is not None and not s.finite and nan_seqs.append(s.seq))
    stats = link.stats
    assert check(stats), {k: v for k, v in stats.items() if v}
    assert_nothing_stale(robot)
    # the link recovered: fresh states keep coming and actions keep being accepted
    before = accepted(robot)
    drive(link, 15)
    assert robot.wait_for(lambda: accepted(robot) > before)
    if fault == "nan":
        assert nan_seqs and stats["actions_refused_invalid_state"] >= 1
        assert not {a.state_seq for a in robot.action_log} & set(nan_seqs)


def test_controller_reboot_detected_and_rehello(robot, link):
    drive(link, 15)
    old_boot = robot.boot_id
    robot.reboot()
    drive(link, 50)  # STATEs of the new boot only count once the link has its HELLO
    assert robot.boot_id != old_boot
    st = link.stats
    assert st["controller_resets"] == 1
    assert link.caps.boot_id == robot.boot_id
    assert st["boot_id"] == robot.boot_id
    assert_nothing_stale(robot, max_future=1)  # at most the one action in flight at the reboot
    assert robot.wait_for(lambda: accepted(robot) > 10)  # new boot's log only


def test_pty_disappears_and_comes_back(robot, link):
    drive(link, 15)
    robot.reopen_pty(down_s=0.3)
    drive(link, 50)
    st = link.stats
    assert st["disconnects"] >= 1 and st["reconnects"] >= 1
    assert robot.stats["pty_reopens"] == 1
    before = accepted(robot)
    drive(link, 20)
    assert robot.wait_for(lambda: accepted(robot) > before)
    assert_nothing_stale(robot)


def test_injected_latency_is_visible():
    with start_virtual_robot(IntegratorPlant(), rate_hz=200, latency_ms=40) as r, SerialLink(r.port) as lk:
        lk.hello(DEADLINE_S)
        s = lk.read_state(DEADLINE_S)
        t_sent = time.monotonic()  # the robot runs in this process: its clock is this one
        assert lk.send_action((0.5, 0.5), 500, s.seq)
        read_until(lk, lambda st: st.has(ACTIVE))
        applied_after = time.monotonic() - t_sent
        (acc,) = [a for a in r.action_log if a.accepted]
        # the controller took the ACTION in no sooner than 40 ms after it was written (a lower bound: a
        # loaded machine only adds to it), and the first STATE saying ACTIVE came from a tick after that
        assert acc.rx_time - t_sent >= 0.040 - 1e-9 and applied_after >= 0.040
        first_active = next(t for t in r.tick_log if t.flags & ACTIVE)
        assert first_active.time >= acc.rx_time and first_active.last_action_seq == acc.seq


def test_raw_units_scale_and_offset():
    r = start_virtual_robot(IntegratorPlant(), rate_hz=RATE, state_scale=2.0, state_offset=[1.0, 2.0, 3.0, 4.0],
                            action_scale=0.5, action_offset=0.1)
    try:
        with SerialLink(r.port) as lk:
            caps = lk.hello(DEADLINE_S)
            assert caps.action_min == pytest.approx((-0.4, -0.4)) and caps.action_max == pytest.approx((0.6, 0.6))
            s = lk.read_state(DEADLINE_S)
            assert s.values == pytest.approx((1.0, 2.0, 3.0, 4.0))
            drive(lk, 30, action=(0.6, 0.1), valid_for_ms=500)  # raw 0.6 -> +1 physical, raw 0.1 -> 0
            vx = (lk.latest_state.values[2] - 3.0) / 2.0
            vy = (lk.latest_state.values[3] - 4.0) / 2.0
            assert vx > 0.15 and vy == pytest.approx(0.0, abs=1e-6)
    finally:
        r.close()


# ------------------------------------------------------------------ clear errors


def test_port_not_found_lists_ports():
    with pytest.raises(E.PortNotFoundError) as ei:
        SerialLink("/dev/ttyDOES_NOT_EXIST")
    assert "fix:" in str(ei.value) and ("available ports" in ei.value.fix or "no serial ports" in ei.value.fix)


def test_permission_denied_names_group(tmp_path):
    dev = tmp_path / "ttyFAKE"
    dev.write_bytes(b"")
    try:  # make it look like a Debian serial device when we can
        os.chown(dev, -1, grp.getgrnam("dialout").gr_gid)
    except (KeyError, PermissionError):
        pass
    group = grp.getgrgid(os.stat(dev).st_gid).gr_name

    def denied(port, **kw):
        raise serial.SerialException(errno.EACCES, f"could not open port {port}: [Errno 13] Permission denied")

    with pytest.raises(E.PortPermissionError) as ei:
        SerialLink(str(dev), serial_factory=denied)
    assert f"usermod -aG {group}" in ei.value.fix and "dialout" in ei.value.fix and "uucp" in ei.value.fix


def test_busy_port():
    def busy(port, **kw):
        raise serial.SerialException(errno.EBUSY, f"could not open port {port}: [Errno 16] Device or resource busy")

    with pytest.raises(E.PortBusyError) as ei:
        SerialLink("/dev/ttyFAKE0", serial_factory=busy)
    assert "fuser" in ei.value.fix


def test_silent_controller_no_response(robot):
    robot.mute(DEADLINE_S)
    assert robot.wait_for(lambda: robot.stats.get("tx_muted", 0) >= 3)  # muted, and what it sent before is written
    with SerialLink(robot.port) as lk, pytest.raises(E.NoResponseError):
        lk.hello(0.3)


def test_noise_looks_like_wrong_baud(robot):
    robot.noise(DEADLINE_S)
    assert robot.wait_for(lambda: robot.stats.get("tx_noise", 0) >= 3)  # noise only, and what it sent before is written
    with SerialLink(robot.port) as lk, pytest.raises(E.NoValidFramesError) as ei:
        lk.hello(1.0)
    assert "wrong baud? expected 921600" in str(ei.value)


def test_read_state_raises_when_frames_stop(robot):
    with SerialLink(robot.port, no_frames_timeout_s=0.3) as lk:
        lk.hello(DEADLINE_S)
        assert lk.read_state(DEADLINE_S) is not None
        robot.mute(DEADLINE_S)
        t_end = time.monotonic() + DEADLINE_S
        with pytest.raises(E.NoResponseError):
            while time.monotonic() < t_end:
                lk.read_state(0.05)


def test_link_gives_up_after_reconnect_timeout(robot):
    with SerialLink(robot.port, reconnect_timeout_s=0.3) as lk:
        lk.hello(DEADLINE_S)
        robot.close()  # the port vanishes for good
        t_end = time.monotonic() + DEADLINE_S
        with pytest.raises(E.LinkDisconnectedError):
            while time.monotonic() < t_end:
                lk.read_state(0.05)
        assert lk.stats["reconnect_failures"] >= 1


# ------------------------------------------------------------------ loop:// and socket://


def _loop_factory(holder):
    def make(url, **kw):
        holder["ser"] = serial.serial_for_url("loop://", **kw)
        return holder["ser"]
    return make


HELLO = P.Hello(0, 77, 1, 2, 10_000, 4, (-1.0, -1.0), (1.0, 1.0), 200, "loop")


def _state(seq, boot=77, values=(0.0, 0.0, 0.0, 0.0)):
    return P.State(boot, 0, 0, values, seq=seq)


def test_loop_url_raw_roundtrip_all_messages():
    ser = serial.serial_for_url("loop://", timeout=0.05)
    msgs = [
        P.HelloReq(1, seq=0), HELLO, _state(2), P.Action(2, 50, (0.25, -0.25), seq=3), P.Heartbeat(1, 2, True, seq=4),
        P.Fault(1, "x", seq=5), P.Estop(2, "y", seq=6), P.Stop(0, seq=7), P.ResetNotice(77, 1, seq=8),
    ]
    ser.write(b"".join(P.encode(m) for m in msgs))
    dec, got = P.FrameDecoder(), []
    while len(got) < len(msgs):
        data = ser.read(max(1, ser.in_waiting))
        assert data, "loop:// delivered fewer bytes than written"
        got += dec.feed(data)
    assert got == msgs


def test_loop_link_ordering_and_dims():
    h: dict = {}
    lk = SerialLink("loop://", serial_factory=_loop_factory(h), stop_on_close=False)
    h["ser"].write(P.encode(HELLO))
    assert lk.hello(1.0).boot_id == 77  # our own HELLO_REQ loops back and is ignored
    h["ser"].write(b"".join(P.encode(_state(s)) for s in (10, 12, 11, 12)))
    assert lk.read_state(0.2).seq == 12
    h["ser"].write(P.encode(_state(13, values=(1.0,) * 5)) + P.encode(_state(9)))
    assert lk.read_state(0.1) is None
    st = lk.stats
    assert st["states_dropped_stale"] == 1 and st["states_out_of_order"] == 2 and st["states_duplicate"] == 1
    assert st["states_bad_dim"] == 1 and st["unexpected_messages"] >= 1
    lk.close()


def test_loop_corrupted_seq_jump_cannot_stall_the_link():
    h: dict = {}
    lk = SerialLink("loop://", serial_factory=_loop_factory(h), stop_on_close=False)
    h["ser"].write(P.encode(HELLO))
    lk.hello(1.0)
    h["ser"].write(P.encode(_state(10)) + P.encode(_state(70_000)))  # 70000: a seq that slipped the CRC
    assert lk.read_state(0.1).seq == 10
    assert lk.read_state(0.05) is None
    h["ser"].write(P.encode(_state(11)))
    assert lk.read_state(0.1).seq == 11  # genuine states are not shadowed by the bogus one
    h["ser"].write(P.encode(_state(500)) + P.encode(_state(501)))  # a real gap (frames lost): confirmed
    assert lk.read_state(0.1).seq == 501
    assert lk.stats["states_seq_jump_held"] == 2
    lk.close()


def test_loop_capabilities_changed_after_reboot():
    h: dict = {}
    lk = SerialLink("loop://", serial_factory=_loop_factory(h), stop_on_close=False)
    h["ser"].write(P.encode(HELLO))
    lk.hello(1.0)
    new = P.Hello(0, 78, 1, 2, 10_000, 6, (-1.0,) * 3, (1.0,) * 3, 200, "other")
    h["ser"].write(P.encode(_state(1, boot=78)) + P.encode(new))
    with pytest.raises(E.CapabilitiesChangedError):
        for _ in range(10):
            lk.read_state(0.05)
    assert lk.stats["controller_resets"] == 1
    lk.close()


def test_loop_states_but_no_hello_answer():
    h: dict = {}
    lk = SerialLink("loop://", serial_factory=_loop_factory(h), stop_on_close=False)
    h["ser"].write(b"".join(P.encode(_state(s)) for s in range(5)))
    with pytest.raises(E.HelloTimeoutError):
        lk.hello(0.3)
    lk.close()


def test_socket_url():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got_req, client_done = threading.Event(), threading.Event()

    def serve():
        conn, _ = srv.accept()
        dec = P.FrameDecoder()
        conn.settimeout(2.0)
        nonce = None
        while nonce is None:
            for m in dec.feed(conn.recv(1024)):
                if isinstance(m, P.HelloReq):
                    nonce = m.nonce
        got_req.set()
        hello = P.Hello(nonce, 5, 1, 2, 10_000, 2, (-1.0,), (1.0,), 100, "sock", seq=0)
        conn.sendall(P.encode(hello) + b"".join(P.encode(P.State(5, 0, 0, (float(i), 0.0), seq=i)) for i in (1, 2, 3)))
        client_done.wait(DEADLINE_S)  # close only once the client has read what it needs
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with SerialLink(f"socket://127.0.0.1:{port}", stop_on_close=False, reconnect=False) as lk:
        caps = lk.hello(DEADLINE_S)
        assert got_req.is_set() and caps.fw_name == "sock" and caps.state_dim == 2
        assert lk.read_state(DEADLINE_S).seq == 3
        client_done.set()
    t.join(DEADLINE_S)
    srv.close()


def test_outputs_off_drive_the_plant_with_its_idle_action():
    """While no ACTION is active, a plant that defines ``idle_action`` (a position servo: hold where you are)
    is stepped with it instead of zeros; once an ACTION is accepted, with the commanded outputs."""

    class HoldPlant(IntegratorPlant):
        def __init__(self):
            super().__init__()
            self.seen: list[list[float]] = []

        def idle_action(self):
            return np.array([0.25, -0.5])

        def step(self, action, dt):
            self.seen.append([float(v) for v in action])
            return super().step(action, dt)

    plant = HoldPlant()
    with start_virtual_robot(plant, rate_hz=RATE) as r, SerialLink(r.port) as lk:
        lk.hello(2.0)
        assert r.wait_for(lambda: len(plant.seen) >= 3, 30.0)
        assert plant.seen[0] == [0.25, -0.5] and plant.seen[2] == [0.25, -0.5]
        s = lk.read_state(5.0)
        assert lk.send_action((1.0, 1.0), 500, s.seq)
        assert r.wait_for(lambda: [1.0, 1.0] in plant.seen, 30.0)
