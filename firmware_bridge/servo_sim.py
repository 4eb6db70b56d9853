"""A virtual servo bus on a pseudo-terminal: N Feetech STS/SCS or Dynamixel X servos behind one port.

The host opens :attr:`ServoBusSim.port` like a USB bus adapter. The servos answer as the real ones do
on a half-duplex bus: only to packets addressed to them, with status packets carrying their error byte,
model number and control-table registers. Broadcast (ID 0xFE): SYNC_READ is answered by each listed
servo in list order; WRITE and SYNC_WRITE are executed by every servo, unanswered; a Dynamixel PING is
answered by every servo in ID order (Protocol 2.0; a Feetech broadcast PING gets no reply). PING,
READ, WRITE, SYNC_READ and SYNC_WRITE are served; other instructions get no reply. The vendors' SDKs
(``feetech-servo-sdk``, ``dynamixel-sdk``) work against it as clients (tests/test_servo_sdk.py). Each
servo is a first-order position servo (time constant ``tau_s``, speed limit ``max_speed``) that follows
its goal while torque is on and stays put when torque is off. The homing-offset register shifts what
the servo reports the way the real firmware does (Feetech: present = actual - offset; Dynamixel:
present = actual + offset). The model is :func:`servo_step` (so a task's plant can be checked against it).

Simulator hooks (no real bus has them): :meth:`teleport` puts servos at new positions at once (a new
episode of a simulated task starts there), and ``on_sync_read(now, positions)`` is called after every
SYNC_READ with every servo's actual position (ticks, before the homing offset), so a task can score
what the arm did without this transport knowing the task.

Faults (thread-safe, for tests): :meth:`drop_replies`, :meth:`set_error`, :meth:`corrupt_replies`,
:meth:`inject_garbage`, :meth:`vanish` / :meth:`revive`. ``echo=True`` echoes every request back first,
as some half-duplex adapters do. Inspection: :meth:`positions`, :meth:`goals`, :meth:`torque`,
:attr:`counters`.

Wire time (opt-in, off by default: a pty moves bytes at once). ``wire_baud=B`` models one half-duplex bus
at B baud, 10 bits per byte (start, 8 data, stop): a request occupies the wire for its length in bytes x
10 / B from when the sim reads it (or from when the bus is free, after the previous traffic, a
SYNC_WRITE's included); then each answering servo waits ``return_delay_us`` and sends its status
packet, one after the other (a SYNC_READ's replies in list order), each written to the pty when its
last byte would have arrived. What the sim did is recorded per request in :attr:`wire_log`
(:class:`WireRecord`: when it read the request, when the request ended on the wire, and per status
packet its size, when it was due and when it was written). Not modelled: the USB adapter's own latency
(an FTDI latency timer, USB frames), the servos' processing time beyond the return delay, collisions.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import servo_dynamixel as dxl
from . import servo_feetech as ft

FAMILIES = ("feetech", "dynamixel")
DEFAULT_MODEL = {"feetech": "sts3215", "dynamixel": "xl430-w250"}


def servo_step(actual: float, goal: float, dt: float, tau_s: float, max_speed: float) -> float:
    """Position after ``dt`` s of a first-order position servo at ``actual`` following ``goal`` (time
    constant ``tau_s`` s, at most ``max_speed`` position units per second)."""
    step = (goal - actual) * (1.0 - math.exp(-dt / tau_s))
    lim = max_speed * dt
    return actual + max(-lim, min(lim, step))


class WireReply(NamedTuple):
    """One status packet under the wire-time model: ``t_due`` (its last byte on the wire), ``t_sent``
    (when the sim wrote it to the pty, never before ``t_due``); times on ``time.monotonic()``."""

    servo_id: int
    nbytes: int
    t_due: float
    t_sent: float


@dataclass
class WireRecord:
    """One request under the wire-time model (see the module docstring)."""

    instruction: str
    request_bytes: int
    t_read: float  # the sim read the request from the pty
    t_request_end: float  # its last byte on the modelled wire (>= t_read + its wire time)
    replies: list[WireReply] = field(default_factory=list)


@dataclass
class _Servo:
    id: int
    model: str
    model_number: int
    resolution: int
    regs: bytearray
    actual: float  # position the shaft is at, ticks before the homing offset
    goal: float  # goal in the same frame
    velocity: float = 0.0  # ticks/s
    torque: bool = False
    homing: int = 0
    drop: int = 0
    corrupt: int = 0
    error: int = 0  # Feetech: the ERROR byte; Dynamixel: Hardware Error Status bits (alert in ERROR)
    error_left: int | None = None  # replies left with ``error`` (None: until cleared)
    vanished: bool = False
    t: float = field(default_factory=time.monotonic)


class ServoBusSim:
    """N virtual servos of one family on a pty (see module docstring). Use as a context manager or
    call :meth:`start` / :meth:`close`."""

    def __init__(self, family: str, ids: list[int], models: str | list[str] | None = None, *,
                 positions: list[float] | None = None, homing: list[int] | None = None, tau_s: float = 0.05,
                 max_speed: float = 4000.0, echo: bool = False, wire_baud: int | None = None,
                 return_delay_us: float = 0.0, wire_log_len: int = 100_000,
                 on_sync_read: Callable[[float, dict[int, float]], None] | None = None) -> None:
        if family not in FAMILIES:
            raise ValueError(f"servo family must be one of {FAMILIES}, got {family!r}")
        if wire_baud is not None and not int(wire_baud) > 0:
            raise ValueError(f"wire_baud must be > 0 (or None: no wire time), got {wire_baud!r}")
        if return_delay_us < 0 or (return_delay_us and wire_baud is None):
            raise ValueError("return_delay_us must be >= 0 and needs wire_baud (the wire-time model)")
        # wire-time model (module docstring); None: replies are written at once, as before
        self.wire_baud = None if wire_baud is None else int(wire_baud)
        self.return_delay_s = float(return_delay_us) * 1e-6
        self.wire_log: collections.deque[WireRecord] = collections.deque(maxlen=int(wire_log_len))
        self._bus_free = 0.0  # when the modelled wire is free again
        self._parts: list[tuple[int, bytes]] | None = None  # status packets of the request being handled
        self.family = family
        self.mod: Any = ft if family == "feetech" else dxl
        if models is None or isinstance(models, str):
            models = [models or DEFAULT_MODEL[family]] * len(ids)
        if len(models) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(models)} models")
        self.tau_s, self.max_speed, self.echo = float(tau_s), float(max_speed), echo
        self.on_sync_read = on_sync_read  # (now, {id: actual ticks}) after each SYNC_READ, in the sim's thread
        self._lock = threading.Lock()
        self.servos: dict[int, _Servo] = {}
        for k, (i, m) in enumerate(zip(ids, models, strict=True)):
            if m not in self.mod.MODELS:
                raise ValueError(f"unknown {family} model {m!r}: one of {sorted(self.mod.MODELS)}")
            res = self.mod.RESOLUTION[m]
            pos = float(positions[k]) if positions is not None else res / 2 + 40.0 * (k - len(ids) / 2)
            s = _Servo(i, m, self.mod.MODELS[m], res, bytearray(256), pos, pos)
            s.homing = int(homing[k]) if homing is not None else 0
            self._init_regs(s)
            self.servos[i] = s
        self.counters: collections.Counter[str] = collections.Counter()
        self.write_log: collections.deque[tuple[str, dict[int, int]]] = collections.deque(maxlen=256)
        self._garbage = b""
        self._decoder: Any = self.mod.PacketDecoder()
        self._master: int | None = None
        self._slave: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = False  # between reading a request and writing its reply
        self.port = ""

    # ------------------------------------------------------------------ registers
    def _big(self, s: _Servo) -> bool:
        return self.family == "feetech" and s.model in ft.BIG_ENDIAN_MODELS

    def _init_regs(self, s: _Servo) -> None:
        r = s.regs
        if self.family == "feetech":
            r[ft.Reg.MODEL_NUMBER:ft.Reg.MODEL_NUMBER + 2] = ft.to_bytes(s.model_number, 2, self._big(s))
            r[ft.Reg.ID] = s.id
            r[ft.Reg.HOMING_OFFSET:ft.Reg.HOMING_OFFSET + 2] = ft.to_bytes(ft.encode_sign_magnitude(s.homing, 11), 2)
            r[ft.Reg.PRESENT_VOLTAGE] = 120
            r[ft.Reg.PRESENT_TEMPERATURE] = 30
        else:
            r[dxl.Reg.MODEL_NUMBER:dxl.Reg.MODEL_NUMBER + 2] = dxl.to_bytes(s.model_number, 2)
            r[6] = 45  # firmware version
            r[dxl.Reg.ID] = s.id
            r[dxl.Reg.HOMING_OFFSET:dxl.Reg.HOMING_OFFSET + 4] = dxl.to_bytes(s.homing, 4, signed=True)
        self._store_goal(s)

    def _reported(self, s: _Servo, actual: float) -> int:
        return int(round(actual - s.homing if self.family == "feetech" else actual + s.homing))

    def _store_goal(self, s: _Servo) -> None:
        g = self._reported(s, s.goal)
        if self.family == "feetech":
            s.regs[ft.Reg.GOAL_POSITION:ft.Reg.GOAL_POSITION + 2] = ft.to_bytes(ft.encode_sign_magnitude(g, 15), 2, self._big(s))
        else:
            s.regs[dxl.Reg.GOAL_POSITION:dxl.Reg.GOAL_POSITION + 4] = dxl.to_bytes(g, 4, signed=True)

    def _update(self, s: _Servo, now: float) -> None:
        dt = max(0.0, now - s.t)
        s.t = now
        if s.torque and dt > 0:
            new = servo_step(s.actual, s.goal, dt, self.tau_s, self.max_speed)
            s.velocity = (new - s.actual) / dt
            s.actual = new
        elif dt > 0:
            s.velocity = 0.0
        pos = self._reported(s, s.actual)
        vel = int(round(s.velocity / (ft.SPEED_UNIT_TICKS_PER_S if self.family == "feetech"
                                      else dxl.VELOCITY_UNIT_TICKS_PER_S)))
        r = s.regs
        if self.family == "feetech":
            big = self._big(s)
            r[ft.Reg.PRESENT_POSITION:ft.Reg.PRESENT_POSITION + 2] = ft.to_bytes(ft.encode_sign_magnitude(pos, 15), 2, big)
            r[ft.Reg.PRESENT_SPEED:ft.Reg.PRESENT_SPEED + 2] = ft.to_bytes(ft.encode_sign_magnitude(vel, 15), 2, big)
            r[ft.Reg.TORQUE_ENABLE] = int(s.torque)
        else:
            r[dxl.Reg.PRESENT_POSITION:dxl.Reg.PRESENT_POSITION + 4] = dxl.to_bytes(pos, 4, signed=True)
            r[dxl.Reg.PRESENT_VELOCITY:dxl.Reg.PRESENT_VELOCITY + 4] = dxl.to_bytes(vel, 4, signed=True)
            r[dxl.Reg.TORQUE_ENABLE] = int(s.torque)
            r[dxl.Reg.HARDWARE_ERROR_STATUS] = s.error

    def _write_regs(self, s: _Servo, addr: int, data: bytes, now: float) -> None:
        self._update(s, now)
        if addr + len(data) > len(s.regs):
            return
        s.regs[addr:addr + len(data)] = data
        r = s.regs
        if self.family == "feetech":
            big = self._big(s)
            s.torque = bool(r[ft.Reg.TORQUE_ENABLE])
            s.homing = ft.decode_sign_magnitude(ft.from_bytes(r[ft.Reg.HOMING_OFFSET:ft.Reg.HOMING_OFFSET + 2]), 11)
            g = ft.decode_sign_magnitude(ft.from_bytes(r[ft.Reg.GOAL_POSITION:ft.Reg.GOAL_POSITION + 2], big), 15)
            s.goal = float(g + s.homing)
        else:
            s.torque = bool(r[dxl.Reg.TORQUE_ENABLE])
            s.homing = dxl.from_bytes(r[dxl.Reg.HOMING_OFFSET:dxl.Reg.HOMING_OFFSET + 4], signed=True)
            g = dxl.from_bytes(r[dxl.Reg.GOAL_POSITION:dxl.Reg.GOAL_POSITION + 4], signed=True)
            s.goal = float(g - s.homing)

    # ------------------------------------------------------------------ replies
    def _ping_params(self, s: _Servo) -> bytes:
        """A PING reply's parameters: Dynamixel model number (u16) and firmware version; Feetech none."""
        return dxl.to_bytes(s.model_number, 2) + bytes((s.regs[6],)) if self.family == "dynamixel" else b""

    def _status(self, s: _Servo, params: bytes = b"") -> bytes | None:
        if s.vanished:
            self.counters["replies_vanished"] += 1
            return None
        if s.drop > 0:
            s.drop -= 1
            self.counters["replies_dropped"] += 1
            return None
        err = 0
        if s.error and (s.error_left is None or s.error_left > 0):
            err = s.error if self.family == "feetech" else dxl.ALERT
            if s.error_left is not None:
                s.error_left -= 1
                if s.error_left == 0:
                    s.error = 0
        pkt = self.mod.status(s.id, err, params)
        if s.corrupt > 0:
            s.corrupt -= 1
            pkt = pkt[:-1] + bytes(((pkt[-1] ^ 0x5A) & 0xFF,))
            self.counters["replies_corrupted"] += 1
        self.counters["replies"] += 1
        if self._parts is not None:
            self._parts.append((s.id, pkt))
        return pkt

    def _handle(self, p: Any, now: float) -> bytes:
        inst = p.code if self.family == "feetech" else p.instruction
        params = p.params
        a16 = self.family == "dynamixel"  # 2-byte addresses and lengths
        out = bytearray()
        self.counters["requests"] += 1
        try:
            name = self.mod.Inst(inst).name.lower()
        except ValueError:
            name = f"inst_0x{inst:02x}"
        self.counters[name] += 1

        def addr_len(b: bytes) -> tuple[int, int, bytes]:
            if a16:
                return int.from_bytes(b[0:2], "little"), int.from_bytes(b[2:4], "little"), b[4:]
            return b[0], b[1], b[2:]

        if inst == self.mod.Inst.SYNC_READ and p.id == self.mod.BROADCAST_ID and len(params) >= (4 if a16 else 2):
            addr, n, ids = addr_len(params)
            for i in ids:
                s = self.servos.get(i)
                if s is not None:
                    self._update(s, now)
                    r = self._status(s, bytes(s.regs[addr:addr + n]))
                    if r:
                        out += r
            if self.on_sync_read is not None:
                self.on_sync_read(now, {i: s.actual for i, s in self.servos.items()})
            return bytes(out)
        if inst == self.mod.Inst.SYNC_WRITE and p.id == self.mod.BROADCAST_ID and len(params) >= (4 if a16 else 2):
            addr, n, rest = addr_len(params)
            written: dict[int, int] = {}
            for k in range(0, len(rest) - n, n + 1):
                s = self.servos.get(rest[k])
                if s is not None and not s.vanished:
                    data = bytes(rest[k + 1:k + 1 + n])
                    self._write_regs(s, addr, data, now)
                    written[s.id] = int.from_bytes(data, "big" if self._big(s) else "little", signed=a16 and n == 4)
            self.write_log.append((f"sync_write@{addr}", written))
            return b""
        if p.id == self.mod.BROADCAST_ID:
            if inst == self.mod.Inst.WRITE and len(params) >= (3 if a16 else 2):  # every servo, none answers
                addr = int.from_bytes(params[0:2], "little") if a16 else params[0]
                data = bytes(params[2:] if a16 else params[1:])
                written = {}
                for s in self.servos.values():
                    if not s.vanished:
                        self._write_regs(s, addr, data, now)
                        written[s.id] = int.from_bytes(data, "big" if self._big(s) else "little")
                self.write_log.append((f"write@{addr}", written))
            elif inst == self.mod.Inst.PING and a16:  # Protocol 2.0: every servo answers, in ID order
                for i in sorted(self.servos):
                    s = self.servos[i]
                    r = self._status(s, self._ping_params(s))
                    if r:
                        out += r
            return bytes(out)  # anything else broadcast: executed by nobody here, answered by nobody
        s = self.servos.get(p.id)
        if s is None:  # unknown ids: nobody answers
            return b""
        if inst == self.mod.Inst.PING:
            r = self._status(s, self._ping_params(s))
        elif inst == self.mod.Inst.READ and len(params) >= (4 if a16 else 2):
            addr, n, _ = addr_len(params)
            self._update(s, now)
            r = self._status(s, bytes(s.regs[addr:addr + n]))
        elif inst == self.mod.Inst.WRITE and len(params) >= (3 if a16 else 2):
            addr = int.from_bytes(params[0:2], "little") if a16 else params[0]
            data = bytes(params[2:] if a16 else params[1:])
            if not s.vanished:
                self._write_regs(s, addr, data, now)
                self.write_log.append((f"write@{addr}", {s.id: int.from_bytes(data, "little")}))
            r = self._status(s)
        else:
            r = None
        return r or b""

    # ------------------------------------------------------------------ pty and thread
    def start(self) -> ServoBusSim:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.port = os.ttyname(slave)
        self._thread = threading.Thread(target=self._run, name=f"servo-bus-sim-{self.family}", daemon=True)
        self._thread.start()
        return self

    def close(self, drain_s: float = 1.0) -> None:
        """Serve what the host already wrote (up to ``drain_s``: a last stop command must land), then stop."""
        self._drain(drain_s)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def __enter__(self) -> ServoBusSim:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 1.0
        while view and self._master is not None and time.monotonic() < deadline:
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except (BlockingIOError, InterruptedError):
                select.select([], [self._master], [], 0.01)
            except OSError:
                return

    def _run(self) -> None:
        while not self._stop.is_set():
            master = self._master
            if master is None:
                return
            try:
                r, _, _ = select.select([master], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            self._busy = True
            try:
                data = os.read(master, 4096)
            except (BlockingIOError, InterruptedError):
                self._busy = False
                continue
            except OSError:
                self._busy = False
                return
            now = time.monotonic()
            if self.wire_baud is not None:
                self._serve_on_wire(data, now)
                self._busy = False
                continue
            out = bytearray()
            with self._lock:
                if self.echo:
                    out += data
                for p in self._decoder.feed(data):
                    if self.family == "dynamixel" and p.is_status:
                        continue
                    reply = self._handle(p, now)
                    if reply and self._garbage:
                        out += self._garbage
                        self._garbage = b""
                    out += reply
            if out:
                self._send(bytes(out))
            self._busy = False

    def wire_s(self, nbytes: int) -> float:
        """Seconds ``nbytes`` take on the modelled wire (10 bits a byte at ``wire_baud``)."""
        return 10.0 * nbytes / self.wire_baud if self.wire_baud else 0.0

    def _serve_on_wire(self, data: bytes, now: float) -> None:
        """The wire-time model: schedule every reply of ``data``'s requests on the modelled bus, then write
        each when due (outside the lock: faults can be set meanwhile)."""
        plan: list[tuple[float, bytes, WireRecord | None, int]] = []  # (due, bytes, record, servo id)
        with self._lock:
            packets = self._decoder.feed(data)
            if self.echo:  # the adapter echoes the request as it goes out
                plan.append((max(now, self._bus_free) + self.wire_s(len(data)), bytes(data), None, -1))
            for p in packets:
                t_end = max(now, self._bus_free) + self.wire_s(len(p.raw))
                self._bus_free = t_end
                if self.family == "dynamixel" and p.is_status:
                    continue
                inst = p.code if self.family == "feetech" else p.instruction
                try:
                    name = self.mod.Inst(inst).name.lower()
                except ValueError:
                    name = f"inst_0x{inst:02x}"
                rec = WireRecord(name, len(p.raw), now, t_end)
                self._parts = []
                try:
                    reply = self._handle(p, now)
                    parts = self._parts
                finally:
                    self._parts = None
                if reply and self._garbage and parts:
                    parts[0] = (parts[0][0], self._garbage + parts[0][1])
                    self._garbage = b""
                for sid, pkt in parts:
                    t_end = self._bus_free + self.return_delay_s + self.wire_s(len(pkt))
                    self._bus_free = t_end
                    plan.append((t_end, pkt, rec, sid))
                self.wire_log.append(rec)
        for due, pkt, rec, sid in plan:
            while True:
                t_sent = time.monotonic()
                if t_sent >= due:
                    break
                time.sleep(due - t_sent)
            if rec is not None:  # recorded before the host can see the bytes
                rec.replies.append(WireReply(sid, len(pkt), due, t_sent))
            self._send(pkt)

    # ------------------------------------------------------------------ simulator hooks
    def teleport(self, positions: dict[int, float], drain_s: float = 1.0) -> None:
        """Simulator only (a real arm cannot do this): after serving what the host already wrote (up to
        ``drain_s``: a last goal write must not land after the move), put each listed servo at rest at
        ``positions[id]`` (actual ticks, before the homing offset) with its goal there too; torque as it was."""
        self._drain(drain_s)
        now = time.monotonic()
        with self._lock:
            for i, p in positions.items():
                s = self.servos[i]
                s.actual = s.goal = float(p)
                s.velocity, s.t = 0.0, now
                self._store_goal(s)
                self._update(s, now)

    def _drain(self, drain_s: float) -> None:
        """Wait (up to ``drain_s``) until the host's bytes are read and answered."""
        t_end = time.monotonic() + drain_s
        while self._master is not None and self._thread is not None and self._thread.is_alive() \
                and time.monotonic() < t_end:
            try:
                pending = bool(select.select([self._master], [], [], 0)[0])
            except (OSError, ValueError):
                break
            if not pending and not self._busy:
                break
            time.sleep(0.001)

    # ------------------------------------------------------------------ faults and inspection
    def drop_replies(self, servo_id: int, n: int = 1) -> None:
        """The next ``n`` replies of ``servo_id`` never come (a missed status packet)."""
        with self._lock:
            self.servos[servo_id].drop += n

    def corrupt_replies(self, servo_id: int, n: int = 1) -> None:
        """The next ``n`` replies of ``servo_id`` carry a wrong checksum / CRC."""
        with self._lock:
            self.servos[servo_id].corrupt += n

    def set_error(self, servo_id: int, bits: int, n: int | None = None) -> None:
        """Report error ``bits`` in the next ``n`` replies (None: until ``set_error(id, 0)``). Feetech: the
        ERROR byte's bits (:class:`servo_feetech.ErrorBit`); Dynamixel: Hardware Error Status bits
        (:class:`servo_dynamixel.HardwareError`), signalled by the alert bit of the ERROR byte."""
        with self._lock:
            s = self.servos[servo_id]
            s.error, s.error_left = int(bits), n

    def inject_garbage(self, data: bytes = b"\xff\x00\xff\xff\x13\xfe\x42\xff") -> None:
        """Bytes that precede the next reply on the wire (noise, a partial header)."""
        with self._lock:
            self._garbage += bytes(data)

    def vanish(self, servo_id: int) -> None:
        """The servo stops answering (unplugged, unpowered) until :meth:`revive`."""
        with self._lock:
            self.servos[servo_id].vanished = True

    def revive(self, servo_id: int) -> None:
        with self._lock:
            self.servos[servo_id].vanished = False

    def positions(self) -> dict[int, float]:
        """Actual shaft positions in ticks (before the homing offset), now."""
        now = time.monotonic()
        with self._lock:
            for s in self.servos.values():
                self._update(s, now)
            return {i: s.actual for i, s in self.servos.items()}

    def goals(self) -> dict[int, float]:
        with self._lock:
            return {i: s.goal for i, s in self.servos.items()}

    def torque(self) -> dict[int, bool]:
        with self._lock:
            return {i: s.torque for i, s in self.servos.items()}


def start_servo_sim(family: str, ids: list[int], **kwargs: Any) -> ServoBusSim:
    """Start a :class:`ServoBusSim`; its :attr:`~ServoBusSim.port` is the pty to open."""
    return ServoBusSim(family, ids, **kwargs).start()


__all__ = ["ServoBusSim", "start_servo_sim", "servo_step", "WireRecord", "WireReply", "FAMILIES", "DEFAULT_MODEL"]
