"""kdp-edge run --realtime: SCHED_FIFO for the control loop's thread, restored after, clear refusals."""

from __future__ import annotations

import os
import threading

import pytest

from kdp_edge.app.realtime import RealtimeError, current_policy, enter_realtime, realtime

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="SCHED_FIFO is Linux-only")


def _in_thread(fn):
    """Run ``fn`` in a fresh thread (the policy is per thread: pytest's own thread is never switched)."""
    out: dict = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join(30)
    return out


def test_realtime_block_switches_the_thread_and_restores_it():
    def body():
        seen = {"before": current_policy()}
        with realtime(10) as info:
            seen["inside"], seen["info"] = current_policy(), info
        seen["after"] = current_policy()
        return seen

    out = _in_thread(body)
    if "error" in out:  # not permitted here (no root / CAP_SYS_NICE): the refusal says how to allow it
        assert isinstance(out["error"], RealtimeError) and "fix:" in str(out["error"])
        assert "CAP_SYS_NICE" in str(out["error"]) and "rtprio" in str(out["error"])
        return
    seen = out["value"]
    assert seen["inside"] == {"policy": "SCHED_FIFO", "priority": 10} == seen["info"]
    assert seen["after"] == seen["before"] and seen["before"]["policy"] == "SCHED_OTHER"
    assert current_policy()["policy"] == "SCHED_OTHER"  # this thread was never touched


def test_no_priority_leaves_the_policy_alone():
    def body():
        with realtime(None) as info:
            return info, current_policy()

    info, inside = _in_thread(body)["value"]
    assert info is None and inside["policy"] == "SCHED_OTHER"


def test_refusals_name_the_fix(monkeypatch):
    def refuse(*_):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    with pytest.raises(RealtimeError, match=r"kernel refused SCHED_FIFO .*fix: run as root"):
        enter_realtime(50)
    with pytest.raises(RealtimeError, match=r"priorities are 1\.\.99"):
        enter_realtime(120)


def test_run_realtime_in_its_summary(tiny_bundle, tmp_path, cli_env):
    """`kdp-edge run --realtime`: the loop runs (or is refused with exit 2 and the fix) and says so."""
    import json
    import subprocess

    pytest.importorskip("mujoco")
    from conftest import kdp_cmd

    summary = tmp_path / "s.json"
    r = subprocess.run(kdp_cmd("run", str(tiny_bundle), "--port", "sim://pointmaze-umaze", "--cycles", "40",
                               "--realtime", "10", "--summary", str(summary)),
                       env=cli_env, capture_output=True, text=True, timeout=300)
    if r.returncode == 2:
        assert "SCHED_FIFO" in r.stderr and "fix:" in r.stderr
        return
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(summary.read_text())["scheduling"] == {"policy": "SCHED_FIFO", "priority": 10}
    assert "SCHED_FIFO priority 10" in r.stderr
