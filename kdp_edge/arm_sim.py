"""The virtual arm behind ``kdp-edge run --port sim://feetech-arm`` (or ``sim://dynamixel-arm``): six
servos on a :class:`firmware_bridge.servo_sim.ServoBusSim` (IDs 1..6, 4096-tick models) whose servo
model is the arm task's plant (:mod:`kdp_edge.arm`: same time constant, speed limit in ticks/s), and the
seeded episodes of ``kdp-edge eval --env arm`` played on it in real time.

The bundle talks Feetech / Dynamixel packets over the pty exactly as to a real bus
(:class:`firmware_bridge.servo_bus.ServoBusLink`, a ``radians`` calibration: tick 2047.5 = 0 rad, ranges =
the joint limits). The servos move on the wall clock between the host's reads, as real ones do.

Simulator shortcuts (no real arm does this): at each episode's start the servos are teleported to the
start pose (:meth:`ServoBusSim.teleport`), and the episode is scored from the servos' actual positions
at every SYNC_READ (``on_sync_read``): step k = the control period (20 ms) since the start that the read
falls in; a step counts as at the goal when a read in it had every joint within the tolerance, until
the first read inside the forbidden region. The normalised score uses the expert's and the random
policy's returns on the same start and goal on the numpy plant (:func:`kdp_edge.arm_eval.reference_returns`).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from .arm import CENTER_TICK, SPEC, TICKS_PER_RAD, episode_poses, in_region, reached
from .sim_episodes import SimEpisodes

MOTORS = [1, 2, 3, 4, 5, 6]


def to_ticks(q: np.ndarray) -> np.ndarray:
    return np.asarray(q, np.float64) * TICKS_PER_RAD + CENTER_TICK


def from_ticks(t: np.ndarray) -> np.ndarray:
    return (np.asarray(t, np.float64) - CENTER_TICK) / TICKS_PER_RAD


class BusArmTracker:
    """Scores one episode from the virtual bus's reads (see module docstring); ``steps`` = whole control
    periods since the episode started (wall clock)."""

    def __init__(self, horizon: int):
        self.horizon = horizon
        self._lock = threading.Lock()
        self.begin(None, None)

    def begin(self, goal: np.ndarray | None, t0: float | None) -> None:
        with self._lock:
            self.goal, self.t0 = goal, t0
            self.at_goal: set[int] = set()
            self.closest = float("inf")  # rad: the smallest max-over-joints distance to the goal read
            self.entered_at: int | None = None
            self.reads = 0

    @property
    def steps(self) -> int:
        return 0 if self.t0 is None else int((time.monotonic() - self.t0) / SPEC.dt)

    def observe(self, now: float, ticks: dict[int, float]) -> None:
        """``on_sync_read`` hook (the bus sim's thread): actual positions in ticks by motor id."""
        with self._lock:
            if self.t0 is None or self.goal is None or now < self.t0:
                return
            k = int((now - self.t0) / SPEC.dt)
            if k >= self.horizon:
                return
            q = from_ticks([ticks[i] for i in MOTORS])
            self.reads += 1
            self.closest = min(self.closest, float(np.abs(q - self.goal).max()))
            if self.entered_at is None and in_region(q):
                self.entered_at = k
            if reached(q, self.goal) and (self.entered_at is None or k < self.entered_at):
                self.at_goal.add(k)

    def outcome(self) -> dict:
        with self._lock:
            return {"return": len(self.at_goal), "entered": self.entered_at is not None,
                    "arrival_step": min(self.at_goal) + 1 if self.at_goal else -1, "reads": self.reads,
                    "closest_error": self.closest}


class ArmBusRobot:
    """The virtual bus with the episode hooks: ``.port``, ``.reset_plant()``, ``.close()``."""

    def __init__(self, task: ArmEpisodes, sim):
        self.task, self.sim, self.port = task, sim, sim.port

    def reset_plant(self, seed: int | None = None) -> None:
        """Teleport the servos to the prepared episode's start; its scoring starts now."""
        start = to_ticks(self.task.starts[self.task.index])
        self.sim.teleport(dict(zip(MOTORS, start.tolist(), strict=True)))
        self.task.plant.begin(self.task.goal.copy(), time.monotonic())

    def close(self) -> None:
        self.sim.close()


class ArmEpisodes(SimEpisodes):
    """``sim://feetech-arm`` / ``sim://dynamixel-arm``: the seeded episodes of ``kdp-edge eval --env arm``
    (start and goal poses of episode i are the evaluation's), each ``horizon`` control periods long, one
    goal per episode (``goal`` follows :meth:`prepare`)."""

    metric = "normalized_score"

    def __init__(self, env: str, episodes: int, seed: int):
        from .envs.arm import SIM_VARIANTS

        self.env, self.servo_bus, self.seed = env, SIM_VARIANTS[env], seed
        self.starts, self.goals = episode_poses(max(1, episodes), seed)
        self.horizon = SPEC.horizon
        self.plant = BusArmTracker(self.horizon)
        self.index = 0
        self.goal = self.goals[0].copy()
        self._refs: dict | None = None

    def set_horizon(self, steps: int) -> None:
        self.horizon = self.plant.horizon = int(steps)
        self._refs = None

    def prepare(self, i: int) -> None:
        self.index = i % len(self.starts)
        self.goal = self.goals[self.index].copy()

    def motors(self) -> list[int]:
        return list(MOTORS)

    def servo_calibration(self):
        """Ticks <-> radians for the run app's servo link: 0 rad at tick 2047.5, ranges = the joint limits."""
        from firmware_bridge.servo_bus import MotorCalibration, ServoCalibration

        lim = SPEC.high * TICKS_PER_RAD
        return ServoCalibration({i: MotorCalibration(id=i, name=name, units="radians",
                                                     range_min=int(round(CENTER_TICK - x)),
                                                     range_max=int(round(CENTER_TICK + x)))
                                 for i, name, x in zip(MOTORS, ("pan", "lift", "elbow", "wrist_flex", "wrist_roll",
                                                                "gripper"), lim, strict=True)}, source=f"sim://{self.env}")

    def start_robot(self, rate_hz: float, seed: int, **opts) -> ArmBusRobot:
        """Start the virtual bus (servos at episode 0's start pose); ``opts``: none are taken."""
        from firmware_bridge.servo_sim import ServoBusSim

        if opts:
            raise ValueError(f"the virtual arm takes no {', '.join(sorted(opts))} option. fix: drop it (it takes horizon only)")
        sim = ServoBusSim(self.servo_bus, list(MOTORS), positions=to_ticks(self.starts[0]).tolist(),
                          tau_s=SPEC.tau_s, max_speed=SPEC.max_speed * TICKS_PER_RAD,
                          on_sync_read=self.plant.observe)
        return ArmBusRobot(self, sim.start())

    def references(self) -> dict:
        """The expert's and the random policy's returns [episodes] on the numpy plant (this horizon)."""
        if self._refs is None:
            from .arm_eval import reference_returns

            refs = reference_returns(self.starts, self.goals, self.horizon, self.seed)
            self._refs = {k: v["returns"] for k, v in refs.items()}
        return self._refs

    def result(self, i: int) -> dict:
        from .arm_eval import normalized

        o = self.plant.outcome()
        k = i % len(self.starts)
        ref = self.references()
        score = float(normalized(np.array([o["return"]]), ref["expert"][k:k + 1], ref["random"][k:k + 1])[0])
        return {"episode": i, "return": o["return"], "success": o["return"] > 0 and not o["entered"],
                "region_entered": o["entered"], "arrival_step": o["arrival_step"], "normalized_score": score,
                "closest_error": o["closest_error"],
                "expert_return": float(ref["expert"][k]), "random_return": float(ref["random"][k]),
                "sync_reads_scored": o["reads"], "start": self.starts[k].tolist(), "goal": self.goals[k].tolist()}
