"""``kdp-edge run``: the planner in closed loop with a motor controller over the serial protocol.

    kdp-edge run BUNDLE --port /dev/ttyUSB0 --goal 1,1 --log run.jsonl     # a real controller
    kdp-edge run BUNDLE --port sim://pointmaze-umaze --episodes 5           # the virtual robot
    kdp-edge run BUNDLE --port sim://feetech-arm --episodes 5               # a virtual arm on a servo bus

``sim://<env>`` (``pointmaze-<maze>``, ``pusht``) starts that environment's virtual robot (its
plug-in's ``sim_plant``: PointMaze physics from the ``sim`` extra, gym-pusht from ``pusht``, served on
a pseudo-terminal, same protocol and watchdog as the firmware) in this process and connects to its
pty like to any serial port; the STATE rate is ``--rate``. In sim, episodes follow the protocol of
``kdp-edge eval`` (PointMaze: D4RL's goal cell, horizon in simulator steps, reward radius; PushT:
the seeded episodes, 300 steps, max coverage), so the serial path's score can be compared with
direct evaluation. ``sim://feetech-arm`` / ``sim://dynamixel-arm`` (the arm task, kdp_edge/arm_sim.py) start a
virtual servo bus instead and talk to it through the servo link (``--bus``'s path), one seeded start and goal
per episode (the loop plans to each episode's goal).

Every cycle is one JSON line in ``--log`` (see :class:`kdp_edge.runtime.loop.CycleRecord`); the
summary (latency percentiles, deadline misses, link errors, success in sim) is printed at the end
and written to ``--summary``. Ctrl-C (SIGINT) or SIGTERM sends STOP and closes the port cleanly.

Bounded for long runs: ``--log-max-mb N --log-keep K`` rotates the log by size (``run.jsonl`` ->
``run.jsonl.1`` ... ``.K``, the oldest dropped: at most K+1 files of about N MB each), and the
``--summary`` file is rewritten atomically every ``--summary-every`` seconds while the loop runs
(``"final": false``), so a crash or ``kill -9`` leaves a valid summary of everything up to the last
write; the last write at a clean stop (end, Ctrl-C, SIGTERM, a link error) has ``"final": true``.

``--calibration robot.json`` (``kdp-edge calibrate io``) maps raw STATE to model units and model actions to
raw commands (clamped, counted); ``--timing timing.json`` (``kdp-edge calibrate latency``) sets the default
rate and execution offset. See docs/calibration.md and :mod:`calibration.robot_io`.
"""

from __future__ import annotations

import json
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from firmware_bridge.errors import LinkError
from firmware_bridge.link import DEFAULT_BAUD, SerialLink
from kdp_edge.app.realtime import realtime
from kdp_edge.errors import KDPError
from kdp_edge.runtime.loop import ControlLoop, CycleRecord, LatencyHistogram, LoopConfig, Observation


class RunError(KDPError):
    pass


class ControllerClock:
    """When did the controller send a STATE, on the host's clock?

    The host's receive time is late by however long the STATE sat in the port's buffer (the loop was
    planning, or the process was not scheduled): an age measured from it can be a whole cycle short. The
    STATE's own timestamp (the controller's wrapping u32 microsecond clock) is mapped onto the host clock
    with the offset of the fastest delivery seen (``min(t_rx - t_ctrl)``, allowed to creep up by ``drift``
    seconds per second for crystal drift). The estimate is never later than the receive time nor more than
    ``max_correction_s`` earlier; the clock is re-learnt after a controller reset or a backwards jump, and
    ignored for a controller whose timestamps do not advance."""

    def __init__(self, drift: float = 1e-4, max_correction_s: float = 0.25):
        self.drift, self.max_correction_s = drift, max_correction_s
        self.reset(None)
        self.unusable = 0  # STATEs whose timestamp did not advance

    def reset(self, boot) -> None:
        self.boot, self.offset, self.last_us, self.wraps, self.last_rx = boot, None, None, 0, None

    def sent_at(self, ts_us: int, t_rx: float, boot=None) -> float:
        if boot != self.boot:
            self.reset(boot)
        if self.last_us is not None:
            if ts_us == self.last_us:
                self.unusable += 1
                return t_rx
            if ts_us < self.last_us:
                if self.last_us - ts_us > 1 << 31:
                    self.wraps += 1  # the u32 microsecond clock wrapped (every 71.6 min)
                else:  # went back: a reset not seen (yet) through the boot id
                    self.reset(boot)
        t_ctrl = ((self.wraps << 32) + ts_us) / 1e6
        sample = t_rx - t_ctrl
        if self.offset is None or sample < self.offset:
            self.offset = sample
        else:
            self.offset = min(sample, self.offset + self.drift * (t_rx - self.last_rx))
        self.last_us, self.last_rx = ts_us, t_rx
        return max(t_rx - self.max_correction_s, min(t_rx, t_ctrl + self.offset))


