"""The control loop: observe, plan, act at a fixed rate, with receding-horizon fallback.

Each cycle:

1. **Wait** for the cycle's start. ``sync="timer"``: host-paced fixed rate, sleeping until ~1 ms
   before the tick and spinning on ``monotonic`` for the rest (precise to tens of microseconds).
   ``sync="state"``: the controller's STATE stream paces the loop (each new observation starts a
   cycle): the lowest latency when the controller streams at the control rate.
2. **Observe**: the newest observation (values, its sequence number and host receive time).
3. **Plan** with the :class:`~kdp_edge.runtime.planner.Planner` (one forward pass, K candidates).
4. **Act**. The plan's step that is executed is the one planned for the moment the action takes
   effect: ``round((now + offset_s - t_obs) / step_dt)`` steps after the observation
   (``offset_s`` = known actuation latency). If the plan finished after the cycle's deadline
   (``deadline_frac`` of the period after the cycle start), the cycle is a **deadline miss**: the
   late plan is not executed as if it were fresh (its first step is already past); instead the
   step of the newest plan (the late one) that is due now is executed, indexed by time since *its*
   observation (receding-horizon fallback). Fallback steps are the plan's own actions, whatever the
   bundle's protocol (a tracker would need a fresh observation). The action is
   always tagged with the newest observation's sequence number, so the controller never acts on a
   stale command; once the newest plan's horizon is exhausted, nothing is sent and the
   controller's watchdog zeroes its outputs after ``valid_for_ms``.
5. **Log** one :class:`CycleRecord` (host monotonic times in seconds, latencies in ms).

Bad observations (counted as ``invalid_obs``): no new plan. With NaN/inf values, or a value beyond
``obs_abs_max`` (an out-of-range sensor reading), nothing is sent (an action cannot be tagged with an
invalid state; the controller keeps its last action until that action's valid-for time lapses, then its
watchdog zeroes the outputs). A finite observation of the wrong size gets the fallback rule above. No
new observation in a cycle (``no_obs``): fallback rule.

Stale-STATE protection: an action is never sent tagged with an observation older (``t_rx``: when the
controller sent it, on the host clock, to now) than ``max_obs_age_s`` (default: the ACTION's valid-for
time less one period, the slack for the ACTION's way to the controller), so the controller never
accepts an ACTION answering a STATE older than the ACTION's valid-for time. When the STATE stream
stalls, the fallback steps stop once the newest STATE is that old, and the controller's watchdog zeroes
the outputs one valid-for time later instead of the old plan running open-loop to its horizon
(``stale_obs_refused``).

Memory is bounded: latencies go into fixed-size log-binned histograms (:class:`LatencyHistogram`,
about 1 % resolution, exact max), not per-cycle lists, so a loop can run for days.

The loop talks to the robot through a :class:`LoopIO` (the serial bridge provides one; tests use
in-memory ones), so it imports nothing but numpy. Its clock is ``time.monotonic`` / ``time.sleep`` unless
``clock`` / ``sleep`` are given (tests: a fake clock that sleeping and planning advance, so timing rules
are checked exactly, whatever the machine's load); the observations' ``t_rx`` must be on the same clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from .planner import Plan, PlanInputError


class LatencyHistogram:
    """Fixed-size histogram of latencies in ms: log bins from 1 us to 100 s, ``BINS_PER_DECADE`` per decade
    (a percentile is the geometric middle of its bin: within 0.6 %), exact count / mean / max. Constant
    memory whatever the run length; :meth:`sparse` / :func:`percentiles_from_counts` let a reader take the
    percentiles of a time slice from two snapshots (counts after minus counts before)."""

    BINS_PER_DECADE = 200
    LO_DECADE = -3  # 1e-3 ms = 1 us
    DECADES = 8  # up to 1e5 ms
    NBINS = BINS_PER_DECADE * DECADES + 2  # + underflow and overflow bins

    def __init__(self) -> None:
        self.counts = np.zeros(self.NBINS, np.int64)
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    @classmethod
    def bin_of(cls, ms: float) -> int:
        if not ms > 0:
            return 0
        i = int(math.floor((math.log10(ms) - cls.LO_DECADE) * cls.BINS_PER_DECADE)) + 1
        return min(max(i, 0), cls.NBINS - 1)

    @classmethod
    def bin_mid_ms(cls, i: int) -> float:
        if i <= 0:
            return 0.0
        return 10 ** (cls.LO_DECADE + (min(i, cls.NBINS - 2) - 0.5) / cls.BINS_PER_DECADE)

    def add(self, ms: float) -> None:
        self.counts[self.bin_of(ms)] += 1
        self.n += 1
        self.total += ms
        if ms > self.max:
            self.max = ms

    def __len__(self) -> int:
        return self.n

    def sparse(self) -> dict[str, int]:
        """Non-empty bins as {bin index: count} (JSON-friendly keys)."""
        return {str(int(i)): int(self.counts[i]) for i in np.flatnonzero(self.counts)}

    def summary(self, qs=(50, 95, 99)) -> dict:
        if not self.n:
            return {}
        out = percentiles_from_counts(self.counts, qs)
        out["max_ms"] = float(self.max)
        out["mean_ms"] = float(self.total / self.n)
        out["n"] = int(self.n)
        return out


def percentiles_from_counts(counts, qs=(50, 95, 99)) -> dict[str, float]:
    """p-th percentiles (ms) of a :class:`LatencyHistogram`'s counts (an array, or a sparse dict)."""
    if isinstance(counts, dict):
        arr = np.zeros(LatencyHistogram.NBINS, np.int64)
        for k, v in counts.items():
            arr[int(k)] += int(v)
        counts = arr
    counts = np.asarray(counts, np.int64)
    n = int(counts.sum())
    if n <= 0:
        return {}
    cum = np.cumsum(counts)
    out = {}
    for q in qs:
        i = int(np.searchsorted(cum, max(1, math.ceil(q / 100 * n))))
        out[f"p{q}_ms"] = float(LatencyHistogram.bin_mid_ms(i))
    out["n"] = n
    return out


