"""Host link to a bus of smart servos (Feetech STS/SCS, Dynamixel X on Protocol 2.0), no custom firmware.

:class:`ServoBusLink` has the loop-facing surface of :class:`~firmware_bridge.link.SerialLink`
(``hello()``, ``read_state()``, ``latest_state_rx_time``, ``send_action()``, ``send_stop()``,
``close()``, ``stats``), so the run app drives it with the same control loop:

* ``hello()``: ping every motor (a missing one is an error naming the fix), check its model number
  against the calibration (or the family's known models), check the homing offset the servo stores,
  set each goal to the present position, then torque on. Returns a synthesised
  :class:`~firmware_bridge.protocol.Hello` (state/action dims, limits in model units).
* ``read_state()``: one SYNC_READ of present position (and velocity when ``velocity=True``, in the
  same contiguous block) becomes one STATE in calibrated units: ``[pos_1..pos_n]`` or
  ``[pos_1..pos_n, vel_1..vel_n]``. With ``timeout > 0`` reads are paced at ``rate_hz`` (the bus
  has no stream; this is the STATE period); ``timeout == 0`` reads at once (the caller paces).
  A reply that is missing, corrupted or malformed for any motor makes the whole STATE missed
  (``None``, counted): the control loop's no-observation fallback handles it.
* ``send_action()``: the action (model units) becomes one SYNC_WRITE of goal positions (ticks,
  clamped to the calibration's range, counted). Only an action tagged with the newest STATE's seq is
  sent. Servos have no watchdog: they hold their last goal, so ``valid_for_ms`` is accepted and ignored.
* ``send_stop()`` / ``close()``: the safe action, ``hold`` (goal := present position, torque stays
  on) or ``torque-off``; a stopped link sends no more actions.
* Status error bits (overload, overheat, voltage, angle / encoder, ...) and missing replies are counted
  in ``stats`` (``bus_*`` keys). No complete reply for ``lost_after_s`` raises
  :class:`~firmware_bridge.errors.LinkDisconnectedError` (loss of the bus); an OS error on the port too.

Units (:class:`ServoCalibration`): per motor ``homing_offset``, ``range_min``, ``range_max``,
``drive_mode`` (LeRobot's calibration JSON is read as is) and ``units``: ``ticks`` (default without a
calibration), LeRobot's ``range_m100_100`` / ``range_0_100`` / ``degrees`` (the same formulas as
LeRobot's ``MotorsBus._normalize``), or ``radians``.
"""

from __future__ import annotations

import binascii
import collections
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import serial

from . import ports
from . import servo_dynamixel as dxl
from . import servo_feetech as ft
from .errors import LinkDisconnectedError, LinkError
from .protocol import Hello, State

FAMILIES = ("feetech", "dynamixel")
DEFAULT_BUS_BAUD = 1_000_000
UNITS = ("ticks", "degrees", "radians", "range_m100_100", "range_0_100")
ON_STOP = ("hold", "torque-off")
SIM_SCHEME = "sim-servo://"


class ServoBusError(LinkError):
    """The servo bus or its configuration is not usable; the message says what to change."""


# ---------------------------------------------------------------------------------------------- calibration
@dataclass
class MotorCalibration:
    """One motor: ticks <-> model units. ``homing_offset`` is in the servo's own convention (the value of
    its Homing_Offset register, as LeRobot stores it)."""

    id: int
    name: str = ""
    model: str | None = None
    homing_offset: int = 0
    range_min: int | None = None  # None: 0
    range_max: int | None = None  # None: resolution - 1
    drive_mode: int = 0
    units: str = "ticks"

    def bounds(self, resolution: int) -> tuple[int, int]:
        lo = 0 if self.range_min is None else int(self.range_min)
        hi = resolution - 1 if self.range_max is None else int(self.range_max)
        return lo, hi

    def to_units(self, ticks: float, resolution: int) -> float:
        lo, hi = self.bounds(resolution)
        u = self.units
        if u == "ticks":
            return float(ticks)
        if u == "degrees":  # LeRobot MotorNormMode.DEGREES (drive_mode not applied, as there)
            return (ticks - (lo + hi) / 2) * 360.0 / (resolution - 1)
        if u == "radians":
            sign = -1.0 if self.drive_mode else 1.0
            return sign * (ticks - (lo + hi) / 2) * 2 * math.pi / (resolution - 1)
        b = min(hi, max(lo, ticks))
        if u == "range_m100_100":
            n = (b - lo) / (hi - lo) * 200 - 100
            return -n if self.drive_mode else n
        n = (b - lo) / (hi - lo) * 100  # range_0_100
        return 100 - n if self.drive_mode else n

    def to_ticks(self, value: float, resolution: int) -> float:
        lo, hi = self.bounds(resolution)
        u = self.units
        if u == "ticks":
            return float(value)
        if u == "degrees":
            return value * (resolution - 1) / 360.0 + (lo + hi) / 2
        if u == "radians":
            sign = -1.0 if self.drive_mode else 1.0
            return sign * value * (resolution - 1) / (2 * math.pi) + (lo + hi) / 2
        if u == "range_m100_100":
            v = -value if self.drive_mode else value
            return (min(100.0, max(-100.0, v)) + 100) / 200 * (hi - lo) + lo
        v = 100 - value if self.drive_mode else value
        return min(100.0, max(0.0, v)) / 100 * (hi - lo) + lo

    def units_per_tick(self, resolution: int) -> float:
        """d(units)/d(ticks): converts a velocity in ticks/s to units/s."""
        lo, hi = self.bounds(resolution)
        sign = -1.0 if self.drive_mode else 1.0
        return {"ticks": 1.0, "degrees": 360.0 / (resolution - 1), "radians": sign * 2 * math.pi / (resolution - 1),
                "range_m100_100": sign * 200.0 / (hi - lo), "range_0_100": sign * 100.0 / (hi - lo)}[self.units]