class SerialLoopIO:
    """:class:`~kdp_edge.runtime.loop.LoopIO` over a :class:`SerialLink` (monotonic clock).

    An observation's ``t_rx`` is when the controller sent it, on the host clock (:class:`ControllerClock`):
    the age that picks the plan step due and bounds the stale-STATE protection counts the time the STATE
    waited in the port's buffer too."""

    def __init__(self, link: SerialLink):
        self.link = link
        self.last: Observation | None = None  # the newest observation returned (raw units)
        self.clock = ControllerClock()

    def read_observation(self, timeout: float) -> Observation | None:
        s = self.link.read_state(timeout)
        if s is None:
            return None
        t_rx = self.link.latest_state_rx_time
        t_rx = t_rx if t_rx is not None else time.monotonic()
        t_sent = self.clock.sent_at(int(s.timestamp_us), t_rx, getattr(s, "boot_id", None))
        self.last = Observation(np.asarray(s.values, np.float32), s.seq, t_sent, s.flags)
        return self.last

    def send_action(self, action: np.ndarray, obs: Observation, valid_for_ms: int) -> bool:
        return self.link.send_action(action, valid_for_ms=valid_for_ms, state_seq=obs.seq)

    def send_stop(self) -> None:
        self.link.send_stop()


@dataclass
class SimTarget:
    """A virtual robot started for a ``sim://`` port, and the episodes played on it."""

    robot: Any  # VirtualRobot
    task: Any  # kdp_edge.sim_episodes.SimEpisodes (its env name, too): plant, horizon, goal, prepare / finished / result / summary


def parse_sim_port(port: str) -> tuple[str, dict[str, str]] | None:
    """``sim://pointmaze-umaze?latency_ms=2`` -> ("pointmaze-umaze", {"latency_ms": "2"}); None if not sim.

    Query parameters: ``latency_ms``, ``max_valid_ms``, ``horizon`` (simulator steps per episode instead of
    the protocol's, e.g. short episodes for a smoke test), and ``state_scale``, ``state_offset``,
    ``action_scale``, ``action_offset`` (one value or comma-separated per channel: the virtual robot then
    reports raw state = scale * x + offset and drives the plant with (cmd - offset) / scale, a robot whose
    units differ from the bundle's; see ``kdp-edge calibrate``)."""
    if not port.startswith("sim://"):
        return None
    u = urlparse(port)
    env = (u.netloc + u.path).strip("/")
    return env, {k: v[-1] for k, v in parse_qs(u.query).items()}


def sim_task(env: str, episodes: int, seed: int, where: str = "", horizon: int | None = None) -> Any:
    """The :class:`kdp_edge.sim_episodes.SimEpisodes` of environment ``env`` (a clear error for an env
    without a virtual robot, or without the extra its simulator needs); ``horizon`` shortens (or
    lengthens) its episodes to that many plant steps."""
    from kdp_edge.envs import env_for, sim_names
    from kdp_edge.errors import require

    if env not in sim_names():
        raise RunError(f"unknown simulated robot '{env}'{f' in {where}' if where else ''}: use "
                       + ", ".join(f"sim://{n}" for n in sim_names()))
    plugin = env_for(env)
    for module in plugin.sim_needs:
        require(module, plugin.sim_extra, "the simulated robot (sim:// ports)")
    task = plugin.load("sim_plant")(env, episodes, seed)
    if horizon is not None:
        task.set_horizon(horizon)
    return task


