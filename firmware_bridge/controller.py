"""Python twin of ``firmware/kdp_ctrl.c``: the controller-side protocol rules.

Used by the Python virtual robot. Same rules as the C core (PROTOCOL.md, ACTION section):
reject wrong dim / non-finite / valid_for 0 / stale / from-the-future / planned-before-STOP /
e-stop; clamp to limits; watchdog deadline = receive time + min(valid_for_ms, max_valid_for_ms).
Times are seconds from ``time.monotonic()``.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass

from .protocol import (
    Action,
    Estop,
    Fault,
    FaultCode,
    Heartbeat,
    Hello,
    HelloReq,
    Message,
    ResetNotice,
    State,
    StateFlags,
    Stop,
)
from .seqnum import U32_MOD, seq_newer


@dataclass(frozen=True)
class ActionRecord:
    """One received ACTION as the controller saw it (for tests and debugging)."""

    rx_time: float
    seq: int
    state_seq: int
    newest_state_seq: int | None
    accepted: bool
    reason: str


@dataclass(frozen=True)
class WatchdogTrip:
    """One watchdog trip on the controller's clock (seconds, as given to ``handle`` / ``poll``): ``deadline``
    is the expired ACTION's receive time + min(valid_for, max_valid_for), ``time`` the check that found it
    passed (never before ``deadline``), ``action_seq`` the expired ACTION's seq."""

    time: float
    deadline: float
    action_seq: int


