"""A simulated task behind a ``sim://`` port of ``kdp-edge run``: the plant the virtual robot drives,
and the episodes played on it.

Each environment plug-in that has a virtual robot names a factory for one of these
(``Environment.sim_plant``, ``"module:function"`` called as ``factory(env, episodes, seed)``), so the
run app starts, resets and scores any of them the same way and knows no environment by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import mean_sem


class SimEpisodes:
    """Episodes on one plant (``firmware_bridge.plants.Plant``, with ``steps``: plant steps since reset).

    Subclasses set the attributes in ``__init__`` and implement :meth:`prepare` and :meth:`result`.
    """

    env: str
    plant: Any
    horizon: int  # plant steps per episode
    goal: np.ndarray | None  # the goal a goal-conditioned bundle plans to (None: goal-free task)
    metric: str = "score"  # the per-episode number the summary averages (as ``<metric>_mean``)
    # a robot of smart servos: the servo family its virtual bus speaks (the run app then talks to it through
    # firmware_bridge.servo_bus with :meth:`motors` and :meth:`servo_calibration`); None: the kdp protocol
    servo_bus: str | None = None

    def start_robot(self, rate_hz: float, seed: int, **opts):
        """The task's own virtual robot (``.port``, ``.reset_plant()``, ``.close()``), started; None (the
        default): the run app serves :attr:`plant` with a ``firmware_bridge.virtual_robot.VirtualRobot``.
        ``opts``: the ``sim://`` port's query options (a ValueError for ones it does not take)."""
        return None

    def motors(self) -> list[int]:
        """Servo IDs in state / action order (``servo_bus`` tasks)."""
        raise NotImplementedError

    def servo_calibration(self):
        """The ``firmware_bridge.servo_bus.ServoCalibration`` mapping ticks to the bundle's units (``servo_bus`` tasks)."""
        raise NotImplementedError

    def prepare(self, i: int) -> None:
        """Set the plant up so that its next ``reset`` starts episode ``i``."""
        raise NotImplementedError

    def set_horizon(self, steps: int) -> None:
        """Episodes of ``steps`` plant steps instead of the protocol's."""
        self.horizon = int(steps)

    def finished(self) -> bool:
        """Whether the current episode is over (by default: ``horizon`` plant steps played)."""
        return self.plant.steps >= self.horizon

    def result(self, i: int) -> dict:
        """Episode ``i``'s outcome: ``episode``, ``success`` and ``<metric>``, plus what the task adds."""
        raise NotImplementedError

    def summary(self, episodes: list[dict]) -> dict:
        """The finished episodes' mean and standard error of the metric, success rate, and each episode."""
        out: dict[str, Any] = {"env": self.env, "episodes": len(episodes), "horizon_sim_steps": self.horizon,
                               "metric": self.metric}
        if not episodes:
            out["note"] = f"no episode finished (run longer: an episode is {self.horizon} simulator steps)"
            return out
        out[f"{self.metric}_mean"], out[f"{self.metric}_sem"] = mean_sem([e[self.metric] for e in episodes])
        out["success_rate"] = float(np.mean([e["success"] for e in episodes]))
        out["per_episode"] = episodes
        return out