def start_sim(port: str, rate_hz: float, episodes: int, seed: int) -> SimTarget:
    """Start the virtual robot of the environment a ``sim://<env>`` port names (its plug-in's ``sim_plant``)."""
    from firmware_bridge.virtual_robot import start_virtual_robot

    env, opts = parse_sim_port(port)
    try:
        horizon = int(opts["horizon"]) if "horizon" in opts else None
    except ValueError as e:
        raise RunError(f"{port}: horizon must be a whole number of simulator steps, got {opts['horizon']!r}") from e
    if horizon is not None and horizon < 1:
        raise RunError(f"{port}: horizon must be at least 1 simulator step, got {horizon}")
    task = sim_task(env, episodes, seed, where=port, horizon=horizon)
    units = {}
    for k in ("state_scale", "state_offset", "action_scale", "action_offset"):
        if k in opts:
            try:
                units[k] = [float(v) for v in opts[k].split(",") if v.strip()]
            except ValueError as e:
                raise RunError(f"{port}: {k} must be comma-separated numbers, got {opts[k]!r}") from e
    try:
        extra = {k: v for k, v in opts.items() if k != "horizon"}
        robot = task.start_robot(rate_hz, seed, **extra) if task.servo_bus else None
        if robot is None:
            robot = start_virtual_robot(task.plant, rate_hz=rate_hz, seed=seed,
                                        latency_ms=float(opts.get("latency_ms", 0)),
                                        max_valid_for_ms=int(opts.get("max_valid_ms", 500)), **units)
    except ValueError as e:
        raise RunError(f"{port}: {e}") from e
    return SimTarget(robot, task)


def check_sim_env(bundle, bundle_env: str, sim_env: str) -> None:
    """Refuse a bundle made for another environment than the one the ``sim://`` port's robot plays."""
    from kdp_edge.envs import env_for, sim_names

    task = env_for(sim_env).task_env(sim_env)
    if bundle_env and task != bundle_env:
        ports = [n for n in sim_names() if env_for(n).task_env(n) == bundle_env] or [bundle_env]
        raise RunError(f"bundle {bundle} was exported for {bundle_env} (bundle.json 'env'), the port simulates "
                       f"{task}, another task (its observations, goal and physics differ). fix: use "
                       f"{' or '.join(f'--port sim://{p}' for p in ports)}, or a bundle trained on {task}")


@dataclass
class RunOptions:
    port: str
    baud: int = DEFAULT_BAUD
    rate_hz: float | None = None  # None: the bundle's control rate
    sync: str = "state"
    duration_s: float | None = None
    cycles: int | None = None
    episodes: int = 1  # sim only
    goal: list[float] | None = None
    offset_ms: float | None = None  # None: the --timing file's recommendation, else 0
    deadline_frac: float = 1.0
    backend: str = "onnx"
    precision: str | None = None
    candidates: int | None = None
    threads: int = 1
    seed: int = 0
    log: str | None = None
    hello_timeout: float = 3.0
    warmup_plans: int = 20  # whole plans on the first STATE before the first counted cycle
    slow_plan_ms: float = 0.0  # testing: add this much time to every plan (deadline-miss drills)
    slow_plan_toggle: bool = False  # testing: the slow-down starts off and SIGUSR1 toggles it (soak drills)
    log_max_mb: float = 0.0  # rotate the log when it would pass this size; 0: one unbounded file
    log_keep: int = 3  # rotated files kept (run.jsonl.1 .. .K)
    summary_path: str | None = None  # written atomically every summary_every_s and at the end
    summary_every_s: float = 5.0
    obs_abs_max: float = 0.0  # an observation value beyond +-this is invalid (nothing planned or sent); 0: off
    calibration: str | None = None  # robot calibration file (kdp-edge calibrate io): units and limits
    timing: str | None = None  # timing calibration file (kdp-edge calibrate latency): default rate and offset
    # servo bus (#26): a firmware_bridge.servo_bus.ServoBusLink instead of the framed protocol
    bus: str | None = None  # feetech | dynamixel (a sim-servo://FAMILY port implies it)
    motors: list[int] | None = None  # servo IDs in state / action order
    servo_calibration: str | None = None  # LeRobot's calibration JSON or ours: ticks <-> bundle units
    on_stop: str = "hold"  # the servos' safe action at the end: hold | torque-off
    realtime: int | None = None  # SCHED_FIFO priority of the control loop's thread (Linux); None: default policy
    extra: dict = field(default_factory=dict)


class _SlowPlanner:
    """Wraps a planner and sleeps ``ms`` in every plan while ``enabled`` (to exercise the fallback path)."""

    def __init__(self, inner, ms: float, enabled: bool = True):
        self.inner, self.ms, self.enabled = inner, ms, enabled

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def plan(self, obs, goal=None, noise=None):
        p = self.inner.plan(obs, goal, noise)
        if self.enabled:
            time.sleep(self.ms / 1e3)
        return p


