"""What every scripted-expert data generator shares (PointMaze, the arm): one continuing stream in which
the expert holds each reached goal for a random number of steps before the next goal, progress reported
in chunks, and D4RL's ``timeouts`` cutting the stream into fixed-length segments."""

from __future__ import annotations

import numpy as np

PROGRESS_EVERY = 5000  # steps per progress call


class GoalDwell:
    """Hold at each reached goal for U{0..``dwell``} steps (drawn from ``rng`` on arrival), then ask for a
    new goal. Call :meth:`new_goal_due` once per step, before acting."""

    def __init__(self, dwell: int, rng: np.random.Generator):
        self.dwell, self.rng = dwell, rng
        self.hold: int | None = None  # steps left at the current goal (None: not there yet)

    def new_goal_due(self, arrived: bool) -> bool:
        """True when the hold at the current goal is over (the caller draws the next goal)."""
        if self.hold is None and arrived:
            self.hold = int(self.rng.integers(0, self.dwell + 1))  # (dwell 0 draws nothing from rng)
        if self.hold is None:
            return False
        if self.hold <= 0:
            self.hold = None
            return True
        self.hold -= 1
        return False


def report_progress(progress, t: int, n: int) -> None:
    """``progress(k)`` after every :data:`PROGRESS_EVERY` steps and for the remainder after the last of ``n``
    (``t``: the step just done, 0-based; ``progress`` None: nothing)."""
    if progress is None:
        return
    done = t + 1
    if done % PROGRESS_EVERY == 0:
        progress(PROGRESS_EVERY)
    elif done == n:
        progress(n % PROGRESS_EVERY)


def d4rl_timeouts(n: int, every: int) -> np.ndarray:
    """[n] bool: True at every ``every``-th step and at the last one (D4RL segment ends)."""
    timeouts = np.zeros(n, bool)
    timeouts[every - 1 :: every] = True
    timeouts[-1] = True
    return timeouts
