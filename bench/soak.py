"""Soak: ``kdp-edge run`` for an hour (``--minutes``) against the C reference controller, under faults.

    python bench/soak.py --bundle out/demo-quick/bundle --minutes 60 --out bench/results/soak

Three processes: this driver; the C reference controller (``firmware_bridge/firmware/virtual_controller.c``,
double-integrator plant, started with ``--commands`` for fault injection) serving the protocol on a pty
behind a stable symlink; and ``kdp-edge run BUNDLE --port <symlink>`` at 100 Hz (STATE-paced, the int8
model when the bundle has it) with a rotated log and a periodic summary. Every ``--fault-gap`` seconds the
driver injects the next fault of the schedule, round robin:

    garbage   a burst of random bytes on the wire (controller -> host)
    bitflip   one flipped bit in each of the next N STATE frames (the CRC must reject them)
    nan       N STATEs with NaN (nothing may be planned or sent on them)
    range     N STATEs with 1e30 (out of range: refused by ``--obs-abs-max``)
    stall     no STATE for longer than valid-for (the host must stop acting; the watchdog trips)
    slow      the planner slowed past the deadline for a while (SIGUSR1 toggles ``--slow-plan-ms``)
    reboot    controller reset: new boot id, seq from 0
    cpu       another process burning a CPU core for a while
    unplug    the pty closed and reopened under the same path (link lost and found again)

and at the end sends SIGTERM to the run. Measured (JSON + markdown): cycles, deadline misses after
warm-up, fallback actions, **stale actions executed** (the controller checks every ACTION it accepts
against the STATE it answers: older than the ACTION's valid-for time, or an injected NaN / out-of-range
STATE), watchdog trips and time to trip, time to recover after each fault (the first ACTION the
controller accepts after the fault ended), CRC errors, resyncs, reconnects, RSS and open fds of the run
process at start / every ``--sample-minutes`` / end, plan p50 / p99 per slice (from the histograms in
the periodic summaries), and the size of the log directory.

``run_soak`` is also what tests/test_soak.py runs, with the schedule compressed into seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_bridge.cbuild import CVirtualController, build_firmware  # noqa: E402
from kdp_edge.runtime.loop import percentiles_from_counts  # noqa: E402

FAULTS = ("garbage", "bitflip", "nan", "range", "stall", "slow", "reboot", "cpu", "unplug")
CONTROLLER_FAULTS = {"garbage", "bitflip", "nan", "range", "stall", "reboot", "unplug"}
TRIP_EXPECTED = {"stall", "nan", "range", "unplug"}  # the host must go quiet: the controller's watchdog trips


@dataclass
class SoakConfig:
    duration_s: float = 3600.0
    rate_hz: float = 100.0
    fault_gap_s: float = 60.0  # between the end of one fault's recovery and the next fault
    first_fault_s: float = 20.0
    sample_every_s: float = 300.0  # RSS / fds / plan-latency slice
    summary_every_s: float = 5.0
    log_max_mb: float = 5.0
    log_keep: int = 3
    garbage_bytes: int = 512
    damaged_states: int = 10  # bitflip / nan / range: this many STATEs
    stall_ms: int = 500
    unplug_ms: int = 1000
    slow_s: float = 10.0
    slow_plan_ms: float = 15.0  # > the 10 ms period at 100 Hz, < the 30 ms valid-for
    cpu_s: float = 20.0
    stale_ms: float = 0.0  # controller's staleness bound; 0: each ACTION's own valid-for time
    recover_timeout_s: float = 20.0
    max_faults: int = 0  # > 0: inject exactly this many, running past duration_s if needed (tests)
    obs_abs_max: float = 1000.0
    faults: tuple[str, ...] = FAULTS
    goal: tuple[float, float] = (-1.0, 1.0)  # UMaze D4RL goal cell (1, 1)
    start: tuple[float, float] = (-1.0, -1.0)  # the controller reports x = start + integrated position
    extra_run_args: list[str] = field(default_factory=list)
    # SCHED_FIFO priority of kdp-edge run's loop (--realtime) and of the controller process, which stands in
    # for a microcontroller nothing else runs on; None: both under the default policy
    realtime: int | None = None


def terminate(proc: subprocess.Popen, timeout: float) -> None:
    """Wait up to ``timeout`` s for ``proc`` (already sent SIGTERM) to stop cleanly, then kill it."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def proc_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def read_summary(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def dir_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.iterdir() if f.is_file())


