"""Host side of the serial link: :class:`SerialLink`.

Works with anything ``serial.serial_for_url`` opens: a real tty (``/dev/ttyACM0``), a pty from the
virtual controllers, ``loop://`` and ``socket://host:port``. Single-threaded: call it from one thread.

Typical control loop::

    with SerialLink("/dev/ttyACM0") as link:
        caps = link.hello()
        while True:
            state = link.read_state(timeout=0.1)       # newest STATE, older ones dropped
            if state is None or not state.finite:
                continue                               # controller watchdog keeps outputs safe
            action = planner(state.values)
            link.send_action(action, valid_for_ms=100, state_seq=state.seq)

Guarantee: ``send_action`` only sends an ACTION tagged with the seq of the newest STATE that
``read_state`` returned (from the current controller boot, finite); anything older is refused
and counted (``actions_refused_stale``).
"""

from __future__ import annotations

import collections
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import serial

from . import ports
from .errors import (
    CapabilitiesChangedError,
    HelloTimeoutError,
    LinkDisconnectedError,
    LinkError,
    NoResponseError,
    NoValidFramesError,
    ProtocolVersionError,
)
from .protocol import (
    Action,
    Estop,
    Fault,
    FrameDecoder,
    Heartbeat,
    Hello,
    HelloReq,
    Message,
    ResetNotice,
    State,
    StateFlags,
    Stop,
    encode,
)
from .seqnum import U32_MOD, seq_diff, seq_newer

DEFAULT_BAUD = 921600
_MAX_DRAIN_BYTES = 1 << 16


