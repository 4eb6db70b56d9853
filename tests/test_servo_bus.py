"""Servo buses (#26): Feetech / Dynamixel packet layers, the servo-bus link against the virtual bus on a
real pty, and `kdp-edge run --bus` end to end with a fake planner.

Known byte strings:
* Dynamixel Protocol 2.0: the ROBOTIS e-Manual's Protocol 2.0 page examples (PING of ID 1 and its status
  from an XM430-W210 (model 1030), READ of Present Position, WRITE of Goal Position 512, SYNC_READ of
  IDs 1 and 2, SYNC_WRITE of goals 150 / 170).
* Feetech: its SCS protocol is Dynamixel Protocol 1.0's framing, so the Protocol 1.0 manual examples
  (DX/AX series user manual: READ of the temperature of ID 1 and its status, WRITE to ID 0xFE, the
  4-servo SYNC_WRITE at address 0x1E) plus PING of ID 1 (``~(1 + 2 + 1) = 0xFB``).
No timing-dependent assertions: counters are polled with generous deadlines.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest

from firmware_bridge import servo_dynamixel as dxl
from firmware_bridge import servo_feetech as ft
from firmware_bridge.errors import LinkDisconnectedError, LinkError
from firmware_bridge.servo_bus import (
    MotorCalibration,
    ServoBusError,
    ServoBusLink,
    ServoCalibration,
    open_servo_link,
)
from firmware_bridge.servo_sim import DEFAULT_MODEL, ServoBusSim

H = bytes.fromhex


# ---------------------------------------------------------------------------------------------- Dynamixel
DXL_DOC = {  # ROBOTIS e-Manual, Protocol 2.0 examples
    "ping": "FF FF FD 00 01 03 00 01 19 4E",
    "ping_status": "FF FF FD 00 01 07 00 55 00 06 04 26 65 5D",
    "read": "FF FF FD 00 01 07 00 02 84 00 04 00 1D 15",
    "read_status": "FF FF FD 00 01 08 00 55 00 A6 00 00 00 8C C0",
    "write": "FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89",
    "write_status": "FF FF FD 00 01 04 00 55 00 A1 0C",
    "sync_read": "FF FF FD 00 FE 09 00 82 84 00 04 00 01 02 CE FA",
    "sync_read_status_2": "FF FF FD 00 02 08 00 55 00 1F 08 00 00 BA BE",
    "sync_write": "FF FF FD 00 FE 11 00 83 74 00 04 00 01 96 00 00 00 02 AA 00 00 00 82 87",
}


def test_dynamixel_encodes_the_manual_examples():
    assert dxl.ping(1) == H(DXL_DOC["ping"])
    assert dxl.read(1, 132, 4) == H(DXL_DOC["read"])
    assert dxl.write(1, 116, dxl.to_bytes(512, 4)) == H(DXL_DOC["write"])
    assert dxl.sync_read([1, 2], 132, 4) == H(DXL_DOC["sync_read"])
    assert dxl.sync_write(116, 4, {1: dxl.to_bytes(150, 4), 2: dxl.to_bytes(170, 4)}) == H(DXL_DOC["sync_write"])
    assert dxl.status(1, 0, dxl.to_bytes(1030, 2) + b"\x26") == H(DXL_DOC["ping_status"])
    assert dxl.crc16(H(DXL_DOC["ping"])[:-2]) == 0x4E19


def test_dynamixel_decodes_the_manual_status_packets():
    p = dxl.decode(H(DXL_DOC["ping_status"]))
    assert (p.id, p.is_status, p.error, dxl.from_bytes(p.params[:2]), p.params[2]) == (1, True, 0, 1030, 0x26)
    assert dxl.from_bytes(dxl.decode(H(DXL_DOC["read_status"])).params, signed=True) == 166
    assert dxl.from_bytes(dxl.decode(H(DXL_DOC["sync_read_status_2"])).params, signed=True) == 2079
    assert dxl.decode(H(DXL_DOC["write_status"])).params == b""
    q = dxl.decode(H(DXL_DOC["sync_write"]))
    assert (q.id, q.instruction, q.error) == (0xFE, dxl.Inst.SYNC_WRITE, None)


def test_dynamixel_byte_stuffing_round_trip():
    data = b"\xff\xff\xfd\x01"  # the header pattern inside the parameters
    pkt = dxl.write(1, 100, data)
    assert b"\xff\xff\xfd\xfd\x01" in pkt  # stuffed
    assert int.from_bytes(pkt[5:7], "little") == 1 + 2 + 4 + 1 + 2  # LEN counts the stuffed byte
    assert dxl.decode(pkt).params == b"\x64\x00" + data
    assert dxl.unstuff(dxl.stuff(b"\xff\xff\xfd\xff\xff\xfd")) == b"\xff\xff\xfd\xff\xff\xfd"
    with pytest.raises(dxl.PacketError) as e:
        dxl.unstuff(b"\xff\xff\xfd\x01")
    assert e.value.kind == "malformed"


def test_dynamixel_decode_errors():
    good = H(DXL_DOC["ping"])
    with pytest.raises(dxl.PacketError, match="crc"):
        dxl.decode(good[:-1] + b"\x00")
    with pytest.raises(dxl.PacketError, match="length"):
        dxl.decode(good + b"\x00")
    with pytest.raises(dxl.PacketError, match="malformed"):
        dxl.decode(b"\x00" + good[1:])
    with pytest.raises(dxl.PacketError):
        dxl.ping(0xFD)
    with pytest.raises(dxl.PacketError, match="length"):
        dxl.sync_write(116, 4, {1: b"\x00\x00"})


def test_dynamixel_decoder_resyncs_on_garbage_and_split_chunks():
    a, b = H(DXL_DOC["ping_status"]), H(DXL_DOC["read_status"])
    bad = bytearray(b)
    bad[-1] ^= 0xFF
    stream = b"\x00\xff\xff\xfd" + a + bytes(bad) + b"\xff\xff\xfd\x00\x01" + b
    d = dxl.PacketDecoder()
    got = [p for k in range(0, len(stream), 3) for p in d.feed(stream[k:k + 3])]
    assert [p.raw for p in got] == [a, b]
    assert d.stats.crc_errors == 1 and d.stats.bytes_discarded > 0


# ---------------------------------------------------------------------------------------------- Feetech
FT_DOC = {  # Dynamixel Protocol 1.0 manual examples (the framing Feetech SCS/STS use)
    "read_temp": "FF FF 01 04 02 2B 01 CC",
    "read_temp_status": "FF FF 01 03 00 20 DB",
    "write_broadcast": "FF FF FE 04 03 03 01 F6",
    "sync_write": "FF FF FE 18 83 1E 04 00 10 00 50 01 01 20 02 60 03 02 30 00 70 01 03 20 02 80 03 12",
    "ping": "FF FF 01 02 01 FB",
    "ping_status": "FF FF 01 02 00 FC",
}


def test_feetech_encodes_the_manual_examples():
    assert ft.ping(1) == H(FT_DOC["ping"])
    assert ft.read(1, 0x2B, 1) == H(FT_DOC["read_temp"])
    assert ft.write(0xFE, 3, b"\x01") == H(FT_DOC["write_broadcast"])
    data = {0: H("10 00 50 01"), 1: H("20 02 60 03"), 2: H("30 00 70 01"), 3: H("20 02 80 03")}
    assert ft.sync_write(0x1E, 4, data) == H(FT_DOC["sync_write"])
    assert ft.status(1, 0, b"\x20") == H(FT_DOC["read_temp_status"])
    assert ft.status(1) == H(FT_DOC["ping_status"])
    # STS goal position 2048 (little-endian 00 08) for servos 1 and 2 at register 42; checksum by hand:
    # 0xFE + 0x0A + 0x83 + 0x2A + 0x02 + 0x01 + 0x00 + 0x08 + 0x02 + 0x00 + 0x08 = 0x1CA, ~0xCA = 0x35
    assert ft.sync_write(42, 2, {1: ft.to_bytes(2048, 2), 2: ft.to_bytes(2048, 2)}) == H(
        "FF FF FE 0A 83 2A 02 01 00 08 02 00 08 35")
    assert ft.sync_read([1, 2, 3], 56, 2) == H("FF FF FE 07 82 38 02 01 02 03") + bytes(
        [(~(0xFE + 7 + 0x82 + 0x38 + 2 + 1 + 2 + 3)) & 0xFF])


def test_feetech_decode_errors_and_values():
    p = ft.decode(H(FT_DOC["read_temp_status"]))
    assert (p.id, p.code, p.params) == (1, 0, b"\x20")
    with pytest.raises(ft.PacketError, match="checksum"):
        ft.decode(H("FF FF 01 03 00 20 DC"))
    with pytest.raises(ft.PacketError, match="length"):
        ft.decode(H("FF FF 01 05 00 20 DB"))
    with pytest.raises(ft.PacketError, match="malformed"):
        ft.read(0xFE, 56, 2)  # a READ cannot be broadcast
    with pytest.raises(ft.PacketError, match="length"):
        ft.sync_write(42, 2, {1: b"\x00"})
    assert ft.decode_sign_magnitude(ft.encode_sign_magnitude(-300, 15), 15) == -300
    assert ft.encode_sign_magnitude(-5, 15) == 0x8005
    assert ft.error_names(ft.ErrorBit.OVERLOAD | ft.ErrorBit.VOLTAGE) == ["voltage", "overload"]
    assert ft.status(3, ft.ErrorBit.OVERHEAT) == H("FF FF 03 02 04") + bytes([(~(3 + 2 + 4)) & 0xFF])


def test_feetech_decoder_resyncs_on_garbage():
    a, b = H(FT_DOC["read_temp_status"]), H(FT_DOC["ping_status"])
    stream = b"\x13\xff\xff\xff" + a + H("FF FF 01 03 00 20 00") + b"\xff" + b
    d = ft.PacketDecoder()
    got = [p for c in stream for p in d.feed(bytes([c]))]
    assert [p.raw for p in got] == [a, b]
    assert d.stats.checksum_errors == 1 and d.stats.resyncs >= 2


# ---------------------------------------------------------------------------------------------- calibration
def test_lerobot_calibration_imported_as_is(tmp_path):
    f = tmp_path / "so101.json"
    f.write_text(json.dumps({
        "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1470, "range_min": 758, "range_max": 3292},
        "gripper": {"id": 6, "drive_mode": 1, "homing_offset": 1407, "range_min": 2031, "range_max": 3476},
    }))
    cal = ServoCalibration.load(f)
    pan, grip = cal.motors[1], cal.motors[6]
    assert (pan.homing_offset, pan.range_min, pan.range_max, pan.units) == (-1470, 758, 3292, "range_m100_100")
    assert grip.units == "range_0_100" and grip.drive_mode == 1
    # LeRobot's MotorsBus._normalize formulas
    assert pan.to_units(758, 4096) == pytest.approx(-100) and pan.to_units(3292, 4096) == pytest.approx(100)
    assert grip.to_units(2031, 4096) == pytest.approx(100)  # drive_mode inverts range_0_100
    deg = MotorCalibration(1, units="degrees", range_min=1000, range_max=3000)
    assert deg.to_units(2000 + 4095 / 4, 4096) == pytest.approx(90)
    for m in (pan, grip, deg, MotorCalibration(2, units="radians", drive_mode=1, range_min=0, range_max=4095)):
        for t in (2100.0, 2500.0, 2900.0):  # inside every range (the range modes clamp, as LeRobot's)
            assert m.to_ticks(m.to_units(t, 4096), 4096) == pytest.approx(t)


@pytest.mark.parametrize("text,match", [
    ("{}", "expected"), ("[1]", "expected"), ('{"a": {"range_min": 1}}', "id"),
    ('{"a": {"id": 1, "range_min": 9, "range_max": 3}}', "range_max"),
    ('{"motors": [{"id": 1, "units": "furlongs"}]}', "units"), ("not json", "readable JSON"),
])
def test_bad_calibration_files(tmp_path, text, match):
    f = tmp_path / "c.json"
    f.write_text(text)
    with pytest.raises(ServoBusError, match=match):
        ServoCalibration.load(f)
    with pytest.raises(ServoBusError, match="not found"):
        ServoCalibration.load(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------- link vs sim
FAMILIES = ["feetech", "dynamixel"]
FAULT = {"feetech": ft.ErrorBit.OVERLOAD, "dynamixel": dxl.HardwareError.OVERLOAD}


def poll(cond, timeout=10.0, step=None):
    """Call ``step`` (if any) until ``cond()``; fails after a generous deadline."""
    t_end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < t_end, "condition not reached before the deadline"
        if step:
            step()
        else:
            time.sleep(0.01)


def make(family, ids=(1, 2), echo=False, **kw):
    sim = ServoBusSim(family, list(ids), echo=echo, positions=[1500.0 + 300 * k for k in range(len(ids))],
                      homing=kw.pop("homing", None), models=kw.pop("models", None)).start()
    kw.setdefault("reply_timeout_s", 0.25)
    kw.setdefault("rate_hz", 200)
    link = ServoBusLink(sim.port, family, list(ids), owned=[sim], **kw)
    return sim, link


def read(link, timeout=10.0):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        s = link.read_state(0.05)
        if s is not None:
            return s
    raise AssertionError("no STATE before the deadline")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("echo", [False, True])
def test_link_start_read_act_stop(family, echo):
    sim, link = make(family, echo=echo)
    with link:
        assert not any(sim.torque().values())
        caps = link.hello()
        assert all(sim.torque().values())  # torque on at start
        assert sim.goals() == pytest.approx(sim.positions(), abs=1)  # goal := present before torque on: no jump
        assert (caps.state_dim, caps.action_dim, caps.fw_name) == (2, 2, f"{family}-bus")
        assert set(link.models.values()) == {DEFAULT_MODEL[family]}
        s = read(link)
        assert s.values == pytest.approx((1500, 1800), abs=1)  # ticks, no calibration
        assert link.send_action([1000.0, 2500.0], 100, s.seq)
        assert not link.send_action([1000.0, 2500.0], 100, s.seq - 1)  # stale seq refused
        assert link.stats["actions_refused_stale"] == 1
        poll(lambda: read(link).values == pytest.approx((1000, 2500), abs=2))
        assert sim.goals() == {1: 1000.0, 2: 2500.0}  # (the reads after the write were served after it)
        if echo:
            assert link.stats["bus_echo_dropped"] > 0
    assert all(sim.torque().values())  # on_stop=hold: torque stays on, goal = where it is
    assert sim.goals() == pytest.approx(sim.positions(), abs=2)
    assert link.stats["bus_holds"] == 1 and not link.connected


@pytest.mark.parametrize("family", FAMILIES)
def test_resume_lifts_an_episode_stop_and_never_a_closed_bus(family):
    """resume() (between a virtual arm's episodes) after a torque-off stop: hold the present position, torque on,
    actions accepted again; after close() it refuses, so nothing can re-enable a bus the user stopped."""
    sim, link = make(family, on_stop="torque-off")
    with link:
        with pytest.raises(LinkError, match="hello"):
            link.resume()
        link.hello()
        s = read(link)
        assert link.send_stop()
        poll(lambda: not any(sim.torque().values()))  # (a sync write has no reply: the bus serves it in its thread)
        assert not link.send_action([1000.0, 2500.0], 100, s.seq)  # stopped: refused
        link.resume()
        poll(lambda: all(sim.torque().values()))
        assert link.stats["bus_torque_on"] == 2  # hello() and resume()
        assert sim.goals() == pytest.approx(sim.positions(), abs=2)  # goal := present before torque on: no jump
        assert link.send_action([1000.0, 2500.0], 100, read(link).seq)
    poll(lambda: not any(sim.torque().values()))  # the close's stop
    with pytest.raises(LinkError, match="closed or lost"):
        link.resume()
    assert link.stats["bus_torque_on"] == 2  # nothing written


@pytest.mark.parametrize("family", FAMILIES)
def test_link_missing_replies_errors_garbage_counted_not_raised(family):
    sim, link = make(family, on_stop="torque-off")
    with link:
        link.hello()
        read(link)
        sim.drop_replies(2, 3)
        missed = [link.read_state(0.05) for _ in range(3)]
        assert missed == [None, None, None]  # a missed STATE, not an exception
        assert link.stats["bus_missing_replies"] >= 3 and link.stats["bus_missing_m2"] >= 3
        assert link.stats["bus_states_missed"] >= 3
        read(link)  # the bus recovers
        sim.set_error(1, FAULT[family], n=2)
        read(link)
        poll(lambda: link.stats.get("bus_error_overload", 0) >= 1, step=lambda: link.read_state(0.05))
        assert link.stats["bus_status_errors"] >= 1
        sim.corrupt_replies(1, 1)
        sim.inject_garbage()
        poll(lambda: link.stats["bus_checksum_errors"] >= 1 and link.stats["bus_bytes_discarded"] > 0,
             step=lambda: link.read_state(0.05))
        read(link)
    assert not any(sim.torque().values())  # on_stop=torque-off
    assert link.stats["bus_torque_off"] == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_link_vanished_motor_is_loss_of_bus_after_the_deadline(family):
    sim, link = make(family, lost_after_s=0.3)
    with link:
        link.hello()
        read(link)
        sim.vanish(2)
        with pytest.raises(LinkDisconnectedError, match="no complete reply"):
            poll(lambda: False, timeout=30, step=lambda: link.read_state(0.05))
    assert link.stats["disconnects"] == 1
    assert link.stats["bus_holds"] == 1  # close() still tried the stop action on the silent bus


@pytest.mark.parametrize("family", FAMILIES)
def test_link_start_errors_name_the_fix(family):
    sim, link = make(family, retries=0, reply_timeout_s=0.05)
    sim.vanish(2)
    with link, pytest.raises(ServoBusError, match=r"(?s)servo\(s\) \[2\].*fix: power the servos"):
        link.hello()
    other = "scs0009" if family == "feetech" else "xm430-w350"
    cal = ServoCalibration({1: MotorCalibration(1, model=other), 2: MotorCalibration(2)})
    sim, link = make(family, calibration=cal)
    with link, pytest.raises(ServoBusError, match=f"calibration expects {other}"):
        link.hello()
    cal = ServoCalibration({1: MotorCalibration(1, homing_offset=100), 2: MotorCalibration(2, homing_offset=7)})
    sim, link = make(family, calibration=cal, homing=[0, 5])
    with link, pytest.raises(ServoBusError, match="stores homing offset 5, the calibration says 7"):
        link.hello()
    with pytest.raises(ServoBusError, match="no motor with id"):
        ServoBusLink("/dev/null-none", family, [1, 3], calibration=cal)
    with pytest.raises(ServoBusError, match="repeat"):
        ServoBusLink("/dev/null-none", family, [1, 1])
    with pytest.raises(LinkError, match="not found"):
        ServoBusLink("/dev/does-not-exist-kdp", family, [1])


@pytest.mark.parametrize("family", FAMILIES)
def test_link_calibrated_units_velocity_and_host_homing(family):
    cal = ServoCalibration({1: MotorCalibration(1, homing_offset=0, range_min=1000, range_max=3000,
                                                units="range_m100_100"),
                            2: MotorCalibration(2, homing_offset=200, range_min=1000, range_max=3000,
                                                units="degrees")})
    sim, link = make(family, calibration=cal, velocity=True)  # the servos store no homing: applied on the host
    with link:
        caps = link.hello()
        assert link.homing_on_host == {2: 200}
        assert caps.state_dim == 4 and caps.action_min == pytest.approx((-100, -1000 * 360 / 4095))  # the ranges in units
        s = read(link)
        shifted = 1800 - 200 if family == "feetech" else 1800 + 200  # Feetech reports actual - offset
        assert s.values[0] == pytest.approx((1500 - 1000) / 2000 * 200 - 100, abs=0.2)
        assert s.values[1] == pytest.approx((shifted - 2000) * 360 / 4095, abs=0.2)
        assert s.values[2:] == pytest.approx((0, 0), abs=1e-6)
        assert link.send_action([0.0, 10.0], 100, s.seq)
        want2 = 2000 + 10 * 4095 / 360
        actual2 = want2 + 200 if family == "feetech" else want2 - 200
        poll(lambda: sim.goals() == pytest.approx({1: 2000, 2: actual2}, abs=1))  # the write lands (no reply)
        moving = lambda: abs(read(link).values[2]) > 1.0  # noqa: E731  velocity in units/s while it moves
        assert link.send_action([90.0, 10.0], 100, link.latest_state.seq)
        poll(moving)
        s = read(link)
        assert link.send_action([500.0, 10.0], 100, s.seq)  # past the range: clamped, counted
        assert link.stats["bus_goals_clamped"] == 1
        poll(lambda: sim.goals()[1] == pytest.approx(3000))


@pytest.mark.parametrize("family", FAMILIES)
def test_open_servo_link_sizes_and_sim_ports(family):
    with pytest.raises(ServoBusError, match="action_dim 3"):
        open_servo_link(f"sim-servo://{family}", None, [1, 2], state_dim=2, action_dim=3)
    with pytest.raises(ServoBusError, match="--motors"):
        open_servo_link("/dev/ttyUSB9", family, None, state_dim=2, action_dim=2)
    with pytest.raises(ServoBusError, match="unknown servo bus"):
        open_servo_link("/dev/ttyUSB9", "herkulex", [1], state_dim=1, action_dim=1)
    with pytest.raises(ServoBusError, match="simulates"):
        open_servo_link(f"sim-servo://{family}", "x" + family, [1], state_dim=1, action_dim=1)
    link = open_servo_link(f"sim-servo://{family}", None, None, state_dim=6, action_dim=3, reply_timeout_s=0.25)
    with link:
        assert link.ids == [1, 2, 3] and link.velocity
        assert link.hello().state_dim == 6
    assert not link._owned  # the virtual bus was closed with the link
    with pytest.raises(ServoBusError, match=r"(?s)unknown option\(s\) wire\b.*takes model"):
        open_servo_link(f"sim-servo://{family}?wire=1000000", None, None, state_dim=1, action_dim=1)
    link = open_servo_link(f"sim-servo://{family}?wire_baud=1000000&return_delay_us=500", None, None,
                           state_dim=1, action_dim=1, reply_timeout_s=0.25)
    with link:
        sim = link._owned[0]
        assert sim.wire_baud == 1_000_000 and sim.return_delay_s == pytest.approx(500e-6)


# ---------------------------------------------------------------------------------------------- run app
class _FakePlan:
    def __init__(self, a):
        self.action = a

    def step_action(self, i, sl):
        return self.action


class _FakePlanner:
    """The planner surface the run app and the loop use; plans a fixed goal position per motor."""

    def __init__(self, obs_dim, act_dim, target):
        self.manifest = SimpleNamespace(obs_dim=obs_dim, obs_history=1, act_dim=act_dim, goal_dim=0, step_dt_s=0.02,
                                        control_rate_hz=50.0, env="", horizon=8, action_slice=slice(0, act_dim),
                                        protocol="own-actions")
        self.target = np.asarray(target, np.float32)
        self.seen: list[np.ndarray] = []

    @classmethod
    def load(cls, *a, **k):  # replaced per test
        raise NotImplementedError

    def plan(self, obs, goal=None, noise=None):
        self.seen.append(np.asarray(obs))
        return _FakePlan(self.target.copy())

    def clip(self, a):
        return a

    def describe(self):
        return "fake planner"


@pytest.mark.parametrize("family", FAMILIES)
def test_run_app_drives_the_virtual_bus(family, monkeypatch, tmp_path):
    import kdp_edge.runtime as runtime
    from kdp_edge.app.run import RunOptions, format_summary, run

    fake = _FakePlanner(2, 2, [1200.0, 2600.0])
    monkeypatch.setattr(runtime, "Planner", SimpleNamespace(load=lambda *a, **k: fake))
    log = tmp_path / "run.jsonl"
    opts = RunOptions(port=f"sim-servo://{family}", rate_hz=100, cycles=40, log=str(log), warmup_plans=2,
                      bus=None, motors=[1, 2], on_stop="torque-off")
    summary = run("unused-bundle", opts, log=lambda m: None)
    assert summary["counts"]["cycles"] == 40 and summary["counts"]["actions_sent"] > 0
    assert summary["link"]["bus_sync_reads"] > 0 and summary["link"]["bus_torque_off"] == 1
    assert fake.seen and fake.seen[0].shape == (2,)
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(recs) == 40 and any(r["sent"] for r in recs)
    assert "servo bus" in format_summary(summary)
    assert fake.seen[-1] == pytest.approx([1200, 2600], abs=50)  # the arm went where the planner sent it


def test_run_cli_bus_options(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import kdp_edge.runtime as runtime
    from kdp_edge.app.bridge_commands import run_cmd

    fake = _FakePlanner(4, 2, [2000.0, 2000.0])  # positions + velocities of 2 motors
    monkeypatch.setattr(runtime, "Planner", SimpleNamespace(load=lambda *a, **k: fake))
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"a": {"id": 3, "homing_offset": 0, "range_min": 0, "range_max": 4095, "drive_mode": 0,
                                     "units": "ticks"},
                               "b": {"id": 4, "homing_offset": 0, "range_min": 0, "range_max": 4095, "drive_mode": 0,
                                     "units": "ticks"}}))
    r = CliRunner().invoke(run_cmd, ["b", "--port", "sim-servo://dynamixel", "--motors", "3,4", "--cycles", "10",
                                     "--rate", "100", "--servo-calibration", str(cal), "--on-stop", "hold"])
    assert r.exit_code == 0, r.output
    assert "servo bus" in r.output
    r = CliRunner().invoke(run_cmd, ["b", "--port", "sim-servo://feetech", "--motors", "1,2,3", "--cycles", "3"])
    assert r.exit_code == 2 and "--motors" in r.output


def test_paced_reads_stay_on_a_fixed_grid_despite_late_wakeups():
    from firmware_bridge.servo_bus import next_read_time

    period, due, starts = 0.01, None, []
    t = 0.0
    for _ in range(100):  # every wake-up 0.6 ms late: the grid, not the late start, sets the next read
        start = t if due is None else due + 0.0006
        starts.append(start)
        due = next_read_time(due, start, period)
        t = start
    assert due == pytest.approx(100 * period)  # 100 periods after the first read, not 100 x 10.6 ms
    assert np.diff(starts[1:]) == pytest.approx(np.full(98, period), abs=1e-9)  # no drift after the first
    # an overrun of more than a period restarts the grid from the late start (no burst of catch-up reads)
    assert next_read_time(1.0, 1.025, period) == pytest.approx(1.035)
    assert next_read_time(None, 5.0, period) == pytest.approx(5.01)