@dataclass
class Observation:
    values: np.ndarray  # raw observation [obs_dim]
    seq: int  # controller sequence number (what an action must be tagged with)
    t_rx: float  # host receive time, seconds, on the loop's clock (time.monotonic unless injected)
    flags: int = 0


class LoopIO(Protocol):
    def read_observation(self, timeout: float) -> Observation | None:
        """The newest observation not returned before, waiting up to ``timeout`` s; None if none."""

    def send_action(self, action: np.ndarray, obs: Observation, valid_for_ms: int) -> bool:
        """Send ``action`` tagged with ``obs.seq``; False if the link refused or failed."""

    def send_stop(self) -> None: ...


@dataclass
class LoopConfig:
    rate_hz: float = 50.0
    sync: str = "timer"  # timer | state
    offset_s: float = 0.0  # known actuation latency: execute the plan step due when the action lands
    deadline_frac: float = 1.0  # plan must finish within this fraction of the period
    valid_for_ms: int = 0  # ACTION valid-for; 0: three periods (the controller's watchdog)
    spin_s: float = 0.001  # final part of the wait spent spinning instead of sleeping
    max_obs_age_s: float = 0.0  # never send an action tagged with an older observation; 0: valid-for - 1 period
    obs_abs_max: float = 0.0  # an observation value beyond +-this is invalid (out of range); 0: no bound

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    def valid_ms(self) -> int:
        return self.valid_for_ms or max(1, int(round(3000 * self.period_s)))

    def max_age_s(self) -> float:
        """Default: the ACTION's valid-for time less one period (the slack for the ACTION's own way to the
        controller), at least one period."""
        return self.max_obs_age_s or max(self.period_s, self.valid_ms() / 1e3 - self.period_s)


