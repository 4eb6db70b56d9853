"""The arm task (issue #26): a 6-joint arm in joint space that must go around a forbidden region
(numpy only: the device runtime's candidate scorer uses its geometry).

Units: joint positions in radians, time in seconds, speeds in rad/s. Shapes: ``q`` [6] or [E, 6]
(E episodes in lockstep).

* Observation [6]: the joint positions (shoulder pan, shoulder lift, elbow, wrist flex, wrist roll,
  gripper). No velocities: a first-order position servo's response depends on its position and
  goal only.
* Action [6]: absolute goal positions, what one SYNC_WRITE of goal positions sends to the servos.
* Goal [6]: the target pose.
* Plant (:func:`servo_step`): every joint is a first-order position servo toward its goal (the
  action, clipped to the joint limits): per step of ``dt``, ``(goal - q) * (1 - exp(-dt / tau_s))``,
  at most ``max_speed * dt``. This is the servo model of :class:`firmware_bridge.servo_sim.ServoBusSim`
  (``tau_s``, ``max_speed`` in ticks/s = rad/s x :data:`TICKS_PER_RAD`), so the data, the evaluation
  and the virtual arm behind the servo bus follow the same physics (tests/test_arm_task.py checks it).
* Forbidden region: the box ``region_low..region_high`` in (shoulder pan, shoulder lift), standing for
  a table / obstacle; starts and goals lie outside it (with ``clearance``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
TICKS_PER_RAD = 4095 / (2 * np.pi)  # a 4096-tick servo (Feetech STS3215, Dynamixel XL430) in radians units
CENTER_TICK = 2047.5  # 0 rad


@dataclass(frozen=True)
class ArmSpec:
    """The task's constants (radians, seconds)."""

    dt: float = 0.02  # control period: one data step, one planned step
    tau_s: float = 0.05  # servo time constant (the virtual bus's default)
    max_speed: float = 2.0  # rad/s per joint
    limit: tuple = (2.0, 1.3, 1.8, 1.5, 2.0, 0.8)  # joint limits: -limit..+limit
    region_dims: tuple = (0, 1)  # (shoulder pan, shoulder lift)
    region_low: tuple = (-0.5, -0.3)
    region_high: tuple = (0.5, 0.8)
    clearance: float = 0.15  # starts / goals and the expert's corners keep this far from the region
    tolerance: float = 0.05  # reached: every joint within this of the goal
    horizon: int = 300  # steps per evaluation episode (6 s)

    @property
    def low(self) -> np.ndarray:
        return -np.asarray(self.limit, np.float64)

    @property
    def high(self) -> np.ndarray:
        return np.asarray(self.limit, np.float64)

    def describe(self) -> str:
        lo, hi = self.region_low, self.region_high
        return (f"6-joint arm, first-order servos (tau {1e3 * self.tau_s:g} ms, max {self.max_speed:g} rad/s), "
                f"{1e3 * self.dt:g} ms steps, forbidden (pan, lift) box [{lo[0]:g}, {hi[0]:g}] x [{lo[1]:g}, {hi[1]:g}] rad")


SPEC = ArmSpec()


def servo_step(q: np.ndarray, goal: np.ndarray, dt: float, tau_s: float, max_speed: float) -> np.ndarray:
    """Positions after ``dt`` seconds of first-order servos at ``q`` following ``goal`` (same shapes)."""
    step = (goal - q) * (1.0 - np.exp(-dt / tau_s))
    lim = max_speed * dt
    return q + np.clip(step, -lim, lim)


def in_region(q: np.ndarray, spec: ArmSpec = SPEC, margin: float = 0.0) -> np.ndarray:
    """[...] bool: poses ``q`` [..., 6] inside the forbidden box (grown by ``margin`` rad)."""
    p = np.asarray(q)[..., list(spec.region_dims)]
    lo, hi = np.asarray(spec.region_low) - margin, np.asarray(spec.region_high) + margin
    return ((p >= lo) & (p <= hi)).all(-1)


def reached(q: np.ndarray, goal: np.ndarray, spec: ArmSpec = SPEC) -> np.ndarray:
    """[...] bool: every joint within ``spec.tolerance`` of the goal."""
    return (np.abs(np.asarray(q) - np.asarray(goal)) <= spec.tolerance).all(-1)


