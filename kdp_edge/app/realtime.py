"""Real-time scheduling for the control loop (``kdp-edge run --realtime PRIO``), Linux only.

On a Raspberry Pi or Jetson the loop shares the CPU with logging, a desktop, a camera pipeline. Under
``SCHED_FIFO`` the control thread runs whenever it is ready, before every normal process, so other
load no longer stretches its latency tail. Only the calling thread is switched: threads started
before (the summary writer, a virtual robot) keep the normal policy, and the loop blocks on the
serial port or its timer between cycles, so it never starves the machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from kdp_edge.errors import KDPError


class RealtimeError(KDPError):
    """The scheduler refused the real-time policy (permissions, platform, priority)."""


def enter_realtime(priority: int) -> dict:
    """Switch the calling thread to ``SCHED_FIFO`` at ``priority`` (1..99). Returns what was set,
    for the run summary: ``{"policy": "SCHED_FIFO", "priority": priority}``."""
    if not hasattr(os, "sched_setscheduler"):
        raise RealtimeError("--realtime needs Linux's SCHED_FIFO, which this platform lacks. fix: drop --realtime")
    lo, hi = os.sched_get_priority_min(os.SCHED_FIFO), os.sched_get_priority_max(os.SCHED_FIFO)
    if not lo <= priority <= hi:
        raise RealtimeError(f"--realtime {priority}: SCHED_FIFO priorities are {lo}..{hi}. fix: e.g. --realtime 50 "
                            "(below the kernel's own threads at 99)")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError as e:
        raise RealtimeError(
            f"--realtime {priority}: the kernel refused SCHED_FIFO ({e.strerror}). fix: run as root, give the "
            "interpreter CAP_SYS_NICE (sudo setcap cap_sys_nice+ep \"$(readlink -f \"$(which python3)\")\"), or allow "
            "your user real-time priorities ('@robot - rtprio 60' in /etc/security/limits.conf, then log in again); "
            "or drop --realtime") from e
    return {"policy": "SCHED_FIFO", "priority": priority}


@contextmanager
def realtime(priority: int | None) -> Iterator[dict | None]:
    """``SCHED_FIFO`` at ``priority`` for the calling thread inside the block (None: leave the policy as it
    is); the policy it had is restored on the way out, however the block ends."""
    if priority is None:
        yield None
        return
    before = os.sched_getscheduler(0), os.sched_getparam(0)
    info = enter_realtime(priority)
    try:
        yield info
    finally:
        os.sched_setscheduler(0, *before)


def current_policy() -> dict:
    """The calling thread's scheduling policy and priority."""
    if not hasattr(os, "sched_getscheduler"):
        return {"policy": "unknown", "priority": 0}
    names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR"}
    pol = os.sched_getscheduler(0)
    return {"policy": names.get(pol, str(pol)), "priority": os.sched_getparam(0).sched_priority}
