"""The control loop (kdp_edge.runtime.loop): fallback on deadline misses, safe handling of bad
observations, the execution offset, and the loop against the virtual robot with link faults.

The loop's timing rules (deadlines, the plan step due, pacing, the stale-STATE bound) run on a
:class:`FakeClock` that only sleeping and (fake) planning advance, so they are checked exactly and do not
depend on the machine's load; the loop against the virtual robot runs on the real clock and waits for what
happened (with generous deadlines), not for a guessed time."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest
from test_bridge_link import assert_nothing_stale

from firmware_bridge.link import SerialLink
from firmware_bridge.plants import IntegratorPlant
from firmware_bridge.virtual_robot import start_virtual_robot
from kdp_edge.app.run import SerialLoopIO
from kdp_edge.bundle import BundleManifest
from kdp_edge.runtime.loop import ControlLoop, LoopConfig, Observation
from kdp_edge.runtime.planner import Plan, PlanInputError

H, OBS, ACT = 8, 4, 2


class FakeClock:
    """The loop's clock and sleep: time passes only when something sleeps (the loop waiting for its tick,
    a fake plan taking its time). Starts at 1000 s so that differences of nearby times are exact."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += max(0.0, dt)


@dataclass
class FakePlanner:
    """Plans a window whose step i has action (plan_id, i): the executed step is visible in the action.
    A plan takes ``sleep_s`` seconds of ``clock`` (a FakeClock)."""

    sleep_s: float = 0.0
    step_dt_s: float = 0.01
    clock: FakeClock | None = None

    def __post_init__(self):
        self.manifest = BundleManifest(obs_dim=OBS, act_dim=ACT, goal_dim=0, horizon=H, step_dt_s=self.step_dt_s)
        self.calls = 0

    def plan(self, obs, goal=None, noise=None) -> Plan:
        obs = np.asarray(obs, np.float32)
        if obs.shape != (OBS,):
            raise PlanInputError("wrong size")
        if not np.isfinite(obs).all():
            raise PlanInputError("nan")
        self.calls += 1
        win = np.zeros((H, OBS + ACT), np.float32)
        win[:, OBS] = self.calls
        win[:, OBS + 1] = np.arange(H)
        if self.sleep_s:
            self.clock.sleep(self.sleep_s)
        return Plan(action=win[0, OBS:].copy(), window=win, scores=np.zeros(1), choice=0, candidates=win[None])

    def clip(self, a):
        return np.asarray(a, np.float32)


class ListIO:
    """Observations from a list (one per cycle, None = nothing new), received at ``clock()``; records what
    was sent."""

    def __init__(self, values, clock: FakeClock):
        self.values = list(values)
        self.clock = clock
        self.sent: list[tuple[np.ndarray, int]] = []
        self.seq = 0

    def read_observation(self, timeout):
        if not self.values:
            return None
        v = self.values.pop(0)
        if v is None:
            return None
        self.seq += 1
        return Observation(np.asarray(v, np.float32), self.seq, self.clock())

    def send_action(self, action, obs, valid_for_ms):
        self.sent.append((np.asarray(action).copy(), obs.seq))
        return True

    def send_stop(self):
        pass


def make_loop(planner, io, rate=100.0, **kw):
    """A timer-paced loop on ``io``'s FakeClock (spin_s 0: a fake clock does not move while spinning)."""
    kw.setdefault("valid_for_ms", 1000)  # these tests are about step choice, not the stale-STATE age bound
    kw.setdefault("spin_s", 0.0)
    return ControlLoop(planner, io, LoopConfig(rate_hz=rate, sync="timer", **kw), clock=io.clock,
                       sleep=io.clock.sleep)


def test_fresh_plans_execute_their_first_step_tagged_with_their_state():
    io = ListIO([np.zeros(OBS)] * 5, FakeClock())
    loop = make_loop(FakePlanner(), io)
    recs = [loop.step() for _ in range(5)]
    assert [r.source for r in recs] == ["plan"] * 5
    assert [int(a[0]) for a, _ in io.sent] == [1, 2, 3, 4, 5]  # a new plan every cycle
    assert all(int(a[1]) == 0 for a, _ in io.sent)  # its first step
    assert [seq for _, seq in io.sent] == [1, 2, 3, 4, 5]
    assert loop.counts["deadline_misses"] == 0