@dataclass
class ServoCalibration:
    motors: dict[int, MotorCalibration] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def load(cls, path: str | Path) -> ServoCalibration:
        """Read our calibration file (``{"motors": [{"id": 1, ...}, ...]}``) or LeRobot's calibration JSON
        (``{"shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1470, "range_min": 758,
        "range_max": 3292}, ...}``) as is. LeRobot files do not say the units: a motor whose name contains
        ``gripper`` gets ``range_0_100``, the others ``range_m100_100`` (LeRobot's SO-100/101 defaults);
        add ``"units": "degrees"`` to a motor to change it."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as e:
            raise ServoBusError(f"servo calibration {p} not found", "give the path of the calibration JSON "
                                "(LeRobot keeps them under ~/.cache/huggingface/lerobot/calibration/)") from e
        except (OSError, json.JSONDecodeError) as e:
            raise ServoBusError(f"servo calibration {p} is not readable JSON ({e})", "fix or re-export the file") from e
        try:
            if isinstance(data, dict) and isinstance(data.get("motors"), list):
                entries = [(str(m.get("name", "")), m) for m in data["motors"]]
            elif isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
                entries = list(data.items())
            else:
                raise ValueError("expected {'motors': [...]} or LeRobot's {name: {id, homing_offset, ...}}")
            motors: dict[int, MotorCalibration] = {}
            lerobot = "motors" not in data
            for name, m in entries:
                units = m.get("units") or (("range_0_100" if "gripper" in name.lower() else "range_m100_100")
                                           if lerobot else "ticks")
                if units not in UNITS:
                    raise ValueError(f"motor {name or m.get('id')}: units {units!r} not one of {UNITS}")
                mc = MotorCalibration(id=int(m["id"]), name=name, model=m.get("model"),
                                      homing_offset=int(m.get("homing_offset", 0)),
                                      range_min=None if m.get("range_min") is None else int(m["range_min"]),
                                      range_max=None if m.get("range_max") is None else int(m["range_max"]),
                                      drive_mode=int(m.get("drive_mode", 0)), units=units)
                if mc.range_min is not None and mc.range_max is not None and mc.range_max <= mc.range_min:
                    raise ValueError(f"motor {name or mc.id}: range_max {mc.range_max} <= range_min {mc.range_min}")
                if mc.id in motors:
                    raise ValueError(f"motor id {mc.id} appears twice")
                motors[mc.id] = mc
        except (KeyError, TypeError, ValueError) as e:
            raise ServoBusError(f"servo calibration {p}: {e}", "each motor needs at least an integer 'id'; ranges "
                                "and offsets are integers in ticks") from e
        return cls(motors, str(p))


# ---------------------------------------------------------------------------------------------- families
class _Family:
    """What differs between the two packet layers, behind one interface."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mod: Any = ft if name == "feetech" else dxl
        self.models: dict[str, int] = dict(self.mod.MODELS)
        self.by_number = {v: k for k, v in self.models.items()}
        R = self.mod.Reg
        self.torque_addr, self.goal_addr = int(R.TORQUE_ENABLE), int(R.GOAL_POSITION)
        if name == "feetech":
            self.pos_addr, self.pos_len, self.vel_addr, self.vel_len = 56, 2, 58, 2
            self.homing_addr, self.homing_len = int(R.HOMING_OFFSET), 2
            self.vel_unit = ft.SPEED_UNIT_TICKS_PER_S
        else:
            self.pos_addr, self.pos_len, self.vel_addr, self.vel_len = 132, 4, 128, 4
            self.homing_addr, self.homing_len = int(R.HOMING_OFFSET), 4
            self.vel_unit = dxl.VELOCITY_UNIT_TICKS_PER_S

    def big(self, model: str) -> bool:
        return self.name == "feetech" and model in ft.BIG_ENDIAN_MODELS

    def is_reply(self, p: Any) -> bool:
        return self.name == "feetech" or p.is_status

    def error_byte(self, p: Any) -> int:
        return p.code if self.name == "feetech" else (p.error or 0)

    def decode_pos(self, b: bytes, model: str) -> int:
        if self.name == "feetech":
            raw = ft.from_bytes(b, self.big(model))
            return raw if model in ft.BIG_ENDIAN_MODELS else ft.decode_sign_magnitude(raw, 15)
        return dxl.from_bytes(b, signed=True)

    def encode_pos(self, ticks: int, model: str) -> bytes:
        if self.name == "feetech":
            if model in ft.BIG_ENDIAN_MODELS:  # SCS: unsigned, big-endian
                return ft.to_bytes(min(max(0, ticks), 0xFFFF), 2, big_endian=True)
            return ft.to_bytes(ft.encode_sign_magnitude(ticks, 15), 2)
        return dxl.to_bytes(ticks, 4, signed=True)

    def decode_vel(self, b: bytes, model: str) -> int:
        if self.name == "feetech":
            return ft.decode_sign_magnitude(ft.from_bytes(b, self.big(model)), 15)
        return dxl.from_bytes(b, signed=True)

    def decode_homing(self, b: bytes, model: str) -> int:
        if self.name == "feetech":
            return ft.decode_sign_magnitude(ft.from_bytes(b, self.big(model)), 11)
        return dxl.from_bytes(b, signed=True)

    def host_homing(self, raw: float, offset: int, inverse: bool = False) -> float:
        """Apply (or undo) a homing offset on the host the way the servo would: Feetech reports
        actual - offset, Dynamixel actual + offset."""
        s = -1 if self.name == "feetech" else 1
        return raw - s * offset if inverse else raw + s * offset

    def fault_names(self, err: int) -> list[str]:
        if self.name == "feetech":
            return ft.error_names(err)
        out = []
        if err & 0x7F:
            try:
                out.append("packet_" + dxl.ErrorNumber(err & 0x7F).name.lower())
            except ValueError:
                out.append(f"packet_error_{err & 0x7F}")
        return out