def random_poses(rng: np.random.Generator, n: int, spec: ArmSpec = SPEC) -> np.ndarray:
    """[n, 6] uniform poses 0.1 rad inside the joint limits, ``clearance`` outside the forbidden box."""
    out = np.empty((n, 6))
    k = 0
    while k < n:
        q = rng.uniform(spec.low + 0.1, spec.high - 0.1, size=(2 * (n - k) + 4, 6))
        q = q[~in_region(q, spec, spec.clearance)][: n - k]
        out[k:k + len(q)] = q
        k += len(q)
    return out


def episode_poses(n: int, seed: int, spec: ArmSpec = SPEC) -> tuple[np.ndarray, np.ndarray]:
    """Starts [n, 6] and goals [n, 6] of ``n`` seeded episodes (the evaluation's and the virtual arm's).
    Episode i depends on (seed, i) only: the first k episodes are the same whatever ``n``."""
    pairs = [random_poses(np.random.default_rng([seed, 26, i]), 2, spec) for i in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# ---------------------------------------------------------------------------------------------- geometry
def segments_hit_box(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[...] bool: does the 2-D segment a->b ([..., 2] each) meet the box lo..hi (slab clipping)?"""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    d = b - a
    t0 = np.zeros(a.shape[:-1])
    t1 = np.ones(a.shape[:-1])
    hit = np.ones(a.shape[:-1], bool)
    for k in range(2):
        par = np.abs(d[..., k]) < 1e-12
        hit &= ~(par & ((a[..., k] < lo[k]) | (a[..., k] > hi[k])))
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = (lo[k] - a[..., k]) / d[..., k]
            tb = (hi[k] - a[..., k]) / d[..., k]
        t_in = np.where(par, -np.inf, np.minimum(ta, tb))
        t_out = np.where(par, np.inf, np.maximum(ta, tb))
        t0, t1 = np.maximum(t0, t_in), np.minimum(t1, t_out)
    return hit & (t0 <= t1)


class BoxGeodesic:
    """Shortest 2-D path lengths around an axis-aligned box (corners of the box grown by ``margin``),
    to one goal; the segment test uses the box grown by ``margin / 2`` so that paths along its sides
    (``margin`` away) count as clear."""

    def __init__(self, low, high, margin: float):
        self.lo, self.hi = np.asarray(low, np.float64), np.asarray(high, np.float64)
        self.test_lo, self.test_hi = self.lo - margin / 2, self.hi + margin / 2
        lo, hi = self.lo - margin, self.hi + margin
        self.corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
        self._last: tuple[bytes, tuple[np.ndarray, np.ndarray]] | None = None  # (goal bytes, corner_costs)

    def clear(self, a, b) -> np.ndarray:
        return ~segments_hit_box(a, b, self.test_lo, self.test_hi)

    def corner_costs(self, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Path length from each corner to ``goal`` [2] (Dijkstra over the corners) and each corner's next
        node (0..3 a corner, 4 the goal). Kept for the last goal: a goal stays for a whole episode, and the
        planner's scoring and the expert ask every step."""
        goal = np.asarray(goal, np.float64)
        if self._last is not None and self._last[0] == goal.tobytes():
            return self._last[1]
        nodes = np.vstack([self.corners, goal[None]])
        vis = self.clear(nodes[:, None], nodes[None])
        dist = np.linalg.norm(nodes[:, None] - nodes[None], axis=-1)
        cost, nxt = np.full(5, np.inf), np.full(5, -1)
        cost[4], heap = 0.0, [(0.0, 4)]
        while heap:
            c, i = heapq.heappop(heap)
            if c > cost[i]:
                continue
            for j in range(4):
                if j != i and vis[i, j] and c + dist[i, j] < cost[j]:
                    cost[j], nxt[j] = c + dist[i, j], i
                    heapq.heappush(heap, (cost[j], j))
        self._last = (goal.tobytes(), (cost[:4], nxt[:4]))
        return self._last[1]

    def lengths(self, p: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """[...] shortest path lengths from points ``p`` [..., 2] to ``goal`` [2] around the box; where no way
        exists (a point or the goal inside the box grown by ``margin / 2``): the straight distance plus the
        grown box's perimeter (finite, and longer than any way round)."""
        p = np.asarray(p, np.float64)
        goal = np.asarray(goal, np.float64)
        cost, _ = self.corner_costs(goal)
        direct = np.where(self.clear(p, goal), np.linalg.norm(p - goal, axis=-1), np.inf)
        via = np.where(self.clear(p[..., None, :], self.corners), np.linalg.norm(p[..., None, :] - self.corners, axis=-1),
                       np.inf) + cost
        out = np.minimum(direct, via.min(-1))
        perimeter = 2 * float((self.corners[2] - self.corners[0]).sum())
        return np.where(np.isfinite(out), out, np.linalg.norm(p - goal, axis=-1) + perimeter)

    def next_waypoint(self, p: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """[2]: where to head from ``p`` [2] on the shortest path to ``goal`` [2]: the goal when the way is
        clear, else the first corner of the shortest path. From inside the test box: straight out
        through the nearest side (a noisy start must first leave the box)."""
        p, goal = np.asarray(p, np.float64), np.asarray(goal, np.float64)
        if ((p > self.test_lo) & (p < self.test_hi)).all():
            gaps = np.array([p[0] - self.test_lo[0], self.test_hi[0] - p[0], p[1] - self.test_lo[1], self.test_hi[1] - p[1]])
            out = p.copy()
            k = int(np.argmin(gaps))
            out[k // 2] = self.corners[0][k // 2] if k % 2 == 0 else self.corners[2][k // 2]
            return out
        if self.clear(p, goal):
            return goal
        cost, _ = self.corner_costs(goal)
        via = np.where(self.clear(p[None], self.corners), np.linalg.norm(self.corners - p, axis=-1), np.inf) + cost
        return self.corners[int(np.argmin(via))]


# ---------------------------------------------------------------------------------------------- plant and expert
class ArmPlant:
    """E arms in lockstep (positions ``q`` [E, 6], radians); :meth:`step` applies goal positions [E, 6]
    (clipped to the joint limits) for one control period."""

    def __init__(self, starts: np.ndarray, spec: ArmSpec = SPEC):
        self.spec = spec
        self.q = np.array(starts, np.float64, ndmin=2)

    def step(self, goals: np.ndarray) -> np.ndarray:
        s = self.spec
        g = np.clip(np.asarray(goals, np.float64), s.low, s.high)
        self.q = servo_step(self.q, g, s.dt, s.tau_s, s.max_speed)
        return self.q.copy()


@dataclass
class ArmExpert:
    """The scripted expert: heads for the goal in a straight line in joint space, via the corners of the
    forbidden box (grown by ``spec.clearance``) when the straight way in (pan, lift) crosses it. It
    commands a goal ``lead`` rad ahead of the arm along that line, so every joint moves proportionally
    (the servos' speed limit is never reached: the path stays straight), and the goal itself when it
    is closer than that."""

    spec: ArmSpec = SPEC
    lead: float = 0.1

    def __post_init__(self):
        s = self.spec
        self.geo = BoxGeodesic(s.region_low, s.region_high, s.clearance)
        self.dims = list(s.region_dims)

    def target(self, q: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """[6]: the goal, with (pan, lift) replaced by the next waypoint."""
        t = np.array(goal, np.float64)
        t[self.dims] = self.geo.next_waypoint(q[self.dims], goal[self.dims])
        return t

    def act(self, q: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Action [6] (goal positions) for positions ``q`` [6] and goal [6]."""
        q = np.asarray(q, np.float64)
        d = self.target(q, np.asarray(goal, np.float64)) - q
        n = float(np.linalg.norm(d))
        return q + d * min(1.0, self.lead / n) if n > 0 else q.copy()

    def act_batch(self, q: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """[E, 6] actions for positions [E, 6] and goals [E, 6]."""
        return np.stack([self.act(a, g) for a, g in zip(q, goals, strict=True)])


__all__ = ["ArmExpert", "ArmPlant", "ArmSpec", "BoxGeodesic", "JOINTS", "SPEC", "TICKS_PER_RAD", "episode_poses",
           "in_region", "random_poses", "reached", "segments_hit_box", "servo_step"]