def test_late_plan_is_not_executed_as_fresh_but_at_its_due_step():
    clock = FakeClock()
    planner = FakePlanner(clock=clock)
    io = ListIO([np.zeros(OBS)] * 4, clock)
    loop = make_loop(planner, io, rate=100.0)  # 10 ms period, step_dt 10 ms
    loop.step()  # plan 1, fresh
    planner.sleep_s = 0.027  # plan 2 overruns its 10 ms deadline by 17 ms
    rec = loop.step()
    assert rec.deadline_miss and rec.source == "fallback"
    assert rec.plan_ms == pytest.approx(27.0)  # measured on the loop's clock
    action, seq = io.sent[-1]
    assert int(action[0]) == 2, "the late plan is the newest: the fallback uses it"
    assert int(action[1]) == 3, "...at the step due now (27 ms after its observation), never its first step"
    assert seq == 2, "the fallback action is tagged with the newest state"
    planner.sleep_s = 0.0
    loop.step()  # 17 ms behind at its start: more than a period, so the lost tick is skipped
    assert int(io.sent[-1][0][0]) == 3 and int(io.sent[-1][0][1]) == 0 and loop.counts["deadline_misses"] == 1
    assert loop.counts["ticks_skipped"] == 1


def test_without_new_states_the_newest_plan_keeps_running():
    io = ListIO([np.zeros(OBS), None, None], FakeClock())
    loop = make_loop(FakePlanner(), io, rate=100.0)
    recs = [loop.step() for _ in range(3)]
    assert np.allclose(np.diff([r.t_tick for r in recs]), 0.01)
    assert [r.source for r in recs] == ["plan", "fallback", "fallback"]
    assert [int(a[1]) for a, _ in io.sent] == [0, 1, 2], "one plan step per 10 ms period"
    assert all(int(a[0]) == 1 for a, _ in io.sent)


def test_fallback_never_runs_past_the_horizon():
    planner = FakePlanner(step_dt_s=0.001)  # horizon 8 ms
    io = ListIO([np.zeros(OBS), None, None, None], FakeClock())
    loop = make_loop(planner, io, rate=100.0)
    loop.step()
    rec = loop.step()  # 10 ms later, the only plan is exhausted
    assert rec.source == "none" and rec.event == "no_obs+horizon_exhausted" and not rec.sent
    assert len(io.sent) == 1


def test_nan_or_wrong_size_observation_sends_nothing():
    io = ListIO([np.zeros(OBS), [np.nan, 0, 0, 0], np.zeros(3)], FakeClock())
    loop = make_loop(FakePlanner(), io)
    loop.step()
    r_nan = loop.step()
    assert r_nan.event == "invalid_obs" and not r_nan.sent
    r_size = loop.step()
    assert r_size.event == "invalid_obs"
    assert loop.counts["invalid_obs"] == 2
    # the wrong-size observation is finite, so the previous plan's next step is sent, tagged with it
    assert len(io.sent) == 2 and io.sent[-1][1] == 3


def test_execution_offset_selects_the_step_due_when_the_action_lands():
    io = ListIO([np.zeros(OBS)], FakeClock())
    loop = make_loop(FakePlanner(step_dt_s=0.01), io, offset_s=0.03)
    rec = loop.step()
    assert rec.step_index == 3 and int(io.sent[0][0][1]) == 3


def test_timer_pacing_keeps_the_rate():
    clock = FakeClock()
    io = ListIO([np.zeros(OBS)] * 30, clock)
    loop = make_loop(FakePlanner(), io, rate=200.0)
    t0 = clock()
    recs = [loop.step() for _ in range(30)]
    ticks = np.array([r.t_tick for r in recs])
    assert np.allclose(np.diff(ticks), 1 / 200.0)  # scheduled ticks are exact multiples of the period
    assert clock() - t0 == pytest.approx(29 / 200.0)  # it slept until each tick, and no longer
    assert loop.counts["ticks_skipped"] == 0 and all(r.jitter_ms == 0.0 for r in recs)