# ---------------------------------------------------------------------------------------------- the link
def next_read_time(due: float | None, start: float, period_s: float) -> float:
    """When the paced read after one that was ``due`` and started at ``start`` is due (monotonic s).

    Reads sit on a fixed grid (due + period), so a late wake-up does not stretch every later period
    (the mean rate stays the configured one); after an overrun of a whole period, or for the first
    read (``due`` None), the grid restarts from ``start`` instead of bursting reads to catch up."""
    on_grid = due is not None and start - due < period_s
    return (due if on_grid else start) + period_s


class ServoBusLink:
    """The loop's link to a servo bus (see module docstring).

    Args:
        port: device path or pyserial URL (a :class:`~firmware_bridge.servo_sim.ServoBusSim` pty in tests).
        family: ``feetech`` or ``dynamixel``.
        motor_ids: bus IDs in state / action order.
        calibration: :class:`ServoCalibration` (None: raw ticks, full range).
        velocity: append present velocities (units/s) to the state.
        rate_hz: STATE period for paced reads (``read_state(timeout > 0)``).
        on_stop: ``hold`` or ``torque-off``: the safe action of :meth:`send_stop` and :meth:`close`.
        reply_timeout_s: how long one transaction waits for its replies.
        lost_after_s: no complete reply for this long -> LinkDisconnectedError.
        retries: extra tries of the start-up pings / writes.
        owned: objects closed with the link (a virtual bus started for it).
    """

    def __init__(self, port: str, family: str, motor_ids: Sequence[int], baud: int = DEFAULT_BUS_BAUD, *,
                 calibration: ServoCalibration | None = None, velocity: bool = False, rate_hz: float = 50.0,
                 on_stop: str = "hold", reply_timeout_s: float = 0.02, lost_after_s: float = 1.0,
                 retries: int = 3, stop_on_close: bool = True, serial_factory: Callable[..., Any] | None = None,
                 owned: Sequence[Any] = (), log: Callable[[str], None] | None = None) -> None:
        if family not in FAMILIES:
            raise ServoBusError(f"unknown servo bus {family!r}", f"use one of {', '.join(FAMILIES)}")
        if on_stop not in ON_STOP:
            raise ServoBusError(f"unknown stop action {on_stop!r}", f"use one of {', '.join(ON_STOP)}")
        ids = [int(i) for i in motor_ids]
        if not ids:
            raise ServoBusError("no motors given", "pass the bus IDs in state order, e.g. --motors 1,2,3,4,5,6")
        if len(set(ids)) != len(ids):
            raise ServoBusError(f"motor ids {ids} repeat an id", "list each bus ID once")
        fam = _Family(family)
        bad = [i for i in ids if not 0 <= i <= fam.mod.MAX_ID]
        if bad:
            raise ServoBusError(f"motor ids {bad} are outside 0..{fam.mod.MAX_ID}", "use the IDs set on the servos")
        cal = calibration or ServoCalibration()
        missing = [i for i in ids if calibration is not None and i not in cal.motors]
        if missing:
            raise ServoBusError(f"servo calibration {cal.source} has no motor with id {missing}",
                                f"the calibration lists ids {sorted(cal.motors)}: fix --motors or the file")
        self.port, self.family, self.ids, self.baud = port, fam, ids, int(baud)
        self.cal = {i: cal.motors.get(i) or MotorCalibration(id=i) for i in ids}
        self.calibration = cal
        self.velocity, self.period_s = bool(velocity), 1.0 / float(rate_hz)
        self.on_stop, self.reply_timeout_s, self.lost_after_s = on_stop, float(reply_timeout_s), float(lost_after_s)
        self.retries, self.stop_on_close = int(retries), stop_on_close
        self.log = log or (lambda _m: None)
        self._owned = list(owned)
        self._factory = serial_factory or serial.serial_for_url
        self.decoder: Any = fam.mod.PacketDecoder()
        self.models: dict[int, str] = {}
        self.homing_on_host: dict[int, int] = {}
        self.caps: Hello | None = None
        self._c: collections.Counter[str] = collections.Counter()
        self._seq = 0
        self._returned: State | None = None
        self._returned_rx = 0.0
        self._last_raw: dict[int, int] = {}
        self._next_read_t: float | None = None  # when the next paced read is due (monotonic s)
        self._last_ok = time.monotonic()
        self._hw_checked: dict[int, float] = {}
        self._stopped = False
        self._closed = False
        self._t0 = time.monotonic()
        self._ser: Any = None
        self._last_request = b""
        self._open()

    # ------------------------------------------------------------------ port
    def _open(self) -> None:
        kwargs: dict[str, Any] = {"baudrate": self.baud, "timeout": 0.002, "write_timeout": 0.1}
        if "://" not in self.port:
            kwargs["exclusive"] = True
        try:
            self._ser = self._factory(self.port, **kwargs)
        except (serial.SerialException, OSError, ValueError) as e:
            self._close_owned()
            raise ports.describe_open_error(self.port, e, self.baud) from e
        try:
            self._ser.reset_input_buffer()
        except (serial.SerialException, OSError):  # pragma: no cover
            pass

    def _close_owned(self) -> None:
        for o in self._owned:
            try:
                o.close()
            except Exception:  # pragma: no cover
                pass
        self._owned.clear()

    def _lost(self, why: str, close_port: bool = True) -> LinkDisconnectedError:
        """The error for a lost bus; an OS error on the port closes it, silent servos leave it open (so that
        close() still tries the stop action)."""
        self._c["disconnects"] += 1
        ser, self._ser = (self._ser, None) if close_port else (None, self._ser)
        if ser is not None:
            try:
                ser.close()
            except Exception:  # pragma: no cover
                pass
        return LinkDisconnectedError(f"servo bus on {self.port} lost: {why}",
                                     "check the USB cable of the bus adapter and the servos' power supply; "
                                     "then start again")

    # ------------------------------------------------------------------ transactions
    def _drain(self) -> None:
        """Discard what arrived outside a transaction (late replies of a timed-out one)."""
        try:
            n = self._ser.in_waiting
            if n:
                late = [p for p in self.decoder.feed(self._ser.read(n)) if p.raw != self._last_request]
                self._c["bus_late_replies"] += len(late)  # (an adapter's echo of a request is not one)
        except (serial.SerialException, OSError) as e:
            raise self._lost(f"read failed: {e}") from e

    def _transact(self, request: bytes, expect: Sequence[int], timeout: float | None = None) -> dict[int, Any]:
        """Send ``request`` and collect one status packet from each id in ``expect`` (may be empty)."""
        if self._ser is None:
            raise self._lost("the port is closed") if not self._closed else LinkError(
                f"servo bus link to {self.port} is closed", "create a new link")
        self._drain()
        self.decoder.reset()
        try:
            self._ser.write(request)
        except serial.SerialTimeoutException:
            self._c["write_timeouts"] += 1
            return {}
        except (serial.SerialException, OSError) as e:
            raise self._lost(f"write failed: {e}") from e
        self._c["bus_tx_packets"] += 1
        self._last_request = request
        want = set(expect)
        got: dict[int, Any] = {}
        if not want:
            return got
        echo = request
        deadline = time.monotonic() + (self.reply_timeout_s if timeout is None else timeout)
        while want - got.keys():
            try:
                data = self._ser.read(max(1, self._ser.in_waiting))
            except (serial.SerialException, OSError) as e:
                raise self._lost(f"read failed: {e}") from e
            for p in self.decoder.feed(data) if data else ():
                if echo and p.raw == echo:  # an adapter that echoes what it sends
                    self._c["bus_echo_dropped"] += 1
                    echo = b""
                    continue
                if not self.family.is_reply(p):
                    continue
                if p.id not in want or p.id in got:
                    self._c["bus_unexpected_replies"] += 1
                    continue
                got[p.id] = p
            if time.monotonic() >= deadline:
                break
        return got

    def _count_errors(self, replies: dict[int, Any]) -> None:
        now = time.monotonic()
        for i, p in replies.items():
            err = self.family.error_byte(p)
            if not err:
                continue
            self._c["bus_status_errors"] += 1
            for name in self.family.fault_names(err):
                self._c[f"bus_error_{name}"] += 1
            if self.family.name == "dynamixel" and err & dxl.ALERT and now - self._hw_checked.get(i, -1e9) > 1.0:
                self._hw_checked[i] = now  # at most once a second per motor: the alert stays set until reboot
                r = self._transact(dxl.read(i, dxl.Reg.HARDWARE_ERROR_STATUS, 1), [i])
                bits = r[i].params[0] if i in r and r[i].params else 0
                names = dxl.hardware_error_names(bits) or ["alert"]
                for name in names:
                    self._c[f"bus_error_{name}"] += 1

    def _request(self, make: Callable[[], bytes], servo_id: int, what: str, n: int | None = None) -> Any:
        """Unicast request with retries; returns the reply or raises ServoBusError."""
        for _ in range(1 + self.retries):
            r = self._transact(make(), [servo_id], max(self.reply_timeout_s, 0.05)).get(servo_id)
            if r is not None and (n is None or len(r.params) == n):
                return r
        raise ServoBusError(
            f"servo {servo_id} on {self.port} did not answer {what} ({1 + self.retries} tries at {self.baud} baud)",
            "power the servos (the USB adapter does not), check the bus cable, the ID (the servo's ID register) "
            "and the baud rate (--baud; Feetech STS ships at 1000000, Dynamixel X at 57600)")

    # ------------------------------------------------------------------ start
    def hello(self, timeout: float = 2.0) -> Hello:
        """Ping, model and homing checks, hold the present position, torque on; returns the capabilities."""
        fam, mod = self.family, self.family.mod
        absent = []
        for i in self.ids:
            try:
                r = self._request(lambda i=i: mod.ping(i), i, "PING")
            except ServoBusError:
                absent.append(i)
                continue
            if fam.name == "dynamixel":
                number = dxl.from_bytes(r.params[0:2]) if len(r.params) >= 2 else -1
            else:
                number = ft.from_bytes(self._request(lambda i=i: ft.read(i, ft.Reg.MODEL_NUMBER, 2), i,
                                                     "READ model number", 2).params)
                if number not in fam.by_number:  # an SCS servo stores it big-endian
                    number = int.from_bytes(number.to_bytes(2, "little"), "big")
            name = fam.by_number.get(number)
            want = self.cal[i].model
            if want is not None and fam.models.get(want) is None:
                raise ServoBusError(f"calibration model {want!r} for motor {i} is not a known {fam.name} model",
                                    f"use one of {', '.join(sorted(fam.models))}")
            if want is not None and name != want:
                raise ServoBusError(f"servo {i} is model number {number} ({name or 'unknown'}), the calibration "
                                    f"expects {want} ({fam.models[want]})",
                                    "wrong servo on this ID, or fix the calibration's 'model'")
            if name is None:
                raise ServoBusError(f"servo {i} reports model number {number}, not a {fam.name} model this link knows "
                                    f"({', '.join(f'{k}={v}' for k, v in sorted(fam.models.items()))})",
                                    f"is this a {fam.name} bus (--bus)? add the model to servo_{fam.name}.MODELS")
            self.models[i] = name
        if absent:
            raise ServoBusError(
                f"no reply to PING from servo(s) {absent} on {self.port} at {self.baud} baud"
                + (f" (servos {sorted(self.models)} answered)" if self.models else ""),
                "power the servos (USB alone does not), check the daisy chain, the IDs (--motors) and the baud rate "
                "(--baud; Feetech STS ship at 1000000, Dynamixel X at 57600)")
        for i in self.ids:  # the homing offset the servo applies vs the calibration's
            want = self.cal[i].homing_offset
            if fam.name == "feetech" and self.models[i] in ft.BIG_ENDIAN_MODELS:  # SCS: no homing register
                if want:
                    self.homing_on_host[i] = want
                continue
            r = self._request(lambda i=i: mod.read(i, fam.homing_addr, fam.homing_len), i, "READ homing offset",
                              fam.homing_len)
            have = fam.decode_homing(r.params, self.models[i])
            if have == want:
                continue
            if have == 0:
                self.homing_on_host[i] = want
                self.log(f"servo {i}: homing offset {want} applied on the host (the servo stores 0)")
                continue
            raise ServoBusError(f"servo {i} stores homing offset {have}, the calibration says {want}",
                                "use the calibration made for this arm (or recalibrate it with LeRobot)")
        raw = self._sample_raw(with_velocity=False, expect_all=True)
        if raw is None:
            raise ServoBusError(f"no complete position read from servos {self.ids} on {self.port}",
                                "check the servos' power and the bus cable")
        goals = self._goal_bytes({i: raw[i][0] for i in self.ids})
        self._transact(mod.sync_write(fam.goal_addr, fam.pos_len, goals), [])  # no jump when torque comes on
        for i in self.ids:
            self._request(lambda i=i: mod.write(i, fam.torque_addr, b"\x01"), i, "WRITE torque enable")
        self._c["bus_torque_on"] += 1
        lo, hi = [], []
        for i in self.ids:
            res = mod.RESOLUTION[self.models[i]]
            a, b = (self.cal[i].to_units(t, res) for t in self.cal[i].bounds(res))
            lo.append(min(a, b))
            hi.append(max(a, b))
        sig = binascii.crc32(json.dumps([fam.name, self.ids, [self.models[i] for i in self.ids]]).encode())
        n = len(self.ids)
        self.caps = Hello(0, 1, 0, sig, int(round(self.period_s * 1e6)), n * (2 if self.velocity else 1),
                          tuple(lo), tuple(hi), 0xFFFF, f"{fam.name}-bus", seq=0, timestamp_us=0)
        self._stopped = False
        self._last_ok = time.monotonic()
        return self.caps

    # ------------------------------------------------------------------ reading
    def _sample_raw(self, with_velocity: bool, expect_all: bool = False) -> dict[int, tuple[int, int]] | None:
        """One SYNC_READ: {id: (position ticks, velocity raw)} with host homing applied, or None."""
        fam, mod = self.family, self.family.mod
        if with_velocity:
            addr = min(fam.pos_addr, fam.vel_addr)
            n = fam.pos_len + fam.vel_len
        else:
            addr, n = fam.pos_addr, fam.pos_len
        tries = 1 + (self.retries if expect_all else 0)
        for _ in range(tries):
            replies = self._transact(mod.sync_read(self.ids, addr, n), self.ids)
            self._c["bus_sync_reads"] += 1
            self._count_errors(replies)
            out: dict[int, tuple[int, int]] = {}
            for i in self.ids:
                p = replies.get(i)
                if p is None:
                    self._c["bus_missing_replies"] += 1
                    self._c[f"bus_missing_m{i}"] += 1
                    continue
                if len(p.params) != n:
                    self._c["bus_malformed_replies"] += 1
                    continue
                m = self.models.get(i, "")
                pb = p.params[fam.pos_addr - addr:fam.pos_addr - addr + fam.pos_len]
                pos = fam.decode_pos(pb, m)
                vel = 0
                if with_velocity:
                    vel = fam.decode_vel(p.params[fam.vel_addr - addr:fam.vel_addr - addr + fam.vel_len], m)
                if i in self.homing_on_host:
                    pos = int(fam.host_homing(pos, self.homing_on_host[i]))
                out[i] = (pos, vel)
            if len(out) == len(self.ids):
                return out
        return None

    def read_state(self, timeout: float) -> State | None:
        """One STATE from one SYNC_READ (see module docstring); None when a reply was missing."""
        if self._closed:
            raise LinkError(f"servo bus link to {self.port} is closed", "create a new link")
        now = time.monotonic()
        due = self._next_read_t if timeout > 0 else None
        if due is not None:
            if due - now > timeout:
                time.sleep(max(0.0, timeout))
                return None
            if due > now:
                time.sleep(due - now)
        self._next_read_t = next_read_time(due, time.monotonic(), self.period_s)
        raw = self._sample_raw(self.velocity)
        rx = time.monotonic()
        if raw is None:
            self._c["bus_states_missed"] += 1
            if rx - self._last_ok > self.lost_after_s:
                raise self._lost(f"no complete reply from servos {self.ids} for {rx - self._last_ok:.1f} s "
                                 f"(missing replies per motor: "
                                 + ", ".join(f"{i}: {self._c[f'bus_missing_m{i}']}" for i in self.ids) + ")",
                             close_port=False)
            return None
        self._last_ok = rx
        self._last_raw = {i: raw[i][0] for i in self.ids}
        vals = []
        for i in self.ids:
            res = self.family.mod.RESOLUTION[self.models[i]]
            vals.append(self.cal[i].to_units(raw[i][0], res))
        if self.velocity:
            for i in self.ids:
                res = self.family.mod.RESOLUTION[self.models[i]]
                vals.append(raw[i][1] * self.family.vel_unit * self.cal[i].units_per_tick(res))
        self._seq += 1
        s = State(1, 0, 0, tuple(vals), seq=self._seq, timestamp_us=int((rx - self._t0) * 1e6) % (1 << 32))
        self._c["states_received"] += 1
        self._returned, self._returned_rx = s, rx
        return s

    @property
    def latest_state(self) -> State | None:
        return self._returned

    @property
    def latest_state_rx_time(self) -> float | None:
        return None if self._returned is None else self._returned_rx

    # ------------------------------------------------------------------ writing
    def goal_ticks(self, action: Sequence[float]) -> tuple[dict[int, int], int]:
        """Model-unit action -> goal ticks per id (clamped to each motor's range) and how many were clamped."""
        out, clamped = {}, 0
        for i, v in zip(self.ids, action, strict=True):
            res = self.family.mod.RESOLUTION[self.models[i]]
            lo, hi = self.cal[i].bounds(res)
            ulo, uhi = sorted(self.cal[i].to_units(b, res) for b in (lo, hi))
            clamped += int(not ulo - 1e-9 <= v <= uhi + 1e-9)  # the range modes clamp in units already
            out[i] = int(round(min(max(self.cal[i].to_ticks(float(v), res), lo), hi)))
        return out, clamped

    def _goal_bytes(self, ticks: dict[int, int]) -> dict[int, bytes]:
        """Goal registers for calibrated ticks (a homing offset applied on the host is undone here)."""
        fam, out = self.family, {}
        for i, t in ticks.items():
            if i in self.homing_on_host:
                t = fam.host_homing(t, self.homing_on_host[i], inverse=True)
            out[i] = fam.encode_pos(int(round(t)), self.models[i])
        return out

    def send_action(self, action: Sequence[float] | Any, valid_for_ms: int, state_seq: int, *, clip: bool = True) -> bool:
        """One SYNC_WRITE of goal positions, if ``state_seq`` is the newest STATE's (see module docstring)."""
        if self.caps is None:
            raise LinkError("send_action before hello()", "call link.hello() once after opening the bus")
        values = [float(v) for v in (action.ravel() if hasattr(action, "ravel") else action)]
        if len(values) != len(self.ids):
            raise ValueError(f"action has {len(values)} values, the bus has {len(self.ids)} motors")
        if not all(math.isfinite(v) for v in values):
            self._c["actions_refused_nonfinite"] += 1
            return False
        if self._returned is None or self._returned.seq != state_seq:
            self._c["actions_refused_stale"] += 1
            return False
        if self._stopped:
            self._c["actions_refused_stopped"] += 1
            return False
        goals, clamped = self.goal_ticks(values)
        if clamped:
            self._c["actions_clipped"] += 1
            self._c["bus_goals_clamped"] += clamped
        fam = self.family
        self._transact(fam.mod.sync_write(fam.goal_addr, fam.pos_len, self._goal_bytes(goals)), [])
        self._c["actions_sent"] += 1
        return True

    def send_stop(self, reason: int = 0) -> bool:
        """The safe action: ``hold`` (goal := present position, read now, else the last one read) or
        ``torque-off``. After it the link sends no actions. True if it was written."""
        if self._ser is None or not self.models:
            return False
        fam, mod = self.family, self.family.mod
        try:
            if self.on_stop == "torque-off":
                self._transact(mod.sync_write(fam.torque_addr, 1, {i: b"\x00" for i in self.ids}), [])
                self._c["bus_torque_off"] += 1
            else:
                raw = self._sample_raw(with_velocity=False)
                pos = {i: v[0] for i, v in raw.items()} if raw else dict(self._last_raw)
                if pos:
                    self._transact(mod.sync_write(fam.goal_addr, fam.pos_len, self._goal_bytes(pos)), [])
                self._c["bus_holds"] += 1
        except LinkError:
            return False
        self._stopped = True
        self._c["bus_stops"] += 1
        return True

    def resume(self) -> None:
        """Send actions again after :meth:`send_stop` (a new episode on a simulated arm): a ``torque-off``
        stop first holds the present position, then turns torque back on."""
        if self.caps is None:
            raise LinkError("resume before hello()", "call link.hello() once after opening the bus")
        if self._closed or self._ser is None:  # a closed or lost bus stays stopped
            raise LinkError(f"resume on a closed or lost bus ({self.port})", "open the bus again and call hello()")
        if self._stopped and self.on_stop == "torque-off":
            fam, mod = self.family, self.family.mod
            raw = self._sample_raw(with_velocity=False, expect_all=True)
            if raw is None:
                raise ServoBusError(f"no complete position read from servos {self.ids} on {self.port}",
                                    "check the servos' power and the bus cable")
            self._transact(mod.sync_write(fam.goal_addr, fam.pos_len, self._goal_bytes({i: raw[i][0] for i in self.ids})), [])
            self._transact(mod.sync_write(fam.torque_addr, 1, {i: b"\x01" for i in self.ids}), [])
            self._c["bus_torque_on"] += 1
        self._stopped = False

    def close(self) -> None:
        """The safe action (``stop_on_close`` and not already stopped), then close the port."""
        if self._closed:
            return
        if self._ser is not None and self.stop_on_close and not self._stopped:
            self.send_stop()
        ser, self._ser = self._ser, None
        self._closed = True
        if ser is not None:
            try:
                ser.flush()
                ser.close()
            except (serial.SerialException, OSError):  # pragma: no cover
                pass
        self._close_owned()

    def __enter__(self) -> ServoBusLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._ser is not None

    @property
    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: 0 for k in ("states_received", "actions_sent", "actions_refused_stale",
                                              "actions_clipped", "disconnects", "write_timeouts",
                                              "bus_sync_reads", "bus_states_missed", "bus_missing_replies",
                                              "bus_status_errors")}
        out.update(self._c)
        d = self.decoder.stats
        out["bus_checksum_errors"] = d.check_errors
        out["bus_resyncs"] = d.resyncs
        out["bus_bytes_discarded"] = d.bytes_discarded
        out["connected"] = self.connected
        return out