class SerialLink:
    """Protocol endpoint on the host (see module docstring).

    Args:
        port: device path or pyserial URL (``loop://``, ``socket://h:p``).
        baud: baud rate; must match the firmware (default 921600).
        poll_s: read timeout of one blocking read, seconds (bounds the latency of timeouts).
        write_timeout_s: serial write timeout, seconds; a write that times out is counted, not raised.
        no_frames_timeout_s: ``read_state`` raises (NoResponse / NoValidFrames / ProtocolVersion) when
            no valid frame arrived for this long while connected; ``None`` disables it.
        reconnect: reopen the port with exponential backoff when it disappears.
        reconnect_timeout_s: give up (``LinkDisconnectedError``) after this long disconnected.
        backoff_initial_s / backoff_max_s: reconnect backoff bounds, seconds.
        hello_retry_s: resend HELLO_REQ this often while waiting for HELLO.
        max_seq_jump: a STATE more than this many frames ahead of the newest one is held back until the
            next STATE confirms it (guards against a corrupted seq that passed the CRC-16).
        stop_on_close: send STOP from :meth:`close`.
        open_now: open the port in the constructor (errors raise immediately).
        serial_factory: replaces ``serial.serial_for_url`` (tests).
    """

    def __init__(
        self,
        port: str,
        baud: int = DEFAULT_BAUD,
        *,
        poll_s: float = 0.005,
        write_timeout_s: float = 0.1,
        no_frames_timeout_s: float | None = 3.0,
        reconnect: bool = True,
        reconnect_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        hello_retry_s: float = 0.25,
        max_seq_jump: int = 64,
        stop_on_close: bool = True,
        open_now: bool = True,
        serial_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.port = port
        self.baud = baud
        self.poll_s = poll_s
        self.write_timeout_s = write_timeout_s
        self.no_frames_timeout_s = no_frames_timeout_s
        self.reconnect = reconnect
        self.reconnect_timeout_s = reconnect_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.hello_retry_s = hello_retry_s
        self.max_seq_jump = max_seq_jump
        self.stop_on_close = stop_on_close
        self._factory = serial_factory or serial.serial_for_url

        self.decoder = FrameDecoder()
        self.caps: Hello | None = None
        self.faults: collections.deque[Fault] = collections.deque(maxlen=64)
        self.estop: Estop | None = None
        self.session_id = random.getrandbits(32) or 1

        self._ser: Any = None
        self._t0_ns = time.monotonic_ns()
        self._tx_seq = 0
        self._boot_id: int | None = None
        self._pending_boot: int | None = None
        self._newest_seq: int | None = None
        self._jump_candidate: int | None = None
        self._last_rx_seq: int | None = None
        self._fresh: State | None = None
        self._fresh_rx: float = 0.0
        self._returned: State | None = None
        self._returned_rx: float = 0.0
        self._watchdog_flag = False
        self._hello_nonce = 0
        self._hello_pending = False
        self._hello_sent_at = 0.0
        self._caps_error: LinkError | None = None
        self._ping_replies: dict[int, float] = {}
        self._last_frame_at = time.monotonic()
        self._bytes_at_last_frame = 0
        self._disconnected_since: float | None = None
        self._next_reconnect = 0.0
        self._backoff = backoff_initial_s
        self._last_disconnect_reason = ""
        self._c: collections.Counter[str] = collections.Counter()
        self._closed = False
        if open_now:
            self.open()

    # ------------------------------------------------------------------ open / close
    def _open_serial(self) -> None:
        kwargs: dict[str, Any] = {"baudrate": self.baud, "timeout": self.poll_s, "write_timeout": self.write_timeout_s}
        if "://" not in self.port:
            kwargs["exclusive"] = True
        try:
            ser = self._factory(self.port, **kwargs)
        except (serial.SerialException, OSError, ValueError) as e:
            raise ports.describe_open_error(self.port, e, self.baud) from e
        try:
            ser.reset_input_buffer()
        except (serial.SerialException, OSError):  # pragma: no cover - exotic handlers
            pass
        self._ser = ser
        self.decoder.reset()
        now = time.monotonic()
        self._last_frame_at = now
        self._bytes_at_last_frame = self.decoder.stats.bytes_in

    def open(self) -> None:
        """Open the port. Raises PortNotFoundError / PortPermissionError / PortBusyError / LinkError."""
        if self._ser is None:
            self._open_serial()
            self._disconnected_since = None
            self._closed = False

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._ser is not None

    def close(self) -> None:
        """Send STOP (if ``stop_on_close``) and close the port."""
        if self._ser is not None and self.stop_on_close:
            self.send_stop()  # may find the port gone and drop it (then there is nothing to close)
        ser, self._ser = self._ser, None
        self._closed = True  # a closed link does not reconnect by itself
        if ser is not None:
            try:
                ser.flush()
            except (serial.SerialException, OSError):
                pass
            try:
                ser.close()
            except (serial.SerialException, OSError):  # pragma: no cover
                pass

    def __enter__(self) -> SerialLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending
    def _now_us(self) -> int:
        return ((time.monotonic_ns() - self._t0_ns) // 1000) % U32_MOD

    def _next_seq(self) -> int:
        s = self._tx_seq
        self._tx_seq = (s + 1) % U32_MOD
        return s

    def _write(self, msg: Message) -> bool:
        if self._ser is None:
            self._c["tx_dropped_disconnected"] += 1
            return False
        data = encode(msg)
        try:
            self._ser.write(data)
        except serial.SerialTimeoutException:
            self._c["write_timeouts"] += 1
            return False
        except (serial.SerialException, OSError) as e:
            self._on_disconnect(f"write failed: {e}")
            self._c["tx_dropped_disconnected"] += 1
            return False
        self._c["tx_frames"] += 1
        return True

    def _request_hello(self) -> None:
        self._hello_nonce = random.getrandbits(32) or 1
        self._hello_pending = True
        self._hello_sent_at = time.monotonic()
        self._write(HelloReq(self._hello_nonce, seq=self._next_seq(), timestamp_us=self._now_us()))

    def send_action(self, action: Sequence[float] | Any, valid_for_ms: int, state_seq: int, *, clip: bool = True) -> bool:
        """Send an ACTION planned from STATE ``state_seq``; returns True if it was written.

        Refused (False, counted) when ``state_seq`` is not the seq of the newest STATE returned by
        :meth:`read_state` in the current controller boot (``actions_refused_stale``), when that STATE
        was non-finite (``actions_refused_invalid_state``), or when an action value is non-finite
        (``actions_refused_nonfinite``). Values outside the HELLO limits are clipped (``clip``).
        Raises ValueError for a wrong dimension or ``valid_for_ms`` outside 1..65535.
        """
        if self.caps is None:
            raise LinkError("send_action before hello()", "call link.hello() once after opening the port")
        values = [float(v) for v in (action.ravel() if hasattr(action, "ravel") else action)]
        if len(values) != self.caps.action_dim:
            raise ValueError(f"action has {len(values)} values, controller expects {self.caps.action_dim}")
        if not 1 <= int(valid_for_ms) <= 0xFFFF:
            raise ValueError(f"valid_for_ms must be 1..65535, got {valid_for_ms}")
        if not all(math.isfinite(v) for v in values):
            self._c["actions_refused_nonfinite"] += 1
            return False
        ref = self._returned
        if ref is None or ref.seq != state_seq:
            self._c["actions_refused_stale"] += 1
            return False
        if not ref.finite:
            self._c["actions_refused_invalid_state"] += 1
            return False
        if clip:
            lo, hi = self.caps.action_min, self.caps.action_max
            clipped = [min(max(v, lo[i]), hi[i]) for i, v in enumerate(values)]
            if clipped != values:
                self._c["actions_clipped"] += 1
                values = clipped
        ok = self._write(Action(state_seq, int(valid_for_ms), tuple(values), seq=self._next_seq(), timestamp_us=self._now_us()))
        if ok:
            self._c["actions_sent"] += 1
        return ok

    def send_stop(self, reason: int = 0) -> bool:
        """Ask the controller to zero its outputs (clean shutdown). True if written."""
        return self._write(Stop(reason, seq=self._next_seq(), timestamp_us=self._now_us()))

    def send_estop(self, code: int = 0, text: str = "") -> bool:
        """Latch the controller's e-stop (until it reboots). True if written."""
        return self._write(Estop(code, text[:64], seq=self._next_seq(), timestamp_us=self._now_us()))

    def send_fault(self, code: int, text: str = "") -> bool:
        """Report a host-side fault to the controller (informational)."""
        return self._write(Fault(code, text[:64], seq=self._next_seq(), timestamp_us=self._now_us()))

    # ------------------------------------------------------------------ receiving
    def _on_disconnect(self, reason: str) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            except Exception:  # pragma: no cover
                pass
        self._ser = None
        self._last_disconnect_reason = reason
        self._c["disconnects"] += 1
        now = time.monotonic()
        if self._disconnected_since is None:
            self._disconnected_since = now
        self._backoff = self.backoff_initial_s
        self._next_reconnect = now + self._backoff
        self._fresh = None
        self._returned = None  # never plan/act across a link loss
        self.decoder.reset()

    def _try_reconnect(self, now: float) -> None:
        if not self.reconnect or self._closed or now < self._next_reconnect:
            return
        try:
            self._open_serial()
        except LinkError as e:
            self._last_disconnect_reason = e.problem
            self._backoff = min(self._backoff * 2.0, self.backoff_max_s)
            self._next_reconnect = now + self._backoff
            self._c["reconnect_failures"] += 1
            return
        self._disconnected_since = None
        self._c["reconnects"] += 1
        self._request_hello()

    def _pump(self, block: bool) -> None:
        """Read what is available (blocking up to ``poll_s`` for the first byte if ``block``)."""
        now = time.monotonic()
        if self._ser is None:
            self._try_reconnect(now)
            if self._ser is None:
                if block:
                    time.sleep(max(0.0, min(self.poll_s, self._next_reconnect - now)))
                return
        if self._hello_pending and now - self._hello_sent_at > self.hello_retry_s:
            self._request_hello()
        if self._ser is None:
            return
        try:
            waiting = self._ser.in_waiting
            if waiting == 0 and not block:
                return
            data = self._ser.read(max(1, waiting))
        except (serial.SerialException, OSError) as e:
            self._on_disconnect(f"read failed: {e}")
            return
        if data:
            rx_at = time.monotonic()
            for msg in self.decoder.feed(data):
                self._handle(msg, rx_at)

    def _drain(self) -> None:
        start = self.decoder.stats.bytes_in
        while self._ser is not None and self.decoder.stats.bytes_in - start < _MAX_DRAIN_BYTES:
            before = self.decoder.stats.bytes_in
            self._pump(block=False)
            if self.decoder.stats.bytes_in == before:
                break

    def poll(self) -> None:
        """Process everything that has arrived, without blocking (faults, heartbeats, states)."""
        if self._ser is None:
            self._pump(block=False)
        self._drain()

    def _on_reset(self, new_boot: int) -> None:
        self._c["controller_resets"] += 1
        self._pending_boot = new_boot
        self._newest_seq = None
        self._jump_candidate = None
        self._last_rx_seq = None
        self._fresh = None
        self._returned = None
        self._watchdog_flag = False
        self._request_hello()

    def _handle(self, msg: Message, rx_at: float) -> None:
        self._last_frame_at = rx_at
        self._bytes_at_last_frame = self.decoder.stats.bytes_in
        if self._last_rx_seq is not None:
            d = seq_diff(msg.seq, self._last_rx_seq)
            if 1 < d < 10_000:
                self._c["frames_lost"] += d - 1
        if self._last_rx_seq is None or seq_newer(msg.seq, self._last_rx_seq):
            self._last_rx_seq = msg.seq
        if isinstance(msg, State):
            self._handle_state(msg, rx_at)
        elif isinstance(msg, Hello):
            self._handle_hello(msg)
        elif isinstance(msg, ResetNotice):
            self._c["reset_notices"] += 1
            if self._boot_id is not None and msg.boot_id not in (self._boot_id, self._pending_boot):
                self._on_reset(msg.boot_id)
        elif isinstance(msg, Heartbeat):
            if msg.is_reply:
                self._ping_replies[msg.nonce] = rx_at
            else:
                self._write(Heartbeat(self.session_id, msg.nonce, True, seq=self._next_seq(), timestamp_us=self._now_us()))
        elif isinstance(msg, Estop):
            self.estop = msg
            self.faults.append(msg)
            self._c["estops_received"] += 1
        elif isinstance(msg, Fault):
            self.faults.append(msg)
            self._c["faults_received"] += 1
        else:
            self._c["unexpected_messages"] += 1

    def _handle_hello(self, msg: Hello) -> None:
        if msg.nonce not in (0, self._hello_nonce):
            self._c["hellos_ignored"] += 1
            return
        if self.caps is not None and (msg.state_dim, msg.action_dim) != (self.caps.state_dim, self.caps.action_dim):
            self._caps_error = CapabilitiesChangedError(
                f"controller now reports state_dim={msg.state_dim}, action_dim={msg.action_dim} "
                f"(was {self.caps.state_dim}/{self.caps.action_dim})",
                "the firmware changed (re-flashed or a different board on this port): restart the host with "
                "a policy that matches, or reconnect the right controller",
            )
            self._hello_pending = False
            return
        if self._boot_id is not None and msg.boot_id != self._boot_id and msg.boot_id != self._pending_boot:
            self._on_reset(msg.boot_id)  # reboot seen first through HELLO
        self.caps = msg
        self._boot_id = msg.boot_id
        self._pending_boot = None
        self._hello_pending = False
        self._c["hellos"] += 1

    def _handle_state(self, msg: State, rx_at: float) -> None:
        c = self._c
        if self.caps is None or self._boot_id is None:
            c["states_before_hello"] += 1
            if not self._hello_pending:
                self._request_hello()
            return
        if msg.boot_id != self._boot_id:
            if msg.boot_id != self._pending_boot:
                self._on_reset(msg.boot_id)
            c["states_ignored_reset"] += 1
            return
        if msg.state_dim != self.caps.state_dim:
            c["states_bad_dim"] += 1
            return
        if self._newest_seq is not None:
            d = seq_diff(msg.seq, self._newest_seq)
            if d <= 0:
                c["states_duplicate" if d == 0 else "states_out_of_order"] += 1
                return
            if d > self.max_seq_jump:
                # A big jump is either frames lost (fine) or a corrupted seq that slipped through the
                # CRC-16 (then it would make every genuine STATE look old): believe it only when the
                # next STATE follows it closely.
                cand = self._jump_candidate
                if cand is None or not 0 < seq_diff(msg.seq, cand) <= self.max_seq_jump:
                    self._jump_candidate = msg.seq
                    c["states_seq_jump_held"] += 1
                    return
        self._jump_candidate = None
        self._newest_seq = msg.seq
        c["states_received"] += 1
        if self._fresh is not None:
            c["states_dropped_stale"] += 1
        if not msg.finite:
            c["states_nonfinite"] += 1
        tripped = bool(msg.flags & StateFlags.WATCHDOG_TRIPPED)
        if tripped and not self._watchdog_flag:
            c["watchdog_trips_seen"] += 1
        self._watchdog_flag = tripped
        self._fresh = msg
        self._fresh_rx = rx_at

    def _check_health(self, now: float) -> None:
        if self._closed:
            raise LinkError(f"link to {self.port} is closed", "call link.open() (or create a new SerialLink)")
        if self._caps_error is not None:
            err, self._caps_error = self._caps_error, None
            raise err
        if self._ser is None:
            if self._disconnected_since is not None and now - self._disconnected_since > self.reconnect_timeout_s:
                raise LinkDisconnectedError(
                    f"{self.port} disconnected for {now - self._disconnected_since:.1f}s ({self._last_disconnect_reason})",
                    "check the USB cable / power of the controller; the link retries with backoff "
                    f"up to {self.reconnect_timeout_s:.0f}s",
                )
            return
        if self.no_frames_timeout_s is not None and now - self._last_frame_at > self.no_frames_timeout_s:
            raise self._diagnose(now - self._last_frame_at, self.decoder.stats.bytes_in - self._bytes_at_last_frame)

    def _diagnose(self, seconds: float, nbytes: int) -> LinkError:
        st = self.decoder.stats
        if nbytes == 0:
            return NoResponseError(
                f"no bytes from {self.port} for {seconds:.1f}s",
                "is the controller powered and running the kdp firmware, and is this the right port? "
                + ("; ".join(ports.available_ports()) or "no serial ports found"),
            )
        if st.version_mismatch and not st.frames_ok:
            return ProtocolVersionError(
                f"{st.version_mismatch} frames from {self.port} use another protocol version",
                "flash firmware that matches this host (protocol v1), or update the host",
            )
        return NoValidFramesError(
            f"{nbytes} bytes from {self.port} in {seconds:.1f}s but no valid frame "
            f"(crc_errors={st.crc_errors}, malformed={st.malformed}, oversize={st.oversize})",
            f"wrong baud? expected {self.baud} on both sides; otherwise the device on this port is not a kdp "
            "controller (serial console, other firmware) or the cable is noisy",
        )

    # ------------------------------------------------------------------ public API
    def hello(self, timeout: float = 2.0) -> Hello:
        """Send HELLO_REQ (repeated every ``hello_retry_s``) and return the controller's :class:`Hello`."""
        start = time.monotonic()
        deadline = start + timeout
        frames0, bytes0 = self.decoder.stats.frames_ok, self.decoder.stats.bytes_in
        if self._closed:
            raise LinkError(f"link to {self.port} is closed", "call link.open() (or create a new SerialLink)")
        self._request_hello()
        while True:
            self._pump(block=True)
            if self._caps_error is not None:
                self._check_health(time.monotonic())
            if not self._hello_pending and self.caps is not None:
                return self.caps
            now = time.monotonic()
            if now >= deadline:
                break
        frames = self.decoder.stats.frames_ok - frames0
        if frames:
            raise HelloTimeoutError(
                f"{frames} frames from {self.port} in {timeout:.1f}s but no answer to HELLO_REQ",
                "the host → controller direction is broken (TX wire, adapter, flow control) or the firmware "
                "does not implement HELLO",
            )
        if self._ser is None:
            raise LinkDisconnectedError(f"{self.port} is disconnected ({self._last_disconnect_reason})",
                                        "check the cable / that the controller is running")
        raise self._diagnose(timeout, self.decoder.stats.bytes_in - bytes0)

    def read_state(self, timeout: float) -> State | None:
        """Newest STATE not returned before, waiting up to ``timeout`` seconds; None if none arrived.

        STATEs that were superseded before being returned are dropped (``states_dropped_stale``);
        duplicate and out-of-order STATEs are ignored. A non-finite STATE is returned (check
        ``state.finite``) but ``send_action`` refuses to act on it. Raises the errors of
        :meth:`_check_health` (no frames for ``no_frames_timeout_s``, disconnected too long,
        capabilities changed after a reboot).
        """
        if self.caps is None and not self._hello_pending:
            self._request_hello()
        deadline = time.monotonic() + max(0.0, timeout)
        self.poll()
        while True:
            now = time.monotonic()
            self._check_health(now)
            if self._fresh is not None:
                s, self._fresh = self._fresh, None
                self._returned, self._returned_rx = s, self._fresh_rx
                return s
            if now >= deadline:
                return None
            self._pump(block=True)
            self._drain()

    @property
    def latest_state(self) -> State | None:
        """The STATE last returned by :meth:`read_state` (the only seq :meth:`send_action` accepts)."""
        return self._returned

    @property
    def latest_state_rx_time(self) -> float | None:
        """``time.monotonic()`` when the last returned STATE arrived (host clock, seconds)."""
        return None if self._returned is None else self._returned_rx

    def state_age_s(self) -> float | None:
        """Seconds since the last returned STATE was received."""
        return None if self._returned is None else time.monotonic() - self._returned_rx

    def ping(self, timeout: float = 0.5) -> float | None:
        """Round-trip time of a HEARTBEAT in seconds (None on timeout)."""
        nonce = random.getrandbits(32)
        t0 = time.monotonic()
        if not self._write(Heartbeat(self.session_id, nonce, False, seq=self._next_seq(), timestamp_us=self._now_us())):
            return None
        while time.monotonic() - t0 < timeout:
            self._pump(block=True)
            if nonce in self._ping_replies:
                return self._ping_replies.pop(nonce) - t0
        return None

    @property
    def stats(self) -> dict[str, Any]:
        """Counters of the link (and ``rx_*`` of the frame decoder) plus connection facts."""
        out: dict[str, Any] = {
            k: 0 for k in (
                "states_received", "states_dropped_stale", "states_out_of_order", "states_duplicate",
                "states_nonfinite", "states_seq_jump_held", "states_ignored_reset", "controller_resets", "actions_sent",
                "actions_refused_stale", "actions_refused_nonfinite", "actions_refused_invalid_state",
                "frames_lost", "disconnects", "reconnects", "reconnect_failures", "write_timeouts",
                "watchdog_trips_seen",
            )
        }
        out.update(self._c)
        out.update({f"rx_{k}": v for k, v in self.decoder.stats.as_dict().items()})
        out["connected"] = self.connected
        out["boot_id"] = self._boot_id
        out["estop"] = self.estop is not None
        return out


def open_link(port: str, baud: int = DEFAULT_BAUD, hello_timeout: float = 2.0, **kwargs: Any) -> tuple[SerialLink, Hello]:
    """Open ``port``, do the HELLO handshake and return ``(link, caps)``; closes the port on failure."""
    link = SerialLink(port, baud, **kwargs)
    try:
        caps = link.hello(hello_timeout)
    except BaseException:
        link.stop_on_close = False
        link.close()
        raise
    return link, caps


__all__ = ["SerialLink", "open_link", "DEFAULT_BAUD"]
