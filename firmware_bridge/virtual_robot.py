"""Python virtual controller: serves the kdp protocol on a pseudo-terminal around any plant.

::

    robot = start_virtual_robot(IntegratorPlant(), rate_hz=100)
    link = SerialLink(robot.port)          # robot.port is a stable symlink to the pty
    ...
    robot.close()

The robot thread steps the plant once per period (dt = 1/rate_hz, simulated time), streams STATE,
answers HELLO/HEARTBEAT and applies ACTIONs with the same rules as the C firmware (limits,
watchdog, STOP, e-stop; see :mod:`firmware_bridge.controller`).

Units: ``state_scale/offset`` and ``action_scale/offset`` model a controller whose raw units differ
from the plant's: reported state = state_scale * x + state_offset; a received command c drives
the plant with a = (c - action_offset) / action_scale. ``latency_ms`` delays every received frame.

Observation for tests (thread-safe): the controller's own record of what it did, on its clock
(``time.monotonic`` seconds as the robot thread saw them, not when a host happened to look):
:attr:`tick_log` (every tick: when it was due, when it ran, the STATE it sent and its flags),
:attr:`action_log`, :attr:`watchdog_log`, and :meth:`wait_for` to wait for a condition on them
instead of sleeping a guessed time.

Fault injection for tests (thread-safe too): :meth:`inject_garbage`, :meth:`corrupt_next_states`
(bit flips, truncation, lost delimiters, duplicates), :meth:`replay_old_states` (out-of-order seqs),
:meth:`nan_states`, :meth:`reboot` (new boot id, seq restarts), :meth:`reopen_pty` (the port
disappears and comes back under the same path), :meth:`mute` and :meth:`noise` (wrong-baud look-alike).
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import select
import shutil
import tempfile
import threading
import time
import tty
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .controller import ActionRecord, ControllerCore, WatchdogTrip
from .plants import IntegratorPlant, Plant
from .protocol import FrameDecoder, Message, ResetCause, State, StateFlags, encode, fw_version_u32
from .seqnum import U32_MOD

CORRUPTIONS = ("bitflip", "truncate", "drop_delimiter", "duplicate")
TICK_LOG_LEN = 8192  # ticks kept in VirtualRobot.tick_log (82 s at 100 Hz)

T = TypeVar("T")


@dataclass(frozen=True)
class TickRecord:
    """One control tick of the current boot, on the controller's clock (``time.monotonic`` seconds).

    ``due`` is the tick's place in the schedule (one period after the previous tick's due time, or, when
    the previous tick ran more than two periods late, one period after it ran: the thread skips ticks rather
    than bunching them), ``time`` when the robot thread ran it (>= ``due``;
    the watchdog was checked at this same time just before, so ``flags`` are the condition at ``time``),
    ``seq`` / ``flags`` / ``last_action_seq`` the STATE it sent."""

    tick: int
    due: float
    time: float
    seq: int
    flags: int
    last_action_seq: int


def _vec(x: float | np.ndarray | list[float], n: int, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 1:
        return np.full(n, float(a[0]))
    if a.size != n:
        raise ValueError(f"{what} needs 1 or {n} values, got {a.size}")
    return a


class VirtualRobot:
    """A virtual controller on a pty (see module docstring). Use :func:`start_virtual_robot`."""

    def __init__(
        self,
        plant: Plant | Any,
        rate_hz: float = 50.0,
        *,
        seed: int | None = 0,
        max_valid_for_ms: int = 500,
        boot_id: int | None = None,
        state_scale: float | np.ndarray = 1.0,
        state_offset: float | np.ndarray = 0.0,
        action_scale: float | np.ndarray = 1.0,
        action_offset: float | np.ndarray = 0.0,
        latency_ms: float = 0.0,
        fw_name: str = "kdp-virtual-robot 0.1.0",
        fw_version: int = fw_version_u32(0, 1, 0),
        tx_buffer_bytes: int = 1 << 16,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError("rate_hz must be > 0")
        self.plant = plant
        self.rate_hz = float(rate_hz)
        self.period_s = 1.0 / self.rate_hz
        self.seed = seed
        self.latency_s = latency_ms / 1000.0
        self.max_valid_for_ms = int(max_valid_for_ms)
        self.fw_name = fw_name
        self.fw_version = fw_version
        self.tx_buffer_bytes = tx_buffer_bytes
        sd, ad = int(plant.state_dim), int(plant.action_dim)
        self.state_scale = _vec(state_scale, sd, "state_scale")
        self.state_offset = _vec(state_offset, sd, "state_offset")
        self.action_scale = _vec(action_scale, ad, "action_scale")
        self.action_offset = _vec(action_offset, ad, "action_offset")
        if np.any(self.action_scale == 0):
            raise ValueError("action_scale must be non-zero")
        lo = self.action_scale * np.asarray(plant.action_low, dtype=np.float64) + self.action_offset
        hi = self.action_scale * np.asarray(plant.action_high, dtype=np.float64) + self.action_offset
        self.raw_action_min = tuple(float(v) for v in np.minimum(lo, hi))
        self.raw_action_max = tuple(float(v) for v in np.maximum(lo, hi))

        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # notified after every pass of the robot thread
        self._ticks: collections.deque[TickRecord] = collections.deque(maxlen=TICK_LOG_LEN)
        self._tick_count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dir = tempfile.mkdtemp(prefix="kdp-vr-")
        self._link_path = os.path.join(self._dir, "tty")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self._master: int | None = None
        self._slave: int | None = None
        self._pty_path = ""
        self._down_until: float | None = None
        self._tx = bytearray()
        self._rx_decoder = FrameDecoder()
        self._rx_pending: collections.deque[tuple[float, Message]] = collections.deque()
        self._history: collections.deque[bytes] = collections.deque(maxlen=64)
        self._faults: collections.Counter[str] = collections.Counter()
        self._replay_age = 5
        self._mute_until = 0.0
        self._noise_until = 0.0
        self._pending_garbage = bytearray()
        self._cmd: collections.deque[tuple[str, Any, threading.Event]] = collections.deque()
        self.counters: collections.Counter[str] = collections.Counter()
        self._boot_id = boot_id if boot_id else (self._rng.getrandbits(32) | 1)
        self._boot_count = 0
        self._new_core()
        self._plant_state = np.asarray(self.plant.reset(seed), dtype=np.float64)

    # ------------------------------------------------------------------ setup
    def _new_core(self) -> None:
        self._boot_t0 = time.monotonic()
        fw_sig = zlib.crc32(f"{self.fw_name} sd={self.plant.state_dim} ad={self.plant.action_dim}".encode())
        self.core = ControllerCore(
            state_dim=int(self.plant.state_dim),
            action_min=self.raw_action_min,
            action_max=self.raw_action_max,
            max_valid_for_ms=self.max_valid_for_ms,
            state_period_us=round(self.period_s * 1e6),
            boot_id=self._boot_id,
            fw_version=self.fw_version,
            fw_signature=fw_sig,
            fw_name=self.fw_name,
            send=self._send,
            clock_us=lambda: int((time.monotonic() - self._boot_t0) * 1e6) % U32_MOD,
        )

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._pty_path = os.ttyname(slave)
        tmp = self._link_path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self._pty_path, tmp)
        os.replace(tmp, self._link_path)
        self._rx_decoder.reset()

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        self._tx.clear()

    def start(self) -> VirtualRobot:
        """Open the pty, send the boot notice and start the robot thread. Returns self."""
        with self._lock:
            self._open_pty()
            self.core.boot(ResetCause.POWER_ON)
        self._thread = threading.Thread(target=self._run, name="kdp-virtual-robot", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread, close the pty and remove the symlink."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self._lock:
            self._close_pty()
        self._finalizer()

    def __enter__(self) -> VirtualRobot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ observation
    @property
    def port(self) -> str:
        """Stable path for pyserial (a symlink to the current pty; survives :meth:`reopen_pty`)."""
        return self._link_path

    @property
    def pty_path(self) -> str:
        """The current ``/dev/pts/N``."""
        return self._pty_path

    @property
    def boot_id(self) -> int:
        """Current boot id."""
        return self._boot_id

    @property
    def outputs(self) -> np.ndarray:
        """Outputs being applied right now, raw controller units (zero unless an ACTION is active)."""
        with self._lock:
            return np.array(self.core.outputs if self.core.active else [0.0] * self.core.action_dim)

    @property
    def flags(self) -> int:
        """STATE flags for the current condition."""
        with self._lock:
            return self.core.flags()

    @property
    def plant_state(self) -> np.ndarray:
        """Physical plant state after the last step (copy)."""
        with self._lock:
            return self._plant_state.copy()

    @property
    def last_state_seq(self) -> int | None:
        """Seq of the newest STATE sent."""
        with self._lock:
            return self.core.last_state_seq

    @property
    def action_log(self) -> list[ActionRecord]:
        """Every ACTION received in the current boot, accepted or not (``rx_time``: controller clock)."""
        with self._lock:
            return list(self.core.action_log)

    @property
    def watchdog_log(self) -> list[WatchdogTrip]:
        """Every watchdog trip in the current boot (controller clock)."""
        with self._lock:
            return list(self.core.watchdog_log)

    @property
    def ticks(self) -> int:
        """Ticks run (plant steps, one STATE each) in the current boot."""
        with self._lock:
            return self._tick_count

    @property
    def tick_log(self) -> list[TickRecord]:
        """The last ``TICK_LOG_LEN`` ticks of the current boot, oldest first."""
        with self._lock:
            return list(self._ticks)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Wait until ``predicate()`` is true; returns its last value (false after ``timeout`` seconds).

        ``predicate`` is evaluated with the robot's lock held after each pass of the robot thread (a tick,
        a received frame, a watchdog check), so it sees a consistent controller; it may use the robot's
        properties. For tests: wait for what the controller did rather than for a guessed time."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    @property
    def stats(self) -> dict[str, int]:
        """Controller and robot counters (``rx_*`` are the decoder's)."""
        with self._lock:
            out = dict(self.counters)
            out.update(self.core.stats)
            out.update({f"rx_{k}": v for k, v in self._rx_decoder.stats.as_dict().items()})
            out["boots"] = self._boot_count
            return out

    def plant_info(self) -> dict[str, Any]:
        """``plant.info()`` if the plant has it, else ``{}``."""
        with self._lock:
            info = getattr(self.plant, "info", None)
            return dict(info()) if callable(info) else {}

    # ------------------------------------------------------------------ fault injection
    def inject_garbage(self, nbytes: int = 64, with_zeros: bool = True) -> None:
        """Send ``nbytes`` random bytes before the next frame."""
        with self._lock:
            data = bytearray(self._rng.getrandbits(8) for _ in range(nbytes))
            if not with_zeros:
                data = bytearray(b or 1 for b in data)
            self._pending_garbage += data

    def corrupt_next_states(self, n: int = 1, kind: str = "bitflip") -> None:
        """Damage the next ``n`` STATE frames: ``bitflip``, ``truncate``, ``drop_delimiter`` or ``duplicate``."""
        if kind not in CORRUPTIONS:
            raise ValueError(f"kind must be one of {CORRUPTIONS}")
        with self._lock:
            self._faults[kind] += n

    def replay_old_states(self, n: int = 1, age: int = 5) -> None:
        """After each of the next ``n`` STATEs also resend the STATE sent ``age`` STATEs earlier."""
        with self._lock:
            self._faults["replay"] += n
            self._replay_age = max(1, age)

    def nan_states(self, n: int = 1) -> None:
        """The next ``n`` STATEs carry NaN in their first value."""
        with self._lock:
            self._faults["nan"] += n

    def mute(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the controller keeps running: a cut TX wire)."""
        with self._lock:
            self._mute_until = time.monotonic() + seconds

    def noise(self, seconds: float) -> None:
        """For ``seconds`` send random bytes instead of frames (looks like a baud mismatch)."""
        with self._lock:
            self._noise_until = time.monotonic() + seconds

    def _command(self, name: str, arg: Any, timeout: float) -> None:
        done = threading.Event()
        with self._lock:
            self._cmd.append((name, arg, done))
        if not done.wait(timeout):
            raise TimeoutError(f"virtual robot did not perform {name} within {timeout}s")

    def reboot(self, cause: int = ResetCause.SOFTWARE, timeout: float = 2.0) -> None:
        """Simulate a controller reset: new boot id, seq from 0, plant reset, outputs zero."""
        self._command("reboot", cause, timeout)

    def reopen_pty(self, down_s: float = 0.2, timeout: float = 5.0) -> None:
        """Close the pty (the host sees the device vanish) and open a new one under :attr:`port`
        after ``down_s`` seconds. Returns once the new pty is up."""
        self._command("reopen", down_s, timeout + down_s)

    def reset_plant(self, seed: int | None = None) -> None:
        """Reset the plant (new episode) without rebooting the controller."""
        with self._lock:
            self._plant_state = np.asarray(self.plant.reset(seed), dtype=np.float64)

    # ------------------------------------------------------------------ I/O
    def _send(self, msg: Message) -> None:
        """Called by the controller core for every outgoing message (lock held)."""
        wire = encode(msg)
        frames = [wire]
        if isinstance(msg, State):
            f = self._faults
            if f["bitflip"]:
                f["bitflip"] -= 1
                b = bytearray(wire)
                i = self._rng.randrange(len(b) - 1)
                b[i] ^= 1 << self._rng.randrange(8)
                frames = [bytes(b)]
            elif f["truncate"]:
                f["truncate"] -= 1
                frames = [wire[: self._rng.randrange(1, len(wire) - 2)] + b"\x00"]
            elif f["drop_delimiter"]:
                f["drop_delimiter"] -= 1
                frames = [wire[:-1]]
            elif f["duplicate"]:
                f["duplicate"] -= 1
                frames = [wire, wire]
            if f["replay"] and len(self._history) >= self._replay_age:
                f["replay"] -= 1
                frames.append(self._history[-self._replay_age])
            self._history.append(wire)
        for fr in frames:
            self._queue(fr)

    def _queue(self, data: bytes) -> None:
        now = time.monotonic()
        if self._master is None or now < self._mute_until:
            self.counters["tx_muted"] += 1
            return
        if now < self._noise_until:
            data = bytes(self._rng.getrandbits(8) for _ in range(len(data)))
            self.counters["tx_noise"] += 1
        if self._pending_garbage:
            data = bytes(self._pending_garbage) + data
            self._pending_garbage.clear()
        if len(self._tx) + len(data) > self.tx_buffer_bytes:
            self.counters["tx_dropped"] += 1
            return
        self._tx += data
        self.counters["tx_frames"] += 1

    def _flush(self) -> None:
        while self._tx and self._master is not None:
            try:
                n = os.write(self._master, self._tx)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.counters["tx_errors"] += 1
                return
            del self._tx[:n]

    def _read(self, now: float) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        for msg in self._rx_decoder.feed(data):
            if self.latency_s > 0:
                self._rx_pending.append((now + self.latency_s, msg))
            else:
                self.core.handle(msg, now)

    def _tick(self, due: float, now: float) -> None:
        core = self.core
        if core.active:
            phys = (np.asarray(core.outputs) - self.action_offset) / self.action_scale
        else:  # outputs off: zero (forces, velocities), or what the plant defines as idle (a position servo holds)
            idle = getattr(self.plant, "idle_action", None)
            phys = np.asarray(idle(), dtype=np.float64) if callable(idle) else np.zeros(core.action_dim)
        self._plant_state = np.asarray(self.plant.step(phys, self.period_s), dtype=np.float64)
        raw = self._plant_state * self.state_scale + self.state_offset
        values = tuple(float(v) for v in raw)
        if self._faults["nan"]:
            self._faults["nan"] -= 1
            values = (float("nan"),) + values[1:]
        extra = 0
        info = getattr(self.plant, "info", None)
        if callable(info) and info().get("success"):
            extra |= StateFlags.SUCCESS
        st = core.send_state(values, int(extra))
        self._ticks.append(TickRecord(self._tick_count, due, now, st.seq, st.flags, st.last_action_seq))
        self._tick_count += 1

    def _do_command(self, name: str, arg: Any, now: float) -> bool:
        """Run a queued command; returns False if it must be retried later."""
        if name == "reboot":
            old = self._boot_id
            while self._boot_id == old:
                self._boot_id = self._rng.getrandbits(32) | 1
            self._boot_count += 1
            self._rx_pending.clear()
            self._rx_decoder.reset()
            self._history.clear()
            self._plant_state = np.asarray(self.plant.reset(self.seed), dtype=np.float64)
            self._ticks.clear()
            self._tick_count = 0
            self._new_core()
            self.core.boot(int(arg))
            return True
        if name == "reopen":
            if self._down_until is None:
                self._close_pty()
                self._down_until = now + float(arg)
                return False
            if now < self._down_until:
                return False
            self._down_until = None
            self._open_pty()
            self.counters["pty_reopens"] += 1
            return True
        raise ValueError(name)  # pragma: no cover

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                wake = next_tick
                if self._rx_pending:
                    wake = min(wake, self._rx_pending[0][0])
                if self.core.active:
                    wake = min(wake, self.core.deadline)
                master = self._master
                want_write = bool(self._tx)
            timeout = min(max(0.0, wake - now), 0.05)
            if master is not None:
                try:
                    r, _, _ = select.select([master], [master] if want_write else [], [], timeout)
                except (OSError, ValueError):
                    r = []
            else:
                time.sleep(min(timeout, 0.01) if timeout > 0 else 0.001)
                r = []
            now = time.monotonic()
            with self._lock:
                if r:
                    self._read(now)
                while self._rx_pending and self._rx_pending[0][0] <= now:
                    self.core.handle(self._rx_pending.popleft()[1], now)
                while self._cmd:
                    name, arg, done = self._cmd[0]
                    if not self._do_command(name, arg, now):
                        break
                    self._cmd.popleft()
                    done.set()
                    if name == "reboot":
                        next_tick = now
                self.core.poll(now)
                if now >= next_tick:
                    self._tick(next_tick, now)
                    next_tick += self.period_s
                    if next_tick < now - self.period_s:
                        next_tick = now + self.period_s
                self._flush()
                self._changed.notify_all()


def start_virtual_robot(plant: Plant | Any | None = None, rate_hz: float = 50.0, **kwargs: Any) -> VirtualRobot:
    """Create and start a :class:`VirtualRobot` (default plant: ``IntegratorPlant()``); use ``.port``."""
    return VirtualRobot(plant if plant is not None else IntegratorPlant(), rate_hz, **kwargs).start()


__all__ = ["VirtualRobot", "start_virtual_robot", "IntegratorPlant", "CORRUPTIONS", "TickRecord", "WatchdogTrip"]