# ---------------------------------------------------------------------------------------------- factory
SIM_OPTIONS = ("model", "tau_ms", "echo", "wire_baud", "return_delay_us")  # sim-servo:// query keys


def parse_sim_servo_port(port: str) -> tuple[str, dict[str, str]] | None:
    """``sim-servo://feetech?model=sts3215&tau_ms=50`` -> ("feetech", {...}); None if not a virtual bus."""
    if not port.startswith(SIM_SCHEME):
        return None
    u = urlparse(port)
    return (u.netloc + u.path).strip("/"), {k: v[-1] for k, v in parse_qs(u.query).items()}


def open_servo_link(port: str, bus: str | None, motors: Sequence[int] | None, *, state_dim: int, action_dim: int,
                    baud: int | None = None, calibration: str | ServoCalibration | None = None, on_stop: str = "hold",
                    rate_hz: float = 50.0, log: Callable[[str], None] | None = None, **kwargs: Any) -> ServoBusLink:
    """The link for ``--bus`` / ``sim-servo://`` ports, sized for a bundle (``state_dim`` = n motors, or
    2n with velocities; ``action_dim`` = n). A ``sim-servo://FAMILY`` port starts a virtual bus
    (query: ``model``, ``tau_ms``, ``echo``, and ``wire_baud`` / ``return_delay_us`` to delay each reply by
    its time on a real bus) owned by the link. ``calibration``: a file's path, or a :class:`ServoCalibration`.
    Raises :class:`ServoBusError`."""
    sim = parse_sim_servo_port(port)
    if sim is not None:
        fam, opts = sim
        if bus is not None and bus != fam:
            raise ServoBusError(f"--bus {bus} but the port {port} simulates a {fam} bus", f"drop --bus or use --bus {fam}")
        bus = fam
    if bus not in FAMILIES:
        raise ServoBusError(f"unknown servo bus {bus!r}", f"use --bus {' or --bus '.join(FAMILIES)}")
    ids = list(motors) if motors else (list(range(1, action_dim + 1)) if sim is not None else [])
    if not ids:
        raise ServoBusError("--bus needs the motor IDs", "pass them in the bundle's state order, e.g. --motors 1,2,3,4,5,6")
    n = len(ids)
    if action_dim != n or state_dim not in (n, 2 * n):
        raise ServoBusError(
            f"{n} motors ({ids}) but the bundle has action_dim {action_dim} and state_dim {state_dim}",
            f"a servo-bus bundle acts on one goal position per motor (action_dim = {n}) and observes positions "
            f"(state_dim = {n}) or positions and velocities ({2 * n}): pass the bundle's motors with --motors")
    cal = calibration if isinstance(calibration, ServoCalibration) else (
        ServoCalibration.load(calibration) if calibration else None)
    owned = []
    if sim is not None:
        from .servo_sim import ServoBusSim

        fam, opts = sim
        unknown = sorted(set(opts) - set(SIM_OPTIONS))
        if unknown:
            raise ServoBusError(f"{port}: unknown option(s) {', '.join(unknown)}",
                                f"the virtual bus takes {', '.join(SIM_OPTIONS)}")
        try:
            models = opts.get("model")
            wire = opts.get("wire_baud")
            s = ServoBusSim(fam, ids, models.split(",") if models and "," in models else models,
                            tau_s=float(opts.get("tau_ms", 50)) / 1e3, echo=opts.get("echo", "0") not in ("0", "false"),
                            wire_baud=int(wire) if wire else None,
                            return_delay_us=float(opts.get("return_delay_us", 0)))
        except ValueError as e:
            raise ServoBusError(f"{port}: {e}", "see firmware_bridge/servo_sim.py for the query options") from e
        s.start()
        owned.append(s)
        port = s.port
    return ServoBusLink(port, bus, ids, baud or DEFAULT_BUS_BAUD, calibration=cal, velocity=state_dim == 2 * n,
                        rate_hz=rate_hz, on_stop=on_stop, owned=owned, log=log, **kwargs)


__all__ = ["ServoBusLink", "ServoBusError", "ServoCalibration", "MotorCalibration", "open_servo_link",
           "parse_sim_servo_port", "FAMILIES", "UNITS", "ON_STOP", "DEFAULT_BUS_BAUD", "SIM_SCHEME"]
