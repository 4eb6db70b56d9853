"""``kdp-edge calibrate io`` and ``kdp-edge calibrate latency`` (see :mod:`calibration.robot_io`, docs/calibration.md).

``--port`` takes a serial device, a pyserial URL, or a virtual robot: ``sim://integrator?axes=2&rate=50``
(IntegratorPlant) or ``sim://pointmaze-umaze`` (needs the ``sim`` extra); both accept ``latency_ms``,
``state_scale``, ``state_offset``, ``action_scale`` and ``action_offset`` query parameters
(comma-separated per channel), so a robot with foreign units can be rehearsed without hardware.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path

import click


def _fail(e: Exception) -> None:
    click.secho(f"error: {e}", fg="red", err=True)
    raise SystemExit(2) from e


def _open(stack: ExitStack, port: str, baud: int, timeout: float = 3.0):
    """(link, caps) for ``port``; ``sim://`` starts a virtual robot in this process."""
    from firmware_bridge.link import SerialLink
    from kdp_edge.app.run import RunError, parse_sim_port

    sim = parse_sim_port(port)
    if sim is not None:
        env, q = sim
        rate = float(q.get("rate", 50))
        if env == "integrator":
            from firmware_bridge.plants import IntegratorPlant
            from firmware_bridge.virtual_robot import start_virtual_robot

            units = {}
            for k in ("state_scale", "state_offset", "action_scale", "action_offset"):
                if k in q:
                    units[k] = [float(v) for v in q[k].split(",") if v.strip()]
            try:
                robot = start_virtual_robot(IntegratorPlant(axes=int(q.get("axes", 2))), rate,
                                            latency_ms=float(q.get("latency_ms", 0)), **units)
            except ValueError as e:
                raise RunError(f"{port}: {e}") from e
        else:
            from kdp_edge.app.run import start_sim

            robot = start_sim(port, rate, 1, 0).robot
        stack.callback(robot.close)
        port = robot.port
    link = SerialLink(port, baud, stop_on_close=True)
    stack.callback(link.close)
    return link, link.hello(timeout)


def _ready(what: str, yes: bool) -> None:
    """On a terminal, wait for Enter before anything moves or is recorded (--yes, or no terminal: go)."""
    if yes or not sys.stdin.isatty():
        return
    click.echo(f"{what}\nPress Enter to start (Ctrl-C or Ctrl-D aborts; nothing is recorded or written) ",
               err=True, nl=False)
    try:
        answered = sys.stdin.readline() != ""  # "" is end of input (Ctrl-D)
    except KeyboardInterrupt:
        answered = False
    if not answered:
        click.echo("\naborted before recording: nothing written", err=True)
        raise SystemExit(130)


def _units(text: str | None) -> list[str] | None:
    return [u.strip() for u in text.split(",")] if text else None


@click.group("calibrate")
def calibrate() -> None:
    """Calibrate a robot's I/O units (io) and the loop timing (latency) for `kdp-edge run`."""


@calibrate.command("io")
@click.option("--port", default=None, help="controller port (or sim://integrator?..., sim://pointmaze-umaze)")
@click.option("--baud", type=int, default=None, help="baud rate (default: the bridge's)")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="robot calibration JSON")
@click.option("--seconds", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="hand mode: how long to record (Ctrl-C ends earlier and still writes the file)")
@click.option("--sweep", is_flag=True, help="the host drives each action channel (steps) and fits the response")
@click.option("--hold-states", type=click.IntRange(min=5), default=25, show_default=True,
              help="--sweep: STATEs per command level")
@click.option("--model-range", "model_ranges", multiple=True, metavar="CH:LO,HI",
              help="model-unit range of state channel CH over the recorded motion (repeatable; CH may be 'all')")
@click.option("--reference", "reference_path", type=click.Path(dir_okay=False), default=None,
              help="robot calibration of the same motion in model units (e.g. recorded on the unscaled sim)")
@click.option("--state-from", "state_from", type=click.Path(dir_okay=False), default=None,
              help="--sweep: take the state channels from this calibration (e.g. the hand recording) and fit "
                   "only the actions (more exact than the sweep's own ranges)")