class JsonlLog:
    """Per-cycle JSON lines, flushed every ``flush_every`` lines (and at close).

    ``max_bytes`` > 0: before a line would take the file past ``max_bytes``, it is rotated
    (``path`` -> ``path.1`` -> ... -> ``path.<keep>``, the oldest dropped), so the log never holds more than
    ``keep + 1`` files of at most ``max_bytes`` each (a single line larger than that gets a file to itself).
    Rotated files are complete: a line is never split across two files."""

    def __init__(self, path: str | None, flush_every: int = 50, max_bytes: int = 0, keep: int = 3):
        self.path = Path(path) if path else None
        self.max_bytes, self.keep = int(max_bytes), max(0, int(keep))
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115
        self.n, self.flush_every = 0, flush_every
        self.size = 0
        self.rotations = 0

    def _rotate(self) -> None:
        import os

        self.fh.close()
        p = str(self.path)
        if self.keep == 0:
            os.unlink(p)
        else:
            for i in range(self.keep - 1, 0, -1):
                if os.path.exists(f"{p}.{i}"):
                    os.replace(f"{p}.{i}", f"{p}.{i + 1}")  # the oldest (.keep) is overwritten: dropped
            os.replace(p, f"{p}.1")
        self.fh = open(p, "w", encoding="utf-8")  # noqa: SIM115
        self.size = 0
        self.rotations += 1

    def write(self, rec: dict) -> None:
        if self.fh is None:
            return
        line = json.dumps(rec) + "\n"
        nbytes = len(line.encode("utf-8"))
        if self.max_bytes > 0 and self.size > 0 and self.size + nbytes > self.max_bytes:
            self._rotate()
        self.fh.write(line)
        self.size += nbytes
        self.n += 1
        if self.n % self.flush_every == 0:
            self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class PeriodicSummary:
    """Writes the run's summary atomically to ``path`` every ``every_s`` seconds (and at the end): a crash
    leaves the last complete one, never a half-written file.

    The periodic writes happen in a background thread (the snapshot is taken in the loop's thread): the
    file system's fsync (tens of ms on an SD card) never stalls a control cycle. A snapshot that comes
    while the previous one is still being written is skipped, not queued. The final write waits for the
    thread and is written from the caller's thread."""

    def __init__(self, path: str | None, every_s: float, build):
        import threading

        self.path, self.every_s, self.build = path, max(0.05, float(every_s)), build
        self.next_at = time.monotonic() + self.every_s
        self.writes = 0
        self.skipped = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._pending: dict | None = None
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        if path:
            self._thread = threading.Thread(target=self._worker, name="kdp-summary-writer", daemon=True)
            self._thread.start()

    def _worker(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                s, self._pending = self._pending, None
                self._wake.clear()
                closing = self._closing
            if s is not None:
                self._write_now(s)
            if closing:
                return

    def _write_now(self, s: dict) -> None:
        try:
            write_summary(self.path, s)
            with self._lock:
                self.writes += 1
        except OSError as e:  # a full or read-only disk must not stop the robot: counted, reported at the end
            self.errors.append(str(e))

    def _snapshot(self, final: bool, extra: dict) -> dict:
        s = self.build()
        s.update(extra)
        s["final"] = final
        with self._lock:
            s["summary_writes"] = self.writes + 1
        s["summary_skipped"] = self.skipped
        if self.errors:
            s["summary_errors"] = self.errors[-3:]
        return s

    def maybe(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.path and now >= self.next_at:
            self.next_at = now + self.every_s
            s = self._snapshot(False, {})
            with self._lock:
                if self._pending is not None:
                    self.skipped += 1
                self._pending = s
                self._wake.set()

    def write(self, final: bool, **extra) -> dict:
        """The final summary: stop the thread (after its write in progress), then write from here."""
        if self._thread is not None:
            with self._lock:
                self._closing = True
                self._pending = None
                self._wake.set()
            self._thread.join(timeout=30)
            self._thread = None
        s = self._snapshot(final, extra)
        if self.path:
            write_summary(self.path, s)  # the final one raises on a disk error: the command reports it
            self.writes += 1
        return s


def run(bundle: str, opts: RunOptions, log=print) -> dict:
    """Run the closed loop; returns the summary (see module docstring)."""
    from kdp_edge.runtime import Planner

    stop = {"signal": None}

    def _on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    old_usr1 = signal.getsignal(signal.SIGUSR1)  # _run sets it for --slow-plan-toggle
    old_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(bundle, opts, log, stop, Planner)
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        signal.signal(signal.SIGUSR1, old_usr1)


def _run(bundle: str, opts: RunOptions, log, stop: dict, Planner) -> dict:
    planner = Planner.load(bundle, backend=opts.backend, precision=opts.precision, threads=opts.threads,
                           candidates=opts.candidates, seed=opts.seed)
    m = planner.manifest
    state_dim = m.obs_dim // m.obs_history  # what the controller streams
    history = None
    if m.obs_history > 1:
        from kdp_edge.runtime.history import HistoryPlanner

        planner = history = HistoryPlanner(planner, m.obs_history)
        log(f"observation history: the last {m.obs_history} STATEs ({state_dim} values each) are planned on")
    slow = None
    if opts.slow_plan_ms > 0:
        planner = slow = _SlowPlanner(planner, opts.slow_plan_ms, enabled=not opts.slow_plan_toggle)
        if opts.slow_plan_toggle:  # soak drills: another process switches the slow planner on and off
            def _toggle(_signum, _frame):
                slow.enabled = not slow.enabled

            signal.signal(signal.SIGUSR1, _toggle)
    cal = timing = None
    if opts.calibration:
        from calibration.robot_io import RobotCalibration

        cal = RobotCalibration.load(opts.calibration)
    offset_ms = opts.offset_ms
    rate = opts.rate_hz
    if opts.timing:
        from calibration.robot_io import load_timing

        timing_file = load_timing(opts.timing)
        timing = timing_file["recommended"]
        rate = rate or float(timing["rate_hz"])
        offset_ms = float(timing["offset_ms"]) if offset_ms is None else offset_ms
        log(f"timing from {opts.timing}: {rate:g} Hz, offset {offset_ms:.1f} ms (explicit --rate/--offset-ms win)")
    offset_ms = offset_ms or 0.0
    rate = rate or m.control_rate_hz
    if m.step_dt_s and abs(rate * m.step_dt_s - 1.0) > 0.01:
        log(f"note: the plans' steps are {1e3 * m.step_dt_s:g} ms apart (the training data's rate) but the loop runs at "
            f"{rate:g} Hz; each action is held for {1e3 / rate:.1f} ms (pass --rate {1 / m.step_dt_s:g} to match)")
    with ExitStack() as stack:
        sim = None
        port = opts.port
        if parse_sim_port(port) is not None:
            check_sim_env(bundle, m.env, parse_sim_port(port)[0])
            sim = start_sim(port, rate, max(1, opts.episodes), opts.seed)
            stack.callback(sim.robot.close)
            port = sim.robot.port
            log(f"virtual arm {sim.task.env} on {port}: a virtual {sim.task.servo_bus} servo bus (servos teleported to "
                "each episode's start)" if sim.task.servo_bus else
                f"virtual robot {sim.task.env} on {port} ({rate:g} Hz STATE, watchdog as the firmware)")
        if sim is not None and sim.task.servo_bus:  # a virtual arm of smart servos: the servo link to its bus
            from firmware_bridge.servo_bus import open_servo_link

            ignored = [f for f, v in (("--bus", opts.bus), ("--motors", opts.motors),
                                      ("--servo-calibration", opts.servo_calibration)) if v]
            if ignored:
                raise RunError(f"{opts.port} sets its own servo family, motors and calibration; {', '.join(ignored)} "
                               "would be ignored. fix: drop " + " and ".join(ignored))

            link = open_servo_link(port, sim.task.servo_bus, sim.task.motors(), state_dim=state_dim,
                                   action_dim=m.act_dim, calibration=sim.task.servo_calibration(),
                                   on_stop=opts.on_stop, rate_hz=rate, log=log)
            log(f"servo bus ({link.family.name}, motors {link.ids}, radians) on {link.port}: the virtual arm")
        elif opts.bus or port.startswith("sim-servo://"):  # smart servos on a bus, no kdp firmware (#26)
            from firmware_bridge.servo_bus import open_servo_link

            link = open_servo_link(port, opts.bus, opts.motors, state_dim=state_dim, action_dim=m.act_dim,
                                   baud=opts.baud, calibration=opts.servo_calibration, on_stop=opts.on_stop,
                                   rate_hz=rate, log=log)
            log(f"servo bus ({link.family.name}, motors {link.ids}) on {link.port}: one sync read per STATE"
                f"{' (positions, velocities)' if link.velocity else ' (positions)'}, one sync write per action, "
                f"on stop: {opts.on_stop}")
        else:
            link = SerialLink(port, opts.baud, stop_on_close=True)
        stack.callback(link.close)
        caps = link.hello(opts.hello_timeout)
        if cal is not None:
            from calibration.robot_io import check_against_hello

            for w in check_against_hello(cal, caps, f"calibration {opts.calibration}"):
                log(f"note: {w}")
        if timing is not None:
            sig = (timing_file.get("hello") or {}).get("fw_signature")
            if sig is not None and str(sig) != f"0x{caps.fw_signature:08x}":
                log(f"note: {opts.timing} was measured on firmware {sig}, the controller runs "
                    f"0x{caps.fw_signature:08x}: re-run `kdp-edge calibrate latency` if the timing changed")
        if caps.state_dim != state_dim or caps.action_dim != m.act_dim:
            raise RunError(f"controller on {opts.port} has state_dim {caps.state_dim} / action_dim {caps.action_dim}, "
                           f"the bundle expects {state_dim} / {m.act_dim}: wrong bundle for this robot, or map the "
                           "robot's units with a calibration file")
        goal = np.asarray(opts.goal, np.float32) if opts.goal else (sim.task.goal.astype(np.float32) if sim and sim.task.goal is not None else None)
        if m.goal_dim and (goal is None or len(goal) != m.goal_dim or not np.isfinite(goal).all()):
            raise RunError(f"the bundle is goal-conditioned ({m.goal_dim} goal values): pass --goal "
                           + ",".join(["X"] * m.goal_dim))
        cfg = LoopConfig(rate_hz=rate, sync=opts.sync, offset_s=offset_ms / 1e3, deadline_frac=opts.deadline_frac,
                         obs_abs_max=opts.obs_abs_max)
        jl = JsonlLog(opts.log, max_bytes=int(opts.log_max_mb * 1e6), keep=opts.log_keep)
        stack.callback(jl.close)
        episode = {"i": 0, "t0": time.monotonic()}
        episodes: list[dict] = []

        serial_io = SerialLoopIO(link)
        io: Any = serial_io
        if cal is not None:
            from calibration.robot_io import CalibratedLoopIO

            io = CalibratedLoopIO(serial_io, cal)
            log(f"calibration {opts.calibration}: raw STATE -> model units, actions -> raw commands (clamped)")

        unslowed = LatencyHistogram()  # with --slow-plan-toggle: the plans the drill did not slow (soak slices)

        def on_cycle(rec: CycleRecord) -> None:
            if slow is not None and not slow.enabled and rec.plan_ms is not None:
                unslowed.add(rec.plan_ms)
            d = rec.to_dict()
            last = serial_io.last
            if last is not None and rec.seq is not None and last.seq == rec.seq:  # the state this cycle used
                if cal is not None:
                    d["obs"] = [float(v) for v in cal.state_to_model(last.values)]
                    d["obs_raw"] = [float(v) for v in last.values]
                else:
                    d["obs"] = [float(v) for v in last.values]
            if cal is not None and rec.sent and io.last_raw_action is not None:
                d["action_raw"] = [float(v) for v in io.last_raw_action]
            if sim is not None:
                d["episode"] = episode["i"]
            jl.write(d)

        rx_keys = ("rx_crc_errors", "rx_malformed", "rx_resyncs", "rx_bytes_discarded", "states_dropped_stale",
                   "states_out_of_order", "states_duplicate", "states_nonfinite", "controller_resets",
                   "actions_refused_stale", "disconnects", "reconnects", "write_timeouts", "watchdog_trips_seen")
        link_stats = lambda: {k: v for k, v in link.stats.items() if (k in rx_keys or k.startswith("bus_")) and v}  # noqa: E731
        loop = ControlLoop(planner, io, cfg, goal, on_cycle, link_stats)
        # warm up the whole plan path (checks, noise, model, scoring, action selection) on a STATE of this
        # robot before the first counted cycle: the first plans pay one-off costs the loop must not see
        first = io.read_observation(opts.hello_timeout)
        if first is None:
            raise RunError(f"no STATE from the controller on {opts.port} within {opts.hello_timeout:g} s after HELLO. "
                           "fix: check that the firmware streams STATE (kdp-edge serial-probe --port ...)")
        try:
            wu = loop.warm_up(first, opts.warmup_plans)
        except ValueError as e:  # e.g. the goal lies inside a wall of the bundle's maze
            raise RunError(f"cannot plan with this bundle on {opts.port}: {e}. fix: use the robot / environment "
                           f"the bundle was exported for{f' ({m.env})' if m.env else ''}, or pass a --goal it can reach"
                           ) from e
        if history is not None:
            history.reset()  # the warm-up's observations are not this run's history
        log(f"warm-up: {wu['plans']} whole plans, first {wu['first_ms']:.2f} ms, max {wu['max_ms']:.2f} ms, "
            f"{wu['over_deadline']} over the {wu['deadline_ms']:.1f} ms deadline (not counted as loop misses)")
        def start_episode(i: int) -> None:
            """Episode ``i`` on the virtual robot: its start, and its goal unless --goal was given."""
            sim.task.prepare(i)
            sim.robot.reset_plant()
            if not opts.goal and sim.task.goal is not None:
                loop.goal = np.asarray(sim.task.goal, np.float32)
            if hasattr(link, "resume"):  # a servo link stopped by the previous episode's end acts again
                link.resume()

        if sim is not None:  # the first episode starts now, not when the robot was started
            start_episode(0)
        log(f"planning with {planner.describe()} at {rate:g} Hz ({opts.sync} sync); Ctrl-C stops")
        t_start = time.monotonic()

        scheduling: dict[str, Any] = {}

        def build_summary() -> dict:
            summary = loop.summary(histograms=True)
            summary["scheduling"] = dict(scheduling)
            if slow is not None:
                summary["histograms"]["plan_ms_unslowed"] = unslowed.sparse()
            summary["link"] = {k: v for k, v in link.stats.items() if k != "connected"}
            summary["stopped_by"] = stop["signal"] or "end"
            summary["bundle"] = {"path": str(bundle), "model": planner.describe(), "backend": opts.backend}
            summary["port"] = opts.port
            summary["elapsed_s"] = time.monotonic() - t_start
            if opts.log:
                summary["log"] = {"path": str(opts.log), "lines": jl.n, "rotations": jl.rotations,
                                  "max_mb": opts.log_max_mb, "keep": opts.log_keep}
            if slow is not None:
                summary["slow_plan"] = {"ms": opts.slow_plan_ms, "enabled_now": slow.enabled}
            if cal is not None:
                summary["calibration"] = io.summary(str(opts.calibration))
            if timing is not None:
                summary["timing"] = {"file": str(opts.timing), "rate_hz": rate, "offset_ms": offset_ms}
            if sim is not None:
                summary["sim"] = sim.task.summary(episodes)
            return summary

        periodic = PeriodicSummary(opts.summary_path, opts.summary_every_s, build_summary)
        # after the summary writer started (threads inherit the policy): only this loop's thread is real-time
        scheduling.update(stack.enter_context(realtime(opts.realtime)) or {"policy": "default"})
        if opts.realtime is not None:
            log(f"control loop thread: SCHED_FIFO priority {opts.realtime}")
        t_end = None if opts.duration_s is None else time.monotonic() + opts.duration_s
        try:
            while stop["signal"] is None:
                if opts.cycles is not None and loop.cycle >= opts.cycles:
                    break
                if t_end is not None and time.monotonic() >= t_end:
                    break
                loop.step()
                periodic.maybe()
                if sim is not None and sim.task.finished():
                    episodes.append(sim.task.result(episode["i"]))
                    log(f"episode {episode['i']}: {sim.task.metric.replace('_', ' ')} "
                        f"{episodes[-1][sim.task.metric]:.3g}, success {episodes[-1]['success']}")
                    episode["i"] += 1
                    if episode["i"] >= opts.episodes and opts.duration_s is None and opts.cycles is None:
                        break
                    # the last episode's action must not drive the new start; a stop that was not written, or a
                    # Ctrl-C / SIGTERM that arrived during the episode's last cycle, ends the run (never resumed)
                    if not link.send_stop() or stop["signal"] is not None:
                        break
                    start_episode(episode["i"])
                    loop.newest = None  # plans of the previous episode are not a fallback for this one
                    if history is not None:
                        history.reset()  # nor its observations a history
        except (KDPError, LinkError) as e:  # the link gave up (e.g. disconnected too long): say so in the summary
            link.send_stop()
            jl.close()
            periodic.write(final=True, stopped_by="error", error=str(e))
            raise
        link.send_stop()
        jl.close()  # flushed before the final summary names its line count
        return periodic.write(final=True)


def format_summary(s: dict) -> str:
    c, link = s["counts"], s["link"]
    pl, jt, tx = s.get("plan_ms", {}), s.get("jitter_ms", {}), s.get("tick_to_tx_ms", {})
    f = lambda d, k: f"{d[k]:.2f}" if k in d else "-"  # noqa: E731
    lines = [
        f"run summary ({s['bundle']['model']}, {s['rate_hz']:g} Hz, {s['sync']} sync, stopped by {s['stopped_by']})",
        "| metric | p50 | p99 | max |", "|---|---|---|---|",
        f"| plan latency (ms) | {f(pl, 'p50_ms')} | {f(pl, 'p99_ms')} | {f(pl, 'max_ms')} |",
        f"| loop jitter (ms) | {f(jt, 'p50_ms')} | {f(jt, 'p99_ms')} | {f(jt, 'max_ms')} |",
        f"| cycle start to ACTION sent (ms) | {f(tx, 'p50_ms')} | {f(tx, 'p99_ms')} | {f(tx, 'max_ms')} |",
        "",
        f"cycles {c['cycles']}, plans {c['plans']}, actions sent {c['actions_sent']} "
        f"(fallback {c['fallback_actions']}), deadline misses {c['deadline_misses']} (after warm-up), "
        f"no state {c['no_obs']}, "
        f"invalid state {c['invalid_obs']}, horizon exhausted {c['horizon_exhausted']}, "
        f"stale STATE refused {c.get('stale_obs_refused', 0)}",
        f"link: CRC errors {link.get('rx_crc_errors', 0)}, malformed {link.get('rx_malformed', 0)}, "
        f"resyncs {link.get('rx_resyncs', 0)}, stale states dropped {link.get('states_dropped_stale', 0)}, "
        f"controller resets {link.get('controller_resets', 0)}, reconnects {link.get('reconnects', 0)}, "
        f"watchdog trips seen {link.get('watchdog_trips_seen', 0)}",
    ]
    if any(k.startswith("bus_") for k in link):
        errs = ", ".join(f"{k[10:]} {v}" for k, v in sorted(link.items()) if k.startswith("bus_error_")) or "none"
        lines.append(f"servo bus: sync reads {link.get('bus_sync_reads', 0)}, missed STATEs "
                     f"{link.get('bus_states_missed', 0)}, missing replies {link.get('bus_missing_replies', 0)}, "
                     f"checksum errors {link.get('bus_checksum_errors', 0)}, status errors "
                     f"{link.get('bus_status_errors', 0)} ({errs}), goals clamped {link.get('bus_goals_clamped', 0)}")
    wu = s.get("warmup")
    if wu:
        lines.append(f"warm-up before the first cycle: {wu['plans']} whole plans, first {wu['first_ms']:.2f} ms, "
                     f"max {wu['max_ms']:.2f} ms, {wu['over_deadline']} over the {wu['deadline_ms']:.1f} ms deadline")
    if "calibration" in s:
        lines.append(f"calibration {s['calibration']['file']}: actions clamped {s['calibration']['actions_clamped']} "
                     f"(per channel {s['calibration']['channel_clamps']})")
    if "sim" in s:
        sm = s["sim"]
        if sm.get("episodes"):
            metric = sm.get("metric", "normalized_score")
            lines.append(f"sim {sm['env']}: {sm['episodes']} episodes, {metric.replace('_', ' ')} "
                         f"{sm[metric + '_mean']:.3g} ± {sm[metric + '_sem']:.2g}, "
                         f"success {100 * sm['success_rate']:.0f}%")
        else:
            lines.append(f"sim {sm['env']}: {sm['note']}")
    return "\n".join(lines)


def write_summary(path: str | Path, summary: dict) -> None:
    from kdp_edge.fileio import atomic_write_json

    atomic_write_json(path, summary)