def _wait(pred, timeout_s: float, poll_s: float = 0.05, alive=None):
    """Poll ``pred()`` until truthy (returned) or ``timeout_s`` passes (None). ``alive()`` False aborts."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        if alive is not None and not alive():
            return None
        time.sleep(poll_s)
    return None


_HOST_KEYS = ("cycles", "deadline_misses", "fallback_actions", "invalid_obs", "no_obs", "stale_obs_refused",
              "send_failed", "actions_sent", "horizon_exhausted")
_LINK_KEYS = ("rx_crc_errors", "rx_resyncs", "rx_malformed", "reconnects", "disconnects", "controller_resets",
              "states_nonfinite", "watchdog_trips_seen", "actions_refused_stale")


def _host_counts(s: dict | None) -> dict:
    if not s:
        return {}
    out = {k: s["counts"].get(k, 0) for k in _HOST_KEYS}
    out.update({k: s.get("link", {}).get(k, 0) for k in _LINK_KEYS})
    return out


def run_soak(bundle: str | Path, cfg: SoakConfig, work: Path, log=print) -> dict:
    """Run the soak (see module docstring); returns the result dict. ``work``: logs, summary, controller pty."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    logdir = work / "logs"
    logdir.mkdir(exist_ok=True)
    summary_path = work / "summary.json"
    port = work / "tty"
    build = build_firmware(Path(tempfile.gettempdir()) / f"kdp-soak-fw-{os.getuid()}")
    ctl_args = ["--rate", str(cfg.rate_hz), "--state-dim", "4", "--action-dim", "2", "--damping", "2",
                "--max-valid-ms", "500", "--link", str(port),
                "--state-offset", f"{cfg.start[0]},{cfg.start[1]},0,0"]
    if cfg.stale_ms > 0:
        ctl_args += ["--stale-ms", str(cfg.stale_ms)]
    vc = CVirtualController(build / "virtual_controller", *ctl_args, commands=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run_cmd = [sys.executable, "-m", "kdp_edge.cli", "run", str(bundle), "--port", str(port),
               "--rate", str(cfg.rate_hz), "--goal", f"{cfg.goal[0]},{cfg.goal[1]}",
               "--duration", str(cfg.duration_s + 600), "--log", str(logdir / "run.jsonl"),
               "--log-max-mb", str(cfg.log_max_mb), "--log-keep", str(cfg.log_keep),
               "--summary", str(summary_path), "--summary-every", str(cfg.summary_every_s),
               "--obs-abs-max", str(cfg.obs_abs_max), "--slow-plan-ms", str(cfg.slow_plan_ms), "--slow-plan-toggle",
               *(["--realtime", str(cfg.realtime)] if cfg.realtime else []), *cfg.extra_run_args]
    if cfg.realtime:
        os.sched_setscheduler(vc.proc.pid, os.SCHED_FIFO, os.sched_param(cfg.realtime))
    out_f = open(work / "run.stdout", "w")  # noqa: SIM115
    err_f = open(work / "run.stderr", "w")  # noqa: SIM115
    proc = subprocess.Popen(run_cmd, env=env, stdout=out_f, stderr=err_f)
    alive = lambda: proc.poll() is None  # noqa: E731
    res: dict = {"config": asdict(cfg), "faults": [], "samples": [], "run_cmd": " ".join(run_cmd)}
    try:
        first = _wait(lambda: read_summary(summary_path), 120.0, 0.1, alive)
        if first is None:
            raise RuntimeError(f"kdp-edge run wrote no summary (exit {proc.poll()}): "
                               f"{(work / 'run.stderr').read_text()[-2000:]}")
        t0 = time.monotonic()
        t_end = t0 + cfg.duration_s

        def sample(tag: str) -> None:
            s = read_summary(summary_path)
            res["samples"].append({
                "t_s": round(time.monotonic() - t0, 2), "tag": tag, "rss_kb": proc_rss_kb(proc.pid),
                "fds": proc_fds(proc.pid), "controller_rss_kb": proc_rss_kb(vc.proc.pid),
                "controller_fds": proc_fds(vc.proc.pid), "log_dir_bytes": dir_bytes(logdir),
                "cycles": (s or {}).get("counts", {}).get("cycles"),
                # plan latency without the slowed-planner drill's plans (its 15 ms sleeps are the fault, not drift)
                "plan_hist": ((s or {}).get("histograms") or {}).get("plan_ms_unslowed", {}),
            })

        sample("start")
        next_sample = t0 + cfg.sample_every_s
        next_fault = t0 + cfg.first_fault_s
        i = 0
        more = lambda: bool(cfg.faults) and (cfg.max_faults <= 0 or i < cfg.max_faults)  # noqa: E731
        while alive() and (time.monotonic() < t_end or (cfg.max_faults > 0 and more())):
            now = time.monotonic()
            if now >= next_sample:
                sample("periodic")
                next_sample += cfg.sample_every_s
            if now >= next_fault and more():
                name = cfg.faults[i % len(cfg.faults)]
                i += 1
                rec = inject(name, cfg, vc, proc, alive)
                rec["t_s"] = round(now - t0, 2)
                res["faults"].append(rec)
                log(f"[{rec['t_s']:7.1f} s] {name}: recovered {rec['recovered']}"
                    + (f" in {rec['recover_ms']:.1f} ms" if rec.get("recover_ms") is not None else "")
                    + (f", watchdog trip {rec['trip_ms']:.1f} ms after the fault" if rec.get("trip_ms") is not None
                       else ""))
                next_fault = time.monotonic() + cfg.fault_gap_s
            time.sleep(min(0.2, max(0.0, min(next_sample, next_fault) - time.monotonic())))
        if not alive() and proc.returncode == 130:  # Ctrl-C reached the run too: it stopped cleanly, so do we
            raise KeyboardInterrupt
        sample("end")
        res["crashed"] = not alive()
        res["run_exit_before_sigterm"] = proc.poll()
        if alive():
            proc.send_signal(signal.SIGTERM)
        terminate(proc, timeout=60)
        res["run_exit"] = proc.returncode
        res["controller"] = vc.live_stats()
    finally:  # Ctrl-C or an error: the run stops the clean way (STOP, final summary) if it can
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            terminate(proc, timeout=15)
        out_f.close()
        err_f.close()
        vc.close()
    res["controller_final"] = vc.stats()
    res["events"] = vc.events
    final = read_summary(summary_path) or {}
    res["final_summary"] = {k: v for k, v in final.items() if k != "histograms"}
    res["log_files"] = sorted(f.name for f in logdir.iterdir())
    res["log_dir_bytes"] = dir_bytes(logdir)
    res["wall_s"] = round(time.monotonic() - t0, 1)
    res.update(analyse(res, cfg))
    return res


def inject(name: str, cfg: SoakConfig, vc: CVirtualController, proc: subprocess.Popen, alive) -> dict:
    """Inject one fault and wait (bounded) until the controller accepts ACTIONs again after it."""
    t_start = time.monotonic()
    n_events = len(vc.events)
    before = vc.live_stats()
    rec: dict = {"fault": name}
    if name == "garbage":
        vc.command(f"garbage {cfg.garbage_bytes}")
    elif name in ("bitflip", "nan", "range"):
        vc.command(f"{name} {cfg.damaged_states}")
    elif name == "stall":
        vc.command(f"stall {cfg.stall_ms}")
    elif name == "reboot":
        vc.command("reboot")
    elif name == "unplug":
        vc.command(f"reopen {cfg.unplug_ms}", timeout=cfg.unplug_ms / 1e3 + 10)
    elif name == "slow":
        os.kill(proc.pid, signal.SIGUSR1)  # slow planner on
        _wait(lambda: not alive(), cfg.slow_s, 0.05)  # the fault's own duration
        os.kill(proc.pid, signal.SIGUSR1)  # off
    elif name == "cpu":
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            _wait(lambda: not alive(), cfg.cpu_s, 0.05)
        finally:
            hog.kill()
            hog.wait()
    t_fault_end = time.monotonic()
    rec["fault_s"] = round(t_fault_end - t_start, 3)
    if name in CONTROLLER_FAULTS:  # the controller reports the first accepted ACTION after the fault ended
        ev = _wait(lambda: next((e for e in vc.events[n_events:] if e["event"] == "recovered"
                                 and e.get("cmd") == {"unplug": "reopen"}.get(name, name)), None),
                   cfg.recover_timeout_s, 0.02, alive)
        rec["recovered"] = ev is not None
        rec["recover_ms"] = None if ev is None else ev["us"] / 1e3
    else:  # host-side faults: the controller keeps accepting ACTIONs after the fault
        base = vc.live_stats()["actions_accepted"]
        t0 = time.monotonic()
        ok = _wait(lambda: vc.live_stats()["actions_accepted"] > base, cfg.recover_timeout_s, 0.02, alive)
        rec["recovered"] = bool(ok)
        rec["recover_ms"] = 1e3 * (time.monotonic() - t0) if ok else None
    after = vc.live_stats()
    trips = [e for e in vc.events[n_events:] if e["event"] == "watchdog_trip"]
    rec["watchdog_trips"] = len(trips)
    rec["trip_expected"] = name in TRIP_EXPECTED
    if trips:
        rec["trip_ms"] = trips[0]["us_since_fault"] / 1e3 if trips[0].get("us_since_fault", -1) >= 0 else None
        rec["trip_after_last_state_ms"] = trips[0]["us_since_last_state"] / 1e3
        rec["trip_after_last_action_ms"] = trips[0]["us_since_last_accept"] / 1e3
    rec["controller_delta"] = {k: after[k] - before.get(k, 0) for k in
                               ("actions_accepted", "stale_accepted", "invalid_accepted", "watchdog_trips", "rx_crc")}
    return rec


def analyse(res: dict, cfg: SoakConfig) -> dict:
    """Slices, growth and the pass / fail verdicts of issue #25."""
    fin = res.get("final_summary") or {}
    c = res.get("controller_final") or res.get("controller") or {}
    samples = res["samples"]
    slices = []
    prev: dict = {}
    t_prev = 0.0
    for s in samples[1:]:
        cur = s["plan_hist"] or {}
        diff = {k: v - prev.get(k, 0) for k, v in cur.items() if v - prev.get(k, 0) > 0}
        p = percentiles_from_counts(diff) if diff else {}
        cpu = any(f["fault"] == "cpu" and t_prev - f["fault_s"] <= f["t_s"] <= s["t_s"] for f in res["faults"])
        slices.append({"until_s": s["t_s"], "plans": p.get("n", 0), "p50_ms": p.get("p50_ms"), "p99_ms": p.get("p99_ms"),
                       "cpu_hog_in_slice": cpu})
        prev, t_prev = cur, s["t_s"]
    for s in samples:
        s.pop("plan_hist", None)
    rss = [s["rss_kb"] for s in samples if s["rss_kb"]]
    fds = [s["fds"] for s in samples if s["fds"] is not None]
    full = [s for s in slices if s["plans"] > 0.5 * max((x["plans"] for x in slices), default=0)]
    quiet = [s for s in full if not s["cpu_hog_in_slice"]]  # drift, not the competing process of the drill
    full = quiet if len(quiet) >= 2 else full
    p99_drift = (full[-1]["p99_ms"] / full[0]["p99_ms"] - 1) if len(full) >= 2 and full[0]["p99_ms"] else None
    faults = res["faults"]
    by_kind: dict = {}
    for f in faults:
        k = by_kind.setdefault(f["fault"], {"n": 0, "recovered": 0, "recover_ms": [], "trips": 0, "trip_ms": []})
        k["n"] += 1
        k["recovered"] += int(f["recovered"])
        if f.get("recover_ms") is not None:
            k["recover_ms"].append(f["recover_ms"])
        k["trips"] += int(f["watchdog_trips"] > 0)
        if f.get("trip_ms") is not None:
            k["trip_ms"].append(f["trip_ms"])
    link = fin.get("link", {})
    counts = fin.get("counts", {})
    log_bound = (cfg.log_keep + 1) * cfg.log_max_mb * 1e6
    out = {
        "slices": slices,
        "by_fault": by_kind,
        "totals": {
            "cycles": counts.get("cycles"), "deadline_misses": counts.get("deadline_misses"),
            "fallback_actions": counts.get("fallback_actions"), "invalid_obs": counts.get("invalid_obs"),
            "stale_obs_refused": counts.get("stale_obs_refused"), "actions_sent": counts.get("actions_sent"),
            "stale_actions_executed": c.get("stale_accepted", 0) + c.get("invalid_accepted", 0),
            "controller_stale_accepted": c.get("stale_accepted"), "controller_invalid_accepted": c.get("invalid_accepted"),
            "controller_late_accepted": c.get("late_accepted"),
            "controller_max_state_age_ms": c.get("max_age_us", 0) / 1e3,
            "controller_actions_accepted": c.get("actions_accepted"), "watchdog_trips": c.get("watchdog_trips"),
            "controller_stops": c.get("stops"),
            "crc_errors": link.get("rx_crc_errors"), "resyncs": link.get("rx_resyncs"),
            "reconnects": link.get("reconnects"), "controller_resets": link.get("controller_resets"),
            "rss_start_kb": rss[0] if rss else None, "rss_end_kb": rss[-1] if rss else None,
            "rss_growth_kb": (rss[-1] - rss[0]) if rss else None, "rss_max_kb": max(rss) if rss else None,
            "fds_start": fds[0] if fds else None, "fds_end": fds[-1] if fds else None,
            "fds_max": max(fds) if fds else None,
            "log_dir_bytes": res.get("log_dir_bytes"), "log_dir_bound_bytes": int(log_bound),
            "p99_last_vs_first_slice": p99_drift,
        },
    }
    t = out["totals"]
    out["checks"] = {
        "no_stale_actions": t["stale_actions_executed"] == 0,
        "no_crash": not res.get("crashed") and res.get("run_exit_before_sigterm") is None,
        "sigterm_clean": res.get("run_exit") == 143 and fin.get("final") is True and fin.get("stopped_by") == "SIGTERM",
        "every_fault_recovered": all(f["recovered"] for f in faults),
        "watchdog_tripped_where_expected": all(f["watchdog_trips"] > 0 for f in faults if f["trip_expected"]),
        "rss_growth_under_5mb": t["rss_growth_kb"] is not None and t["rss_growth_kb"] < 5 * 1024,
        "fds_bounded": bool(fds) and max(fds) - min(fds) <= 2,
        "log_dir_bounded": (res.get("log_dir_bytes") or 0) <= log_bound and len(res.get("log_files", []))
        <= cfg.log_keep + 1,
        "p99_last_slice_within_20pct": p99_drift is not None and p99_drift <= 0.20,
    }
    return out


def to_markdown(res: dict) -> str:
    from kdp_edge.provenance import provenance_line

    t, cfg = res["totals"], res["config"]
    f1 = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [provenance_line(res["provenance"]), "",
             f"Soak: {cfg['duration_s'] / 60:g} min at {cfg['rate_hz']:g} Hz, `kdp-edge run` (bundle {res['bundle']}) "
             f"against the C reference controller in its own process over a pty; a fault every {cfg['fault_gap_s']:g} s "
             f"(round robin: {', '.join(cfg['faults'])}), SIGTERM at the end. Wall time {res['wall_s']:.0f} s. Scheduling: "
             + (f"SCHED_FIFO priority {cfg['realtime']} for the run loop and the controller (`--realtime`)."
                if cfg.get("realtime") else "the default policy (no `--realtime`)."), "",
             "| check | result |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {'PASS' if v else 'FAIL'} |" for k, v in res["checks"].items()]
    lines += ["", "| metric | value |", "|---|---|",
              f"| cycles | {t['cycles']} |", f"| deadline misses (after warm-up) | {t['deadline_misses']} |",
              f"| fallback actions | {t['fallback_actions']} |",
              f"| **stale actions executed** (controller: answering a STATE older than valid-for while it had sent newer "
              f"ones, or a NaN / out-of-range STATE) | "
              f"**{t['stale_actions_executed']}** |",
              f"| late ACTIONs (older than valid-for on the controller process's clock, whichever side was "
              f"descheduled) | {t.get('controller_late_accepted')} |",
              f"| oldest STATE behind an accepted ACTION (ms) | {f1(t['controller_max_state_age_ms'])} |",
              f"| actions refused by the host: stale STATE / invalid STATE | {t['stale_obs_refused']} / {t['invalid_obs']} |",
              f"| watchdog trips | {t['watchdog_trips']} |",
              f"| CRC errors / resyncs / reconnects / controller resets | {t['crc_errors']} / {t['resyncs']} / "
              f"{t['reconnects']} / {t['controller_resets']} |",
              f"| RSS start / end / max (MB), growth | {f1(t['rss_start_kb'] / 1024)} / {f1(t['rss_end_kb'] / 1024)} / "
              f"{f1(t['rss_max_kb'] / 1024)}, {t['rss_growth_kb'] / 1024:+.2f} MB |" if t["rss_start_kb"] else "| RSS | - |",
              f"| open fds start / end / max | {t['fds_start']} / {t['fds_end']} / {t['fds_max']} |",
              f"| log directory (bound) | {t['log_dir_bytes'] / 1e6:.2f} MB in {len(res['log_files'])} files "
              f"({t['log_dir_bound_bytes'] / 1e6:.1f} MB) |",
              "", "**Faults** (recovery: fault end to the first ACTION the controller accepts; trip: fault start to the "
              "watchdog zeroing the outputs)", "",
              "| fault | injected | recovered | recovery p50 / max (ms) | watchdog tripped | trip p50 / max (ms) |",
              "|---|---|---|---|---|---|"]
    import numpy as np

    for k, v in res["by_fault"].items():
        r, tr = v["recover_ms"], v["trip_ms"]
        lines.append(f"| {k} | {v['n']} | {v['recovered']} | "
                     + (f"{np.median(r):.1f} / {max(r):.1f}" if r else "-") + f" | {v['trips']} | "
                     + (f"{np.median(tr):.1f} / {max(tr):.1f}" if tr else "-") + " |")
    lines += ["", "**Plan latency and resources per slice** (plans the slowed-planner drill did not slow; the "
              "p99 drift check compares the first and last slices without the competing process)", "",
              "| until (s) | plans | plan p50 / p99 (ms) | CPU hog in slice | RSS (MB) | fds |", "|---|---|---|---|---|---|"]
    for sl, sm in zip(res["slices"], res["samples"][1:], strict=False):
        lines.append(f"| {sl['until_s']:.0f} | {sl['plans']} | {f1(sl['p50_ms'], 2)} / {f1(sl['p99_ms'], 2)} | "
                     f"{'yes' if sl['cpu_hog_in_slice'] else ''} | {f1((sm['rss_kb'] or 0) / 1024)} | {sm['fds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="an exported PointMaze bundle (4 state, 2 action values)")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--fault-gap", type=float, default=None, help="seconds between faults (default: 60, or less "
                    "for short runs so each fault comes at least twice)")
    ap.add_argument("--sample-minutes", type=float, default=5.0)
    ap.add_argument("--log-max-mb", type=float, default=5.0)
    ap.add_argument("--log-keep", type=int, default=3)
    ap.add_argument("--realtime", type=int, default=None, metavar="PRIO",
                    help="SCHED_FIFO priority of the run loop (kdp-edge run --realtime) and of the controller process")
    ap.add_argument("--out", default="bench/results/soak")
    ap.add_argument("--work", default=None, help="logs and summary of the run (default: a temporary directory)")
    args = ap.parse_args()
    from kdp_edge.fileio import atomic_write_json, atomic_write_text
    from kdp_edge.provenance import provenance

    if not (Path(args.bundle) / "bundle.json").exists():
        print(f"error: {args.bundle} is not a bundle directory (no bundle.json). fix: pass --bundle out/.../bundle",
              file=sys.stderr)
        raise SystemExit(2)
    if not (args.minutes > 0 and args.rate > 0 and args.sample_minutes > 0 and args.log_max_mb > 0
            and args.log_keep >= 0 and (args.fault_gap is None or args.fault_gap > 0)):
        print("error: --minutes, --rate, --sample-minutes, --log-max-mb and --fault-gap must be > 0 (--log-keep >= 0). "
              "fix: e.g. --minutes 10", file=sys.stderr)
        raise SystemExit(2)
    dur = 60.0 * args.minutes
    gap = args.fault_gap or max(5.0, min(60.0, dur / (2 * len(FAULTS) + 2)))
    cfg = SoakConfig(duration_s=dur, rate_hz=args.rate, fault_gap_s=gap, first_fault_s=min(20.0, gap),
                     sample_every_s=60.0 * args.sample_minutes, log_max_mb=args.log_max_mb, log_keep=args.log_keep,
                     realtime=args.realtime)
    prov = provenance()  # the code that runs, recorded before the run (others may commit meanwhile)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kdp-soak-"))
    print(f"soak: {args.minutes:g} min, a fault every {gap:g} s; run files in {work}", flush=True)
    try:
        res = run_soak(args.bundle, cfg, work)
    except KeyboardInterrupt:
        print("interrupted: no result written", file=sys.stderr)
        raise SystemExit(130) from None
    res["provenance"] = prov
    res["bundle"] = str(args.bundle)
    out = Path(args.out)
    tag = f"soak-{args.minutes:g}min" + (f"-rt{args.realtime}" if args.realtime else "")
    atomic_write_json(out / f"{tag}.json", res)
    md = to_markdown(res)
    atomic_write_text(out / f"{tag}.md", md)
    print(md)
    print(f"wrote {out / (tag + '.json')} and {out / (tag + '.md')}")
    raise SystemExit(0 if all(res["checks"].values()) else 1)


if __name__ == "__main__":
    main()