@click.option("--from-log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="derive the ranges from a `kdp-edge run --log` file instead of recording (with --port: "
                   "bind the file to that controller's HELLO)")
@click.option("--state-units", default=None, help="comma-separated unit names per state channel (documentation)")
@click.option("--action-units", default=None, help="comma-separated unit names per action channel")
@click.option("--yes", "-y", is_flag=True, help="start at once (no 'press Enter' prompt on a terminal)")
def calibrate_io(port, baud, out_path, seconds, sweep, hold_states, model_ranges, reference_path, state_from,
                 log_path, state_units, action_units, yes) -> None:
    """Record each state channel's range (hand moves or --sweep) and write per-channel scale/offset/limits."""
    import numpy as np

    from calibration.robot_io import (
        RobotCalibration,
        calibrate_from_states,
        fit_action_response,
        parse_model_ranges,
        record_states,
        reference_ranges,
        states_from_log,
    )
    from calibration.robot_io import sweep as run_sweep
    from firmware_bridge.errors import LinkError
    from firmware_bridge.link import DEFAULT_BAUD
    from kdp_edge.errors import KDPError

    err = lambda m: click.echo(m, err=True)  # noqa: E731
    if not port and not log_path:
        raise click.UsageError("give --port (record) or --from-log RUN.jsonl")
    if sweep and log_path:
        raise click.UsageError("--sweep records from a controller; it cannot be combined with --from-log")
    if state_from and not sweep:
        raise click.UsageError("--state-from goes with --sweep")
    if not log_path:
        _ready("sweep: the host will drive every actuator in steps. Keep clear of the robot." if sweep else
               f"hand mode: be ready to move every joint/axis through its full range for {seconds:g} s.", yes)
    try:
        ref = RobotCalibration.load(reference_path) if reference_path else None
        with ExitStack() as stack:
            caps = None
            if port:
                link, caps = _open(stack, port, baud or DEFAULT_BAUD)
                err(f"controller {caps.fw_name} (state_dim {caps.state_dim}, action_dim {caps.action_dim}, "
                    f"STATE every {caps.state_period_us / 1e3:g} ms)")
            fits, method = None, "hand"
            if log_path:
                raw, ad, _ = states_from_log(log_path)
                method = "log"
                if caps is not None and raw.shape[1] != caps.state_dim:
                    raise KDPError(f"{log_path} has {raw.shape[1]} state values, the controller {caps.state_dim}")
                err(f"{len(raw)} states from {log_path}")
            elif sweep:
                method = "sweep"
                err(f"sweeping {caps.action_dim} action channel(s), {hold_states} STATEs per level: keep clear of "
                    "the robot; Ctrl-C stops (STOP is sent) and writes what was measured")
                res = run_sweep(link, caps, hold_states, progress=lambda k, n, ch, c: err(
                    f"  [{k}/{n}] action {ch} = {c:g}"))
                raw = res.recording.values
                if res.recording.interrupted:
                    err("interrupted: writing the calibration from the holds recorded so far")
            else:
                err(f"move the robot by hand through the full range of every joint/axis now: recording for "
                    f"{seconds:g} s (Ctrl-C ends earlier and still writes {out_path})")

                def progress(n, left, lo, hi):
                    err(f"  {n} states, {left:4.1f} s left; raw min {np.round(lo, 4).tolist()} "
                        f"max {np.round(hi, 4).tolist()}")

                rec = record_states(link, seconds, progress)
                raw = rec.values
                if rec.interrupted:
                    err("interrupted: writing the calibration from what was recorded")
            sd = raw.shape[1] if raw.ndim == 2 and raw.size else (caps.state_dim if caps else 0)
            ranges = reference_ranges(ref, sd) if ref is not None else {}
            ranges.update(parse_model_ranges(model_ranges, sd))
            if not ranges:
                err("note: no --model-range / --reference: state channels keep the identity map (ranges recorded)")
            if sweep:
                from calibration.robot_io import check_against_hello, derive_state_channels

                if state_from:
                    prior = RobotCalibration.load(state_from)
                    check_against_hello(prior, caps, f"--state-from {state_from}")
                    st = prior.state
                else:
                    st, _ = derive_state_channels(raw, ranges)
                sc = np.array([c["scale"] for c in st])
                so = np.array([c["offset"] for c in st])
                fits = fit_action_response((raw - so) / sc, res.recording.seq, caps.state_period_us * 1e-6,
                                           res.holds, caps.action_dim)
            cal = calibrate_from_states(raw, caps, ranges, method, fits, ref,
                                        action_dim=caps.action_dim if caps else (ad if log_path else None),
                                        state_units=_units(state_units), action_units=_units(action_units))
            if sweep and state_from:
                cal.state = [dict(c, mapping=f"from {Path(state_from).name}") for c in prior.state]
                cal.notes.append(f"state channels from {state_from}")
            if log_path and caps is None:
                cal.notes.append("from a run log without --port: not bound to a firmware signature")
    except (KDPError, LinkError) as e:
        _fail(e)
    cal.save(out_path)
    for i, c in enumerate(cal.state):
        err(f"  state {i}: scale {c['scale']:.6g} offset {c['offset']:.6g} raw {c.get('raw_min')}..{c.get('raw_max')} "
            f"({c.get('mapping', '-')})")
    for i, c in enumerate(cal.action):
        err(f"  action {i}: scale {c['scale']:.6g} offset {c['offset']:.6g} limits {c.get('raw_min')}..{c.get('raw_max')} "
            f"({c.get('mapping', '-')})")
    for n in cal.notes:
        err(f"  note: {n}")
    click.echo(f"wrote {out_path}")


@calibrate.command("latency")
@click.option("--port", required=True, help="controller port (or sim://integrator?latency_ms=20, sim://pointmaze-umaze)")
@click.option("--baud", type=int, default=None)
@click.option("--bundle", "bundle_path", required=True, type=click.Path(), help="the bundle to be run")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="timing JSON")
@click.option("--pings", type=click.IntRange(min=3), default=50, show_default=True, help="HEARTBEAT round trips")
@click.option("--seconds", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="how long to time the STATE stream")
@click.option("--plans", type=click.IntRange(min=10), default=200, show_default=True, help="plans to time")
@click.option("--margin", type=click.FloatRange(0.1, 1.0), default=0.8, show_default=True,
              help="fraction of a period the p99 plan + RTT/2 may use")
