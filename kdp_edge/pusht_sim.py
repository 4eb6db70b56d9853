"""PushT as a virtual robot (``sim://pusht``; needs the ``pusht`` extra).

:class:`PushTPlant` wraps one gym-pusht ``PushT-v0`` environment as a plant for the virtual robot:
STATE is one observation's features (agent x, y, block x, y, cos and sin of the block angle; the run
app stacks the bundle's history itself), an action is the agent's target position in pixels
([0, 512] per axis), one environment step is 0.1 s of
simulated time (any controller rate: the plant steps when 0.1 s has accumulated). :class:`PushTEpisodes` plays
the evaluation's seeded episodes (``kdp-edge eval`` on a PushT run: seeds 100000 + i, at most 300
steps, ending early above 95 % coverage) and scores each by its max coverage.
"""

from __future__ import annotations

import numpy as np

from .data.pusht import pusht_features
from .pusht import ACTION_HIGH, ACTION_LOW, SUCCESS_COVERAGE, PushTProtocol, make_env
from .sim_episodes import SimEpisodes


class PushTPlant:
    """One gym-pusht environment: state [6] (features), action [2] (target agent position, px)."""

    state_dim = 6
    action_dim = 2
    action_low = np.full(2, ACTION_LOW)
    action_high = np.full(2, ACTION_HIGH)
    dt = 0.1  # seconds per environment step (gym-pusht runs its physics at 10 Hz control)

    def __init__(self, seed: int = PushTProtocol.seed):
        self.env = make_env()
        self.seed = seed
        self.next_seed: int | None = None
        self._state = np.zeros(5)
        self.steps = 0  # environment steps since reset
        self.coverage = self.max_coverage = 0.0
        self.terminated = False  # the block covered the goal: the episode is over, the plant holds still
        self._due = 0.0

    def reset(self, seed: int | None = None) -> np.ndarray:
        """New episode from ``next_seed`` if set (consumed), else ``seed``, else the constructor's."""
        s = self.next_seed if self.next_seed is not None else (seed if seed is not None else self.seed)
        self.next_seed = None
        self._state = np.asarray(self.env.reset(seed=int(s))[0], np.float64)
        self.steps, self.coverage, self.max_coverage, self.terminated = 0, 0.0, 0.0, False
        self._due = 0.0  # simulated seconds not yet stepped
        return pusht_features(self._state).astype(np.float64)

    def step(self, action: np.ndarray, dt: float) -> np.ndarray:
        """Advance by ``dt`` seconds towards target ``action``: the environment steps (0.1 s each) that
        fall due in that time, so a controller ticking faster than 10 Hz holds each step's target for
        several ticks, as a real robot at the data's rate would, instead of speeding the task up."""
        target = np.clip(np.asarray(action, np.float64), ACTION_LOW, ACTION_HIGH)
        self._due += dt
        while self._due >= self.dt - 1e-9:
            self._due -= self.dt
            if self.terminated:
                continue
            state, _, terminated, _, info = self.env.step(target)
            self._state = np.asarray(state, np.float64)
            self.steps += 1
            self.coverage = float(info["coverage"])
            self.max_coverage = max(self.max_coverage, self.coverage)
            self.terminated = bool(terminated)
        return pusht_features(self._state).astype(np.float64)

    def idle_action(self) -> np.ndarray:
        """What the plant is driven with while the controller's outputs are off (stopped, watchdog):
        its own position, so a position-controlled agent stays where it is instead of seeking (0, 0)."""
        return self._state[:2].copy()

    def info(self) -> dict:
        return {"success": self.max_coverage > SUCCESS_COVERAGE, "coverage": self.coverage,
                "max_coverage": self.max_coverage, "steps": self.steps}

    def close(self) -> None:
        self.env.close()


class PushTEpisodes(SimEpisodes):
    """``sim://pusht``: the evaluation's episodes (seed 100000 + ``seed`` + i), scored by max coverage."""

    metric = "max_coverage"

    def __init__(self, env: str, episodes: int, seed: int):
        proto = PushTProtocol()
        self.env = env
        self.first_seed = proto.seed + seed
        self.plant = PushTPlant(self.first_seed)
        self.horizon = proto.max_steps
        self.goal = None

    def prepare(self, i: int) -> None:
        self.plant.next_seed = self.first_seed + i

    def finished(self) -> bool:
        return self.plant.terminated or self.plant.steps >= self.horizon

    def result(self, i: int) -> dict:
        p = self.plant
        return {"episode": i, "success": p.max_coverage > SUCCESS_COVERAGE, "max_coverage": p.max_coverage,
                "final_coverage": p.coverage, "steps": p.steps, "seed": self.first_seed + i}