def test_timer_pacing_on_the_real_clock_never_runs_fast():
    """On time.monotonic: a tick never starts before it is due, and ticks are at least a period apart
    (a loop that fell behind skips ticks rather than bunching them), however loaded the machine is."""
    io = ListIO([np.zeros(OBS)] * 30, time.monotonic)
    loop = ControlLoop(FakePlanner(), io, LoopConfig(rate_hz=200.0, sync="timer", valid_for_ms=1000))
    t0 = time.monotonic()
    recs = [loop.step() for _ in range(30)]
    ticks = np.array([r.t_tick for r in recs])
    assert np.all(np.diff(ticks) >= 1 / 200.0 - 1e-9)
    assert all(r.jitter_ms >= 0.0 for r in recs)
    assert time.monotonic() - t0 >= 29 / 200.0 - 1e-9


@pytest.mark.parametrize("fault", ["garbage", "bitflip", "reboot", "reopen", "nan"])
def test_loop_over_the_virtual_robot_survives_faults_and_sends_nothing_stale(fault):
    planner = FakePlanner()
    with start_virtual_robot(IntegratorPlant(), rate_hz=100.0) as robot, SerialLink(robot.port) as link:
        link.hello(2.0)
        loop = ControlLoop(planner, SerialLoopIO(link), LoopConfig(rate_hz=100.0, sync="state"))
        loop.run(cycles=20)
        {"garbage": lambda: robot.inject_garbage(200), "bitflip": lambda: robot.corrupt_next_states(5, "bitflip"),
         "reboot": robot.reboot, "reopen": lambda: robot.reopen_pty(down_s=0.2),
         "nan": lambda: robot.nan_states(10)}[fault]()
        # run through the fault until the link has seen it (generous deadline: returns as soon as it has)
        seen = {"garbage": lambda st: st["rx_resyncs"] >= 1,
                "bitflip": lambda st: st["rx_crc_errors"] + st["rx_malformed"] >= 4,
                "reboot": lambda st: st["controller_resets"] == 1 and link.caps.boot_id == robot.boot_id,
                "reopen": lambda st: st["reconnects"] >= 1,
                "nan": lambda st: st["states_nonfinite"] >= 10}[fault]
        loop.run(duration_s=30.0, should_stop=lambda: seen(link.stats))
        assert seen(link.stats), {k: v for k, v in link.stats.items() if v}
        before = robot.stats.get("actions_accepted", 0)
        loop.run(duration_s=30.0, should_stop=lambda: robot.stats.get("actions_accepted", 0) >= before + 10)
        assert robot.stats.get("actions_accepted", 0) >= before + 10, "the loop recovered and keeps commanding"
        assert_nothing_stale(robot, max_future=1 if fault == "reboot" else 0)
        if fault == "nan":
            assert loop.counts["invalid_obs"] >= 2


class FirstPlanSlow(FakePlanner):
    """The first whole plan pays a one-off cost (like a lazy table in the scorer), the model warm-up does not."""

    def plan(self, obs, goal=None, noise=None) -> Plan:
        p = super().plan(obs, goal, noise)
        if self.calls == 1:
            self.clock.sleep(0.05)  # a cost, on the loop's (fake) clock
        return p


def test_warm_up_runs_whole_plans_before_the_first_counted_cycle():
    clock = FakeClock()
    planner = FirstPlanSlow(clock=clock)
    io = ListIO([[0.0] * OBS] * 3, clock)
    loop = make_loop(planner, io, rate=100.0)
    wu = loop.warm_up(np.zeros(OBS, np.float32), n=5)
    assert planner.calls == 5 and io.sent == []  # whole plans, nothing sent
    assert wu["plans"] == 5 and wu["over_deadline"] == 1 and wu["first_ms"] == pytest.approx(50.0)
    assert wu["deadline_ms"] == pytest.approx(10.0) and wu["max_ms"] == wu["first_ms"] and wu["last_ms"] == 0.0
    recs = [loop.step() for _ in range(3)]
    s = loop.summary()
    # the one-off cost (the first call, 50 ms > the 10 ms deadline) landed in the warm-up, which reports
    # it; the counted cycles planned with calls 6-8 and missed nothing
    assert planner.calls == 8 and [r.action[0] for r in recs] == [6, 7, 8]
    assert s["warmup"]["over_deadline"] == wu["over_deadline"] and s["counts"]["plans"] == 3
    assert s["counts"]["deadline_misses"] == 0


def test_warm_up_rejects_an_unusable_observation():
    loop = make_loop(FakePlanner(), ListIO([], FakeClock()))
    with pytest.raises(PlanInputError):
        loop.warm_up(np.full(OBS, np.nan, np.float32), n=2)


