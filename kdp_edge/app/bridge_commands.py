"""Click commands of the serial bridge, to be registered on the ``kdp-edge`` group::

    from kdp_edge.app.bridge_commands import register
    register(main)        # adds `virtual-controller` and `serial-probe`

Also runnable alone: ``python -m kdp_edge.app.bridge_commands --help``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Any

import click

from firmware_bridge.errors import LinkError
from firmware_bridge.link import DEFAULT_BAUD, SerialLink
from firmware_bridge.protocol import StateFlags, fw_version_str
from kdp_edge.envs import sim_names


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from e


def _make_plant(name: str, axes: int, seed: int) -> Any:
    """The integrator, or the simulated plant of the environment named ``name`` (as its sim:// port)."""
    if name == "integrator":
        from firmware_bridge.plants import IntegratorPlant

        return IntegratorPlant(axes=axes)
    from kdp_edge.app.run import RunError, sim_task

    task = sim_task(name, 1, seed)
    if task.servo_bus:
        raise RunError(f"sim://{name} is a virtual {task.servo_bus} servo bus, not a plant behind the kdp protocol. "
                       f"fix: run it with `kdp-edge run BUNDLE --port sim://{name}`")
    return task.plant


@click.command("virtual-controller")
@click.option("--plant", "plant_name", type=click.Choice(["integrator", *sim_names()]),
              default="integrator", show_default=True,
              help="Plant behind the controller: the integrator, or an environment's simulator (as sim:// ports).")
@click.option("--impl", type=click.Choice(["python", "c"]), default="python", show_default=True,
              help="Python virtual robot, or the C reference firmware built with gcc (integrator only).")
@click.option("--rate", type=float, default=50.0, show_default=True, help="STATE rate, Hz.")
@click.option("--axes", type=int, default=2, show_default=True, help="Integrator axes (action_dim; state_dim = 2*axes).")
@click.option("--max-valid-ms", type=int, default=500, show_default=True, help="Watchdog cap on valid_for_ms.")
@click.option("--latency-ms", type=float, default=0.0, show_default=True, help="Injected link latency (received frames).")
@click.option("--state-scale", default="1", show_default=True, help="Raw state = scale*x + offset (one or per-dim).")
@click.option("--state-offset", default="0", show_default=True)
@click.option("--action-scale", default="1", show_default=True, help="Plant action = (cmd - offset)/scale.")
@click.option("--action-offset", default="0", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Plant reset seed (python impl).")
@click.option("--duration", type=float, default=0.0, help="Stop after this many seconds (0 = until Ctrl-C).")
def virtual_controller(plant_name: str, impl: str, rate: float, axes: int, max_valid_ms: int, latency_ms: float,
                       state_scale: str, state_offset: str, action_scale: str, action_offset: str, seed: int,
                       duration: float) -> None:
    """Serve the kdp protocol on a pseudo-terminal. Prints `PTY <path>` (give it to --port) first.

    Ctrl-C (SIGINT) or SIGTERM stops it cleanly wherever it lands (exit code 0, stats on stderr)."""
    with _stop_on_signals() as stop:
        if impl == "c":
            if plant_name != "integrator":
                raise click.ClickException("--impl c only has the integrator plant")
            _run_c(rate, axes, max_valid_ms, latency_ms, state_scale, state_offset, action_scale, action_offset,
                   duration, stop)
            return
        from firmware_bridge.virtual_robot import start_virtual_robot

        plant = _make_plant(plant_name, axes, seed)
        robot = start_virtual_robot(
            plant, rate, seed=seed, max_valid_for_ms=max_valid_ms, latency_ms=latency_ms,
            state_scale=_floats(state_scale), state_offset=_floats(state_offset),
            action_scale=_floats(action_scale), action_offset=_floats(action_offset),
        )
        try:
            click.echo(f"PTY {robot.port}")
            sys.stdout.flush()
            click.echo(f"virtual controller ({plant_name}, state_dim={plant.state_dim}, action_dim={plant.action_dim}, "
                       f"{rate:g} Hz) on {robot.port} -> {robot.pty_path}; Ctrl-C to stop", err=True)
            stop.wait(duration if duration > 0 else None)
        finally:
            stats = robot.stats
            robot.close()
            click.echo("stats " + json.dumps(stats, sort_keys=True), err=True)


@contextmanager
def _stop_on_signals():
    """An Event set by SIGINT / SIGTERM while the block runs (instead of KeyboardInterrupt), so a
    Ctrl-C that lands anywhere in it (start-up, serving, shutdown) ends it the same clean way."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        yield stop
        return
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _run_c(rate: float, axes: int, max_valid_ms: int, latency_ms: float, state_scale: str, state_offset: str,
           action_scale: str, action_offset: str, duration: float, stop: threading.Event) -> None:
    from firmware_bridge.cbuild import CVirtualController, build_firmware

    build_dir = os.path.join(tempfile.gettempdir(), f"kdp-firmware-{os.getuid()}")
    try:
        out = build_firmware(build_dir)
    except RuntimeError as e:
        raise click.ClickException(str(e)) from e
    args = ["--rate", str(rate), "--state-dim", str(2 * axes), "--action-dim", str(axes),
            "--max-valid-ms", str(max_valid_ms), "--latency-ms", str(latency_ms),
            "--state-scale", state_scale, "--state-offset", state_offset,
            "--action-scale", action_scale, "--action-offset", action_offset]
    if duration > 0:
        args += ["--duration", str(duration)]
    vc = CVirtualController(out / "virtual_controller", *args)
    try:
        click.echo(f"PTY {vc.port}")
        sys.stdout.flush()
        while not stop.is_set() and vc.proc.poll() is None:
            stop.wait(0.1)  # a poll, not a timing assumption: ends when the firmware exits or on a signal
    finally:
        vc.close()
        click.echo(vc.stats_line, err=True)


@click.command("serial-probe")
@click.option("--port", required=True, help="Device or pyserial URL (/dev/ttyACM0, /dev/pts/5, socket://h:p).")
@click.option("--baud", type=int, default=DEFAULT_BAUD, show_default=True)
@click.option("--states", "n_states", type=int, default=5, show_default=True, help="How many STATEs to print.")
@click.option("--timeout", type=float, default=2.0, show_default=True, help="Seconds to wait for HELLO / each STATE.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def serial_probe(port: str, baud: int, n_states: int, timeout: float, as_json: bool) -> None:
    """HELLO a controller, print its capabilities, a few states and the link statistics."""
    try:
        link = SerialLink(port, baud, stop_on_close=False, reconnect=False, no_frames_timeout_s=timeout)
    except LinkError as e:
        raise click.ClickException(str(e)) from e
    report: dict[str, Any] = {"port": port, "baud": baud}
    try:
        t0 = time.monotonic()
        caps = link.hello(timeout)
        report["hello_s"] = round(time.monotonic() - t0, 4)
        report["caps"] = {
            "boot_id": f"0x{caps.boot_id:08x}", "fw_name": caps.fw_name, "fw_version": fw_version_str(caps.fw_version),
            "fw_signature": f"0x{caps.fw_signature:08x}", "protocol": caps.proto_version,
            "state_dim": caps.state_dim, "action_dim": caps.action_dim,
            "action_min": list(caps.action_min), "action_max": list(caps.action_max),
            "state_period_us": caps.state_period_us, "max_valid_for_ms": caps.max_valid_for_ms,
        }
        states = []
        for _ in range(n_states):
            s = link.read_state(timeout)
            if s is None:
                break
            states.append({"seq": s.seq, "t_us": s.timestamp_us, "flags": [f.name for f in StateFlags if s.flags & f],
                           "values": [round(v, 6) for v in s.values]})
        report["states"] = states
        rtt = link.ping(timeout)
        report["rtt_ms"] = None if rtt is None else round(rtt * 1e3, 3)
    except LinkError as e:
        link.close()
        raise click.ClickException(str(e)) from e
    report["stats"] = {k: v for k, v in link.stats.items() if v}
    link.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    c = report["caps"]
    click.echo(f"controller on {port} @ {baud} baud (HELLO in {report['hello_s'] * 1e3:.1f} ms)")
    for k in ("fw_name", "fw_version", "fw_signature", "boot_id", "protocol", "state_dim", "action_dim",
              "action_min", "action_max", "state_period_us", "max_valid_for_ms"):
        click.echo(f"  {k:18s} {c[k]}")
    for s in report["states"]:
        click.echo(f"  STATE seq={s['seq']} t={s['t_us']}us flags={','.join(s['flags']) or '-'} {s['values']}")
    click.echo(f"  heartbeat rtt      {report['rtt_ms']} ms")
    click.echo("  link stats         " + ", ".join(f"{k}={v}" for k, v in sorted(report["stats"].items())))


@click.command("run")
@click.argument("bundle", type=click.Path())
@click.option("--port", required=True,
              help="controller port: /dev/ttyUSB0, /dev/ttyACM0, socket://h:p, sim://pointmaze-umaze (virtual robot), "
                   "or sim-servo://feetech|dynamixel (virtual servo bus)")
@click.option("--baud", type=int, default=None, help=f"baud rate (default: {DEFAULT_BAUD}; 1000000 with --bus)")
@click.option("--rate", type=click.FloatRange(min=1.0), default=None, help="control rate, Hz (default: the bundle's)")
@click.option("--sync", type=click.Choice(["state", "timer"]), default="state", show_default=True,
              help="state: each new STATE starts a cycle (lowest latency); timer: host-paced fixed rate")
@click.option("--duration", type=click.FloatRange(min=0.0), default=None, help="stop after this many seconds")
@click.option("--cycles", type=click.IntRange(min=1), default=None, help="stop after this many cycles")
@click.option("--episodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="sim:// only: D4RL-protocol episodes to run (when neither --duration nor --cycles is given)")
@click.option("--goal", default=None, help="goal in observation units, comma-separated (sim: the maze's goal)")
@click.option("--offset-ms", type=click.FloatRange(min=0.0), default=None,
              help="known actuation latency: execute the plan step due when the action takes effect "
                   "(default: --timing's recommendation, else 0)")
@click.option("--backend", type=click.Choice(["onnx", "tflite"]), default="onnx", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "int8", "int8-dynamic"]), default=None,
              help="model precision (default: int8 when the bundle has it)")
@click.option("--candidates", "-k", type=click.IntRange(min=1), default=None, help="K (default: the bundle's)")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None, help="per-cycle JSONL log")
@click.option("--log-max-mb", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="rotate --log when it reaches this size (MB): run.jsonl -> run.jsonl.1 ... (default: one file)")
@click.option("--log-keep", type=click.IntRange(min=0), default=3, show_default=True,
              help="with --log-max-mb: rotated files kept (run.jsonl.1 .. .K; the oldest is dropped)")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), default=None,
              help="summary JSON, rewritten atomically every --summary-every s while running (\"final\": false) "
                   "and at the end (\"final\": true)")
@click.option("--summary-every", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="seconds between the periodic --summary writes (what a crash can lose)")
@click.option("--obs-abs-max", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="a STATE value beyond +-this (after --calibration) is out of range: nothing is planned or "
                   "sent on it (default: no bound; NaN/inf are always refused)")
@click.option("--slow-plan-ms", type=click.FloatRange(min=0.0), default=0.0, hidden=True,
              help="testing: add this much time to every plan")
@click.option("--slow-plan-toggle", is_flag=True, hidden=True,
              help="testing: --slow-plan-ms starts off and SIGUSR1 toggles it")
@click.option("--calibration", "calibration_path", type=click.Path(dir_okay=False), default=None,
              help="robot calibration (kdp-edge calibrate io): raw STATE -> model units, actions -> raw "
                   "commands clamped to its limits; refused if made for another controller")
@click.option("--timing", "timing_path", type=click.Path(dir_okay=False), default=None,
              help="timing calibration (kdp-edge calibrate latency): default --rate and --offset-ms")
@click.option("--bus", type=click.Choice(["feetech", "dynamixel"]), default=None,
              help="smart servos on --port (Feetech STS/SCS, Dynamixel X Protocol 2.0) instead of the kdp firmware")
@click.option("--motors", default=None, help="--bus: servo IDs in the bundle's state / action order, e.g. 1,2,3,4,5,6")
@click.option("--servo-calibration", type=click.Path(dir_okay=False), default=None,
              help="--bus: LeRobot's calibration JSON (as is) or ours: ticks <-> the bundle's units, ranges")
@click.option("--on-stop", type=click.Choice(["hold", "torque-off"]), default="hold", show_default=True,
              help="--bus: what the servos do at the end, on Ctrl-C / SIGTERM and when the bus is lost")
@click.option("--realtime", type=click.IntRange(min=1, max=99), default=None, metavar="PRIO",
              help="run the control loop's thread under SCHED_FIFO at this priority (Linux; needs root, CAP_SYS_NICE "
                   "or an rtprio limit): other load no longer stretches the latency tail")
def run_cmd(bundle, port, baud, rate, sync, duration, cycles, episodes, goal, offset_ms, backend, precision,
            candidates, threads, seed, log_path, log_max_mb, log_keep, summary_path, summary_every, obs_abs_max,
            slow_plan_ms, slow_plan_toggle, calibration_path, timing_path, bus, motors, servo_calibration,
            on_stop, realtime) -> None:
    """Plan and stream actions to a motor controller; log timing per cycle (Ctrl-C stops cleanly)."""
    from kdp_edge.app.run import RunOptions, format_summary, run
    from kdp_edge.errors import KDPError

    if log_max_mb is not None and not log_path:
        raise click.UsageError("--log-max-mb rotates the per-cycle log. fix: add --log run.jsonl, or drop --log-max-mb")
    if slow_plan_toggle and not slow_plan_ms:
        raise click.UsageError("--slow-plan-toggle switches --slow-plan-ms on and off. fix: add --slow-plan-ms MS")
    servo = bus is not None or port.startswith("sim-servo://")
    try:
        motor_ids = [int(v) for v in motors.split(",") if v.strip()] if motors else None
    except ValueError as e:
        raise click.UsageError(f"--motors takes comma-separated servo IDs, got {motors!r}. fix: --motors 1,2,3") from e
    if not servo and (motors or servo_calibration):
        raise click.UsageError("--motors / --servo-calibration describe a servo bus. fix: add --bus feetech|dynamixel")
    opts = RunOptions(port=port, baud=baud, rate_hz=rate, sync=sync, duration_s=duration, cycles=cycles,
                      episodes=episodes, goal=_floats(goal) if goal else None, offset_ms=offset_ms, backend=backend,
                      precision=precision, candidates=candidates, threads=threads, seed=seed, log=log_path,
                      log_max_mb=log_max_mb or 0.0, log_keep=log_keep, summary_path=summary_path,
                      summary_every_s=summary_every, obs_abs_max=obs_abs_max or 0.0,
                      slow_plan_ms=slow_plan_ms, slow_plan_toggle=slow_plan_toggle, calibration=calibration_path,
                      timing=timing_path, realtime=realtime)
    if servo:
        opts.bus, opts.motors, opts.servo_calibration, opts.on_stop = bus, motor_ids, servo_calibration, on_stop
    opts.baud = baud or (1_000_000 if servo else DEFAULT_BAUD)
    try:
        summary = run(bundle, opts, log=lambda m: click.echo(m, err=True))
    except (KDPError, LinkError) as e:
        click.secho(f"error: {e}", fg="red", err=True)
        raise SystemExit(2) from e
    click.echo(format_summary(summary))
    if log_path:
        click.echo(f"per-cycle log: {log_path}")
    if summary["stopped_by"] != "end":
        raise SystemExit(143 if summary["stopped_by"] == "SIGTERM" else 130)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group`` (the ``kdp-edge`` CLI)."""
    group.add_command(run_cmd)
    from kdp_edge.app.calibrate_commands import calibrate

    group.add_command(calibrate)
    group.add_command(virtual_controller)
    group.add_command(serial_probe)


def _group_class() -> type[click.Group]:
    try:  # the kdp-edge error policy (error: ... fix: ..., exit 2; Ctrl-C exits 130) when kdp_edge is installed
        from kdp_edge.cli_policy import KDPGroup
    except ImportError:
        return click.Group
    return KDPGroup


@click.group(cls=_group_class())
def cli() -> None:
    """kdp-edge serial bridge tools."""


register(cli)

if __name__ == "__main__":  # pragma: no cover
    cli()