@dataclass
class CycleRecord:
    """One control cycle (times: host ``monotonic`` seconds; latencies: ms)."""

    cycle: int
    t_tick: float  # scheduled start (timer) or state arrival (state sync)
    t_state_rx: float | None  # when the STATE was sent, on the host clock (over serial: ControllerClock), <= its receipt
    t_plan_start: float | None
    t_plan_end: float | None
    t_action_tx: float | None
    seq: int | None
    plan_ms: float | None
    jitter_ms: float  # actual start - scheduled start
    deadline_miss: bool
    source: str  # plan | fallback | none
    step_index: int | None  # which step of the executing plan
    action: list[float] | None
    sent: bool
    event: str = ""  # "" or no_obs | invalid_obs | send_failed | stale_obs, "+horizon_exhausted" when no plan step was left
    link: dict = field(default_factory=dict)  # link error counters (cumulative)

    def to_dict(self) -> dict:
        return asdict(self)


def wait_until(t: float, spin_s: float = 0.001, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """Sleep until ``spin_s`` before ``t`` (on ``clock``, default the monotonic clock), then spin."""
    while True:
        dt = t - clock()
        if dt <= 0:
            return
        if dt > spin_s:
            sleep(dt - spin_s)


class ControlLoop:
    """Runs cycles of observe -> plan -> act (see module docstring)."""

    def __init__(self, planner, io: LoopIO, cfg: LoopConfig, goal: np.ndarray | None = None,
                 on_cycle: Callable[[CycleRecord], None] | None = None,
                 link_stats: Callable[[], dict] | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.planner, self.io, self.cfg = planner, io, cfg
        self.clock, self.sleep = clock, sleep  # seconds; the observations' t_rx are on this clock
        self.goal = None if goal is None else np.asarray(goal, np.float32)
        self.on_cycle = on_cycle
        self.link_stats = link_stats
        m = planner.manifest
        self.step_dt = m.step_dt_s or cfg.period_s
        self.act_slice = m.action_slice
        self.horizon = m.horizon
        self.cycle = 0
        self.newest: tuple[Plan, Observation] | None = None  # newest plan and the observation it used
        self.last_obs: Observation | None = None
        self.counts = {"cycles": 0, "plans": 0, "deadline_misses": 0, "fallback_actions": 0, "no_obs": 0,
                       "invalid_obs": 0, "horizon_exhausted": 0, "send_failed": 0, "actions_sent": 0,
                       "ticks_skipped": 0, "stale_obs_refused": 0}
        self.plan_ms = LatencyHistogram()
        self.jitter_ms = LatencyHistogram()
        self.cycle_ms = LatencyHistogram()  # tick to action sent
        self._next_tick: float | None = None
        self.warmup: dict = {}  # set by warm_up()

    def obs_valid(self, values: np.ndarray) -> bool:
        """Finite, and within ``obs_abs_max`` when set."""
        v = np.asarray(values)
        if not np.isfinite(v).all():
            return False
        return not (self.cfg.obs_abs_max > 0 and v.size and float(np.abs(v).max()) > self.cfg.obs_abs_max)

    # -- action choice -----------------------------------------------------------------------------
    def step_index(self, t_obs: float, now: float) -> int:
        return max(0, int(round((now + self.cfg.offset_s - t_obs) / self.step_dt)))

    def fresh_action(self, plan: Plan, obs: Observation, now: float) -> tuple[np.ndarray, int]:
        i = self.step_index(obs.t_rx, now)
        if i == 0 or self.planner.manifest.protocol != "own-actions":
            return plan.action, 0
        return self.planner.clip(plan.step_action(i, self.act_slice)), i

    def fallback_action(self, now: float) -> tuple[np.ndarray | None, int | None]:
        if self.newest is None:
            return None, None
        plan, obs = self.newest
        i = self.step_index(obs.t_rx, now)
        if i >= self.horizon:
            return None, i
        return self.planner.clip(plan.step_action(i, self.act_slice)), i

    # -- warm-up -----------------------------------------------------------------------------------
    def warm_up(self, obs: Observation | np.ndarray, n: int = 20) -> dict:
        """Run ``n`` whole plans (input checks, noise, model, candidate scoring, action selection and the
        fallback step lookup) on a plausible observation, before the first counted cycle.

        The first plans pay one-off costs (lazy tables in the scorer, allocator and cache warm-up) that a
        model-only warm-up does not reach; counted, they show up as a deadline miss at cycle 0. Nothing is
        sent. Returns (and keeps in :attr:`warmup`, reported by :meth:`summary`) the warm-up plans' times
        and how many of them were over the deadline; the loop's ``deadline_misses`` count only what follows.
        Raises the planner's errors (PlanInputError for an unusable observation, ValueError for a goal
        the bundle's scoring cannot use)."""
        values = obs.values if isinstance(obs, Observation) else np.asarray(obs, np.float32)
        deadline_ms = 1e3 * self.cfg.deadline_frac * self.cfg.period_s
        ms: list[float] = []
        for _ in range(max(0, int(n))):
            t0 = self.clock()
            o = Observation(values, -1, t0)
            plan = self.planner.plan(values, self.goal)
            now = self.clock()
            self.fresh_action(plan, o, now + self.step_dt)  # the multi-step path (step_action, clip) too
            self.planner.clip(plan.step_action(min(1, self.horizon - 1), self.act_slice))
            ms.append(1e3 * (self.clock() - t0))
        self.warmup = {"plans": len(ms), "first_ms": ms[0] if ms else 0.0, "max_ms": max(ms, default=0.0),
                       "last_ms": ms[-1] if ms else 0.0, "deadline_ms": deadline_ms,
                       "over_deadline": int(sum(m > deadline_ms for m in ms))}
        return self.warmup

    # -- one cycle ---------------------------------------------------------------------------------
    def _wait(self) -> tuple[float, Observation | None]:
        cfg = self.cfg
        if cfg.sync == "state":
            obs = self.io.read_observation(timeout=3 * cfg.period_s)
            t = obs.t_rx if obs is not None else self.clock()
            return t, obs
        now = self.clock()
        if self._next_tick is None or now - self._next_tick > cfg.period_s:
            if self._next_tick is not None:  # a whole period behind (an overrun): skip the lost ticks
                self.counts["ticks_skipped"] += int((now - self._next_tick) / cfg.period_s)
            self._next_tick = now
        tick = self._next_tick
        wait_until(tick, cfg.spin_s, self.clock, self.sleep)
        self._next_tick = tick + cfg.period_s
        return tick, self.io.read_observation(timeout=0.0)

    def step(self) -> CycleRecord:
        cfg = self.cfg
        tick, obs = self._wait()
        t_start = self.clock()
        jitter = 1e3 * (t_start - tick)
        deadline = tick + cfg.deadline_frac * cfg.period_s
        plan = None
        t_ps = t_pe = plan_ms = None
        event = ""
        if obs is None:
            event = "no_obs"
            self.counts["no_obs"] += 1
        else:
            self.last_obs = obs
            t_ps = self.clock()
            try:
                if not self.obs_valid(obs.values) and np.isfinite(obs.values).all():
                    raise PlanInputError(f"observation beyond +-{self.cfg.obs_abs_max:g} (obs_abs_max)")
                plan = self.planner.plan(obs.values, self.goal)
            except PlanInputError:
                event = "invalid_obs"
                self.counts["invalid_obs"] += 1
            t_pe = self.clock()
            if plan is not None:
                plan_ms = 1e3 * (t_pe - t_ps)
                self.plan_ms.add(plan_ms)
                self.counts["plans"] += 1
        now = self.clock()
        miss = plan is not None and now > deadline
        if plan is not None:
            self.newest = (plan, obs)  # a late plan too: its step due now is the fallback
        if plan is not None and not miss:
            action, idx = self.fresh_action(plan, obs, now)
            source = "plan"
        else:
            self.counts["deadline_misses"] += int(miss)
            action, idx = self.fallback_action(now)
            source = "fallback" if action is not None else "none"
            if action is None and self.newest is not None:
                event = f"{event}+horizon_exhausted" if event else "horizon_exhausted"
                self.counts["horizon_exhausted"] += 1
        sent = False
        t_tx = None
        tag = self.last_obs  # actions answer the newest STATE; an invalid one sends nothing
        if action is not None and tag is not None and self.clock() - tag.t_rx > cfg.max_age_s():
            event = f"{event}+stale_obs" if event else "stale_obs"  # the watchdog takes over
            self.counts["stale_obs_refused"] += 1
        elif action is not None and tag is not None and self.obs_valid(tag.values):
            sent = self.io.send_action(action, tag, cfg.valid_ms())
            t_tx = self.clock()
            if sent:
                self.counts["actions_sent"] += 1
                self.counts["fallback_actions"] += int(source == "fallback")
            else:
                event = event or "send_failed"
                self.counts["send_failed"] += 1
        self.counts["cycles"] += 1
        self.jitter_ms.add(jitter)
        if t_tx is not None:
            self.cycle_ms.add(1e3 * (t_tx - tick))
        rec = CycleRecord(
            cycle=self.cycle, t_tick=tick, t_state_rx=None if obs is None else obs.t_rx, t_plan_start=t_ps,
            t_plan_end=t_pe, t_action_tx=t_tx, seq=None if obs is None else obs.seq, plan_ms=plan_ms,
            jitter_ms=jitter, deadline_miss=miss, source=source, step_index=idx,
            action=None if action is None else [float(a) for a in action], sent=sent, event=event,
            link=self.link_stats() if self.link_stats else {},
        )
        self.cycle += 1
        if self.on_cycle is not None:
            self.on_cycle(rec)
        return rec

    def run(self, cycles: int | None = None, duration_s: float | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict:
        """Run until ``cycles`` / ``duration_s`` / ``should_stop()``; returns :meth:`summary`."""
        t_end = None if duration_s is None else self.clock() + duration_s
        n = 0
        while (cycles is None or n < cycles) and (t_end is None or self.clock() < t_end):
            if should_stop is not None and should_stop():
                break
            self.step()
            n += 1
        return self.summary()

    def summary(self, histograms: bool = False) -> dict:
        """Counts plus p50/p95/p99/max of plan latency, jitter and tick-to-send time (ms); ``warmup``: the
        :meth:`warm_up` plans (not counted: ``counts['deadline_misses']`` are the misses after warm-up).
        Percentiles come from :class:`LatencyHistogram` (within 0.6 %; max exact). ``histograms`` (with
        ``histograms=True``): the plan-latency and jitter bins, so a reader can take a time slice's
        percentiles from two summaries (:func:`percentiles_from_counts` of the difference)."""
        out = {"counts": dict(self.counts), "plan_ms": self.plan_ms.summary(), "jitter_ms": self.jitter_ms.summary(),
               "tick_to_tx_ms": self.cycle_ms.summary(), "rate_hz": self.cfg.rate_hz, "sync": self.cfg.sync,
               "offset_s": self.cfg.offset_s, "step_dt_s": self.step_dt, "warmup": dict(self.warmup),
               "max_obs_age_ms": 1e3 * self.cfg.max_age_s()}
        if histograms:
            out["histograms"] = {"bins_per_decade": LatencyHistogram.BINS_PER_DECADE,
                                 "plan_ms": self.plan_ms.sparse(), "jitter_ms": self.jitter_ms.sparse()}
        return out