class ControllerCore:
    """Protocol state machine of a controller. ``send`` transmits a message; seqs are assigned here."""

    def __init__(
        self,
        *,
        state_dim: int,
        action_min: tuple[float, ...],
        action_max: tuple[float, ...],
        max_valid_for_ms: int,
        state_period_us: int,
        boot_id: int,
        fw_version: int,
        fw_signature: int,
        fw_name: str,
        send: Callable[[Message], None],
        clock_us: Callable[[], int],
    ) -> None:
        self.state_dim = state_dim
        self.action_min = tuple(action_min)
        self.action_max = tuple(action_max)
        self.action_dim = len(self.action_min)
        self.max_valid_for_ms = max_valid_for_ms
        self.state_period_us = state_period_us
        self.boot_id = boot_id
        self.fw_version = fw_version
        self.fw_signature = fw_signature
        self.fw_name = fw_name
        self._send = send
        self._clock_us = clock_us
        self.stats: collections.Counter[str] = collections.Counter()
        self.action_log: list[ActionRecord] = []
        self.watchdog_log: list[WatchdogTrip] = []
        self.tx_seq = 0
        self.outputs = [0.0] * self.action_dim
        self.active = False
        self.saturated = False
        self.watchdog_tripped = False
        self.stopped = False
        self.estop = False
        self.rejected_since_state = False
        self.deadline = 0.0
        self.last_state_seq: int | None = None
        self.last_accepted_state_seq: int | None = None
        self.last_action_seq = 0
        self.stop_state_seq = 0

    def _next_seq(self) -> int:
        s = self.tx_seq
        self.tx_seq = (s + 1) % U32_MOD
        return s

    def emit(self, make: Callable[[int, int], Message]) -> Message:
        """Build a message with the next seq and the current timestamp and send it."""
        msg = make(self._next_seq(), self._clock_us())
        self._send(msg)
        return msg

    def hello(self, nonce: int) -> None:
        """Send HELLO (capabilities)."""
        self.emit(lambda s, t: Hello(nonce, self.boot_id, self.fw_version, self.fw_signature, self.state_period_us,
                                     self.state_dim, self.action_min, self.action_max, self.max_valid_for_ms,
                                     self.fw_name, seq=s, timestamp_us=t))

    def boot(self, cause: int) -> None:
        """Send the RESET notice and an unsolicited HELLO."""
        self.emit(lambda s, t: ResetNotice(self.boot_id, cause, seq=s, timestamp_us=t))
        self.hello(0)

    def fault(self, code: int, text: str, estop: bool = False) -> None:
        """Send FAULT (or ESTOP) with ``text`` (truncated to 64 bytes)."""
        cls = Estop if estop else Fault
        self.emit(lambda s, t: cls(code, text.encode()[:64].decode(errors="ignore"), seq=s, timestamp_us=t))

    def _zero(self) -> None:
        self.outputs = [0.0] * self.action_dim
        self.active = False
        self.saturated = False

    def _reject(self, a: Action, now: float, why: str) -> None:
        self.stats["actions_rejected"] += 1
        self.stats[f"rejected_{why.split()[0]}"] += 1
        self.action_log.append(ActionRecord(now, a.seq, a.state_seq, self.last_state_seq, False, why))
        if not self.rejected_since_state:
            self.fault(FaultCode.BAD_ACTION, why)
        self.rejected_since_state = True

    def _action(self, a: Action, now: float) -> None:
        if self.estop:
            return self._reject(a, now, "estop latched")
        if a.action_dim != self.action_dim:
            return self._reject(a, now, "dim wrong")
        if a.valid_for_ms == 0:
            return self._reject(a, now, "valid_for 0")
        if not all(math.isfinite(v) for v in a.values):
            return self._reject(a, now, "nonfinite action")
        if self.last_state_seq is None or seq_newer(a.state_seq, self.last_state_seq):
            return self._reject(a, now, "future state_seq")
        if self.last_accepted_state_seq is not None and seq_newer(self.last_accepted_state_seq, a.state_seq):
            return self._reject(a, now, "stale state_seq")
        if self.stopped and not seq_newer(a.state_seq, self.stop_state_seq):
            return self._reject(a, now, "before STOP")
        out, sat = [], False
        for v, lo, hi in zip(a.values, self.action_min, self.action_max, strict=True):
            c = min(max(v, lo), hi)
            sat = sat or c != v
            out.append(c)
        self.outputs = out
        self.saturated = sat
        self.active = True
        self.watchdog_tripped = False
        self.stopped = False
        self.deadline = now + min(a.valid_for_ms, self.max_valid_for_ms) / 1000.0
        self.last_accepted_state_seq = a.state_seq
        self.last_action_seq = a.seq
        self.stats["actions_accepted"] += 1
        self.action_log.append(ActionRecord(now, a.seq, a.state_seq, self.last_state_seq, True, ""))

    def handle(self, msg: Message, now: float) -> None:
        """Process one message from the host received at ``now`` (seconds)."""
        if isinstance(msg, Action):
            self._action(msg, now)
        elif isinstance(msg, HelloReq):
            self.stats["hellos"] += 1
            self.hello(msg.nonce)
        elif isinstance(msg, Heartbeat):
            if not msg.is_reply:
                self.stats["heartbeats"] += 1
                self.emit(lambda s, t: Heartbeat(self.boot_id, msg.nonce, True, seq=s, timestamp_us=t))
        elif isinstance(msg, Stop):
            self._zero()
            self.stopped = True
            self.stop_state_seq = self.last_state_seq if self.last_state_seq is not None else 0
            self.stats["stops"] += 1
        elif isinstance(msg, Estop):
            self._zero()
            self.estop = True
            self.stats["estops"] += 1
        elif isinstance(msg, Fault):
            self.stats["host_faults"] += 1

    def poll(self, now: float) -> None:
        """Watchdog: zero the outputs once the active ACTION expired (each trip is kept in ``watchdog_log``)."""
        if self.active and now >= self.deadline:
            self.watchdog_log.append(WatchdogTrip(now, self.deadline, self.last_action_seq))
            self._zero()
            self.watchdog_tripped = True
            self.stats["watchdog_trips"] += 1
            self.fault(FaultCode.WATCHDOG, "action expired, outputs zeroed")

    def flags(self) -> int:
        """STATE flags for the current condition."""
        f = 0
        if self.watchdog_tripped:
            f |= StateFlags.WATCHDOG_TRIPPED
        if self.estop:
            f |= StateFlags.ESTOP
        if self.stopped:
            f |= StateFlags.STOPPED
        if self.active:
            f |= StateFlags.ACTIVE
            if self.saturated:
                f |= StateFlags.SATURATED
        if self.rejected_since_state:
            f |= StateFlags.ACTION_REJECTED
        return int(f)

    def send_state(self, values: tuple[float, ...], extra_flags: int = 0) -> State:
        """Send a STATE with the current flags; returns it."""
        flags = self.flags() | extra_flags
        msg = self.emit(lambda s, t: State(self.boot_id, flags, self.last_action_seq, values, seq=s, timestamp_us=t))
        self.last_state_seq = msg.seq
        self.rejected_since_state = False
        return msg  # type: ignore[return-value]