def test_latency_histogram_percentiles_match_numpy_within_a_bin():
    from kdp_edge.runtime.loop import LatencyHistogram, percentiles_from_counts

    rng = np.random.default_rng(0)
    xs = rng.lognormal(0.0, 0.8, 20_000)  # ms
    h = LatencyHistogram()
    for x in xs:
        h.add(float(x))
    s = h.summary()
    for q in (50, 95, 99):
        assert abs(s[f"p{q}_ms"] / np.percentile(xs, q) - 1) < 0.015, q
    assert s["max_ms"] == xs.max() and s["n"] == len(xs) and abs(s["mean_ms"] - xs.mean()) < 1e-9
    # a slice's percentiles from two snapshots' sparse counts
    before = h.sparse()
    for _ in range(1000):
        h.add(100.0)
    after = h.sparse()
    diff = {k: v - before.get(k, 0) for k, v in after.items()}
    assert abs(percentiles_from_counts(diff)["p50_ms"] / 100.0 - 1) < 0.01
    assert h.counts.nbytes < 20_000, "constant memory"


def test_stalled_states_stop_the_fallback_once_the_newest_state_is_older_than_valid_for():
    # the STATE stream stops after one observation; valid-for 30 ms (3 periods at 100 Hz), age bound 20 ms; the
    # plan's horizon is
    # 8 steps of 50 ms = 400 ms, so without the age bound the fallback would keep sending its steps
    io = ListIO([np.zeros(OBS)] + [None] * 30, FakeClock())
    loop = make_loop(FakePlanner(step_dt_s=0.05), io, valid_for_ms=0)  # valid-for: the default, 3 periods
    recs = [loop.step() for _ in range(12)]
    # ticks 10 ms apart: the STATE is 0, 10, 20, 30 ... ms old (20 ms: exactly the bound, not checked here)
    assert recs[0].sent and recs[1].sent
    assert not any(r.sent for r in recs[3:]), "nothing is sent on a STATE older than valid-for"
    assert all("stale_obs" in r.event for r in recs[3:])
    assert loop.counts["stale_obs_refused"] == sum(not r.sent for r in recs) >= 9
    assert abs(loop.summary()["max_obs_age_ms"] - 20.0) < 1e-9  # valid-for 30 ms less one period


def test_out_of_range_observation_is_invalid_and_sends_nothing():
    io = ListIO([np.zeros(OBS), [1e30, 0, 0, 0], np.zeros(OBS)], FakeClock())
    loop = make_loop(FakePlanner(), io, obs_abs_max=100.0)
    r0, r1, r2 = loop.step(), loop.step(), loop.step()
    assert r0.sent and r1.event == "invalid_obs" and not r1.sent and r2.sent
    assert loop.counts["invalid_obs"] == 1 and [seq for _, seq in io.sent] == [1, 3]


def test_controller_clock_maps_state_timestamps_onto_the_host_clock():
    from kdp_edge.app.run import ControllerClock

    c = ControllerClock()
    # the controller sends every 10 ms (its clock: us); the host receives 0.2 ms later, except one STATE that
    # sat 12 ms in the buffer: its send time is recovered, not its receipt
    assert c.sent_at(1_000_000, 100.0002, boot=1) == 100.0002
    assert abs(c.sent_at(1_010_000, 100.0102, boot=1) - 100.0102) < 1e-9
    assert abs(c.sent_at(1_020_000, 100.0322, boot=1) - 100.0202) < 1e-5  # (+ the drift allowance)
    # the u32 microsecond clock wraps: time keeps going forward
    c2 = ControllerClock()
    c2.sent_at(2**32 - 5_000, 50.0, boot=7)
    assert abs(c2.sent_at(5_000, 50.0102, boot=7) - 50.010) < 1e-5
    # a new boot re-learns the offset; a clock that does not advance is ignored (receipt time used)
    assert c2.sent_at(0, 60.0, boot=8) == 60.0
    assert c2.sent_at(0, 60.5, boot=8) == 60.5 and c2.unusable == 1
    # never later than the receipt, never more than max_correction_s earlier
    c3 = ControllerClock(max_correction_s=0.05)
    c3.sent_at(0, 10.0, boot=1)
    assert c3.sent_at(10_000, 11.0, boot=1) == 11.0 - 0.05
