"""The soak of issue #25 compressed into seconds: `kdp-edge run` against the C reference controller in its
own process over a pty, every fault of bench/soak.py's schedule once, SIGTERM at the end.

Nothing here depends on timing: each fault waits (polling, generous bounds) for the controller's own report
that it accepts ACTIONs again, and the assertions are on the controller's and the loop's counters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from firmware_bridge.cbuild import toolchain_missing

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

pytestmark = pytest.mark.skipif(toolchain_missing() is not None, reason=f"C toolchain: {toolchain_missing()}")


@pytest.fixture(scope="module")
def soak(tiny_bundle, tmp_path_factory):
    from soak import FAULTS, SoakConfig, run_soak

    cfg = SoakConfig(duration_s=4.0, first_fault_s=1.0, fault_gap_s=0.3, sample_every_s=1.0, summary_every_s=0.2,
                     log_max_mb=0.05, log_keep=2, garbage_bytes=300, damaged_states=8, stall_ms=600, unplug_ms=300,
                     slow_s=1.0, cpu_s=1.5, recover_timeout_s=60.0, max_faults=len(FAULTS),
                     # the controller's staleness bound: well above valid-for (30 ms) so that a loaded machine's
                     # scheduling delays cannot reach it, well below the plan horizon (320 ms) that a loop
                     # without the stale-STATE bound would run on during the 600 ms stall
                     stale_ms=200.0)
    return run_soak(tiny_bundle, cfg, tmp_path_factory.mktemp("soak"), log=lambda m: None), cfg


def test_soak_every_fault_once_and_recovered(soak):
    from soak import FAULTS

    res, _ = soak
    assert [f["fault"] for f in res["faults"]] == list(FAULTS)
    assert all(f["recovered"] for f in res["faults"]), [f for f in res["faults"] if not f["recovered"]]
    assert not res["crashed"] and res["run_exit_before_sigterm"] is None


def test_soak_executes_no_stale_action(soak):
    from soak import FAULTS

    res, _ = soak
    c = res["controller_final"]
    # the controller acted on most of what the host sent (refusals only inside fault windows), however
    # many cycles the machine's load allowed in the few seconds
    assert c["actions_accepted"] >= max(len(FAULTS), 0.5 * res["totals"]["actions_sent"]), (c, res["totals"])
    assert c["stale_accepted"] == 0 and c["invalid_accepted"] == 0 and c["unknown_state_accepted"] == 0
    assert c["max_age_us"] < 200_000
    t = res["totals"]
    assert t["invalid_obs"] >= 2 * 8 - 2, "the NaN and out-of-range STATEs were refused by the loop"
    assert t["stale_obs_refused"] >= 1, "during the stall the loop stopped acting on the last STATE"


def test_soak_watchdog_trips_where_expected_and_the_link_counts_the_damage(soak):
    res, _ = soak
    for f in res["faults"]:
        if f["trip_expected"]:  # stall, NaN, out-of-range, unplug: the host goes quiet, the controller zeroes
            assert f["watchdog_trips"] >= 1, f
    t = res["totals"]
    assert t["crc_errors"] >= 1 and t["resyncs"] >= 1, "garbage and bit flips were seen and survived"
    assert t["reconnects"] >= 1 and t["controller_resets"] >= 1, "the unplug and the reboot were seen"
    assert t["deadline_misses"] >= 1, "the slowed planner missed its deadlines"
    assert t["fallback_actions"] + t["stale_obs_refused"] >= 1, "...and fell back (or, too late, sent nothing)"


def test_soak_sigterm_final_summary_and_bounded_resources(soak):
    res, cfg = soak
    fin = res["final_summary"]
    assert res["run_exit"] == 143 and fin["final"] is True and fin["stopped_by"] == "SIGTERM"
    assert res["controller_final"]["stops"] >= 1, "SIGTERM sent STOP to the controller"
    t = res["totals"]
    assert t["rss_growth_kb"] < 16 * 1024, res["samples"]
    assert t["fds_max"] - min(s["fds"] for s in res["samples"]) <= 2, res["samples"]
    assert len(res["log_files"]) <= cfg.log_keep + 1 and "run.jsonl.1" in res["log_files"]
    assert res["log_dir_bytes"] <= (cfg.log_keep + 1) * cfg.log_max_mb * 1e6