@click.option("--calibration", "calibration_path", type=click.Path(dir_okay=False), default=None,
              help="robot calibration: plan on recorded states in model units")
@click.option("--backend", type=click.Choice(["onnx", "tflite"]), default="onnx", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "int8", "int8-dynamic"]), default=None)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
def calibrate_latency(port, baud, bundle_path, out_path, pings, seconds, plans, margin, calibration_path, backend,
                      precision, threads) -> None:
    """Measure RTT, STATE period/jitter and plan latency; recommend --rate and --offset-ms."""
    import numpy as np

    from calibration.robot_io import (
        TIMING_FORMAT,
        VERSION,
        RobotCalibration,
        _now_iso,
        check_against_hello,
        hello_dict,
        measure_link_timing,
        measure_plan_latency,
        recommend,
    )
    from firmware_bridge.errors import LinkError
    from firmware_bridge.link import DEFAULT_BAUD
    from kdp_edge.errors import KDPError
    from kdp_edge.fileio import atomic_write_json
    from kdp_edge.runtime import Planner

    err = lambda m: click.echo(m, err=True)  # noqa: E731
    try:
        cal = RobotCalibration.load(calibration_path) if calibration_path else None
        planner = Planner.load(bundle_path, backend=backend, precision=precision, threads=threads)
        m = planner.manifest
        with ExitStack() as stack:
            link, caps = _open(stack, port, baud or DEFAULT_BAUD)
            if cal is not None:
                check_against_hello(cal, caps, f"calibration {calibration_path}")
            err(f"timing {pings} pings and {seconds:g} s of STATEs from {caps.fw_name} ...")
            lt = measure_link_timing(link, caps, pings, seconds)
            samples = []
            for _ in range(20):
                s = link.read_state(0.2)
                if s is not None and s.finite:
                    samples.append(s.values)
        obs = np.asarray(samples, np.float64) if samples else None
        if obs is not None and cal is not None:
            obs = cal.state_to_model(obs)
        if obs is not None and obs.shape[1] != m.obs_dim:
            err(f"note: the controller's {obs.shape[1]} state values do not fit the bundle's obs_dim {m.obs_dim}: "
                "timing plans on random observations")
            obs = None
        err(f"timing {plans} plans of {planner.describe()} ...")
        pl = measure_plan_latency(planner, plans, obs)
    except (KDPError, LinkError) as e:
        _fail(e)
    rec = recommend(lt, pl, m.step_dt_s, caps.state_period_us / 1e3, margin)
    out = {"format": TIMING_FORMAT, "version": VERSION, "created": _now_iso(), "hello": hello_dict(caps),
           "port": port, "bundle": {"path": str(bundle_path), "model": planner.describe(), "step_dt_s": m.step_dt_s,
                                    "control_rate_hz": m.control_rate_hz},
           "host": {"platform": sys.platform, "threads": threads},
           "link": lt, "plan_ms": pl, "recommended": rec}
    atomic_write_json(out_path, out)
    r = lt["rtt_ms"]
    err(f"  RTT ms p50 {r.get('p50_ms', float('nan')):.2f} p99 {r.get('p99_ms', float('nan')):.2f} "
        f"(lost {lt['pings_lost']})")
    if "state_period_host_ms" in lt:
        sp, sj = lt["state_period_host_ms"], lt["state_jitter_host_ms"]
        err(f"  STATE period ms p50 {sp['p50_ms']:.2f} (nominal {lt['state_period_nominal_ms']:g}), "
            f"jitter p99 {sj['p99_ms']:.2f}")
    err(f"  plan ms p50 {pl['p50_ms']:.2f} p99 {pl['p99_ms']:.2f}")
    err(f"  recommended: --rate {rec['rate_hz']:g} --offset-ms {rec['offset_ms']:.1f}"
        + (f" ({rec['offset_plan_steps']:.2f} plan steps)" if "offset_plan_steps" in rec else ""))
    if "warning" in rec:
        err(f"  warning: {rec['warning']}")
    click.echo(json.dumps({"rate_hz": rec["rate_hz"], "offset_ms": round(rec["offset_ms"], 3)}))
    click.echo(f"wrote {out_path}")


__all__ = ["calibrate"]
