"""Plant interface for the virtual robot, and a trivial double-integrator plant for tests.

A plant is any object with::

    state_dim: int
    action_dim: int
    action_low: np.ndarray   # float, shape (action_dim,), physical units
    action_high: np.ndarray
    reset(seed: int | None) -> np.ndarray     # initial state, shape (state_dim,)
    step(action: np.ndarray, dt: float) -> np.ndarray   # dt in seconds
    info() -> dict            # optional, e.g. {"success": True}
    idle_action() -> np.ndarray   # optional: what drives the plant while the outputs are off (stopped,
                                  # watchdog); default zeros. A position-controlled plant returns its
                                  # own position (the motor holds instead of seeking 0)

``kdp_edge.sim.PointMazePlant`` (provided by the runtime) follows the same interface.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Plant(Protocol):
    """Structural type of a plant (see module docstring)."""

    state_dim: int
    action_dim: int
    action_low: np.ndarray
    action_high: np.ndarray

    def reset(self, seed: int | None = None) -> np.ndarray: ...

    def step(self, action: np.ndarray, dt: float) -> np.ndarray: ...


class IntegratorPlant:
    """Double integrator per axis: ``x' = v``, ``v' = gain * a - damping * v``.

    State is ``[x_0..x_{n-1}, v_0..v_{n-1}]`` (``state_dim = 2n``), action ``a`` in ``[-limit, limit]``
    per axis (``action_dim = n``). Integrated with semi-implicit Euler. ``goal`` (optional, length n)
    makes ``info()['success']`` true within ``goal_tol`` of it.
    """

    def __init__(
        self,
        axes: int = 2,
        gain: float = 1.0,
        damping: float = 0.0,
        limit: float = 1.0,
        goal: np.ndarray | None = None,
        goal_tol: float = 0.05,
        init_spread: float = 0.0,
    ) -> None:
        if axes < 1 or 2 * axes > 64:
            raise ValueError("axes must be 1..32 (state_dim = 2 * axes <= 64)")
        self.axes = axes
        self.state_dim = 2 * axes
        self.action_dim = axes
        self.gain = gain
        self.damping = damping
        self.action_low = np.full(axes, -limit, dtype=np.float64)
        self.action_high = np.full(axes, limit, dtype=np.float64)
        self.goal = None if goal is None else np.asarray(goal, dtype=np.float64)
        self.goal_tol = goal_tol
        self.init_spread = init_spread
        self._x = np.zeros(axes)
        self._v = np.zeros(axes)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Zero velocity; position 0 (or uniform in ``±init_spread`` from ``seed``)."""
        rng = np.random.default_rng(seed)
        self._x = rng.uniform(-self.init_spread, self.init_spread, self.axes) if self.init_spread else np.zeros(self.axes)
        self._v = np.zeros(self.axes)
        return self.state()

    def state(self) -> np.ndarray:
        """Current state ``[x, v]`` (copy)."""
        return np.concatenate([self._x, self._v])

    def step(self, action: np.ndarray, dt: float) -> np.ndarray:
        """Advance by ``dt`` seconds with ``action`` (clipped to the limits)."""
        a = np.clip(np.asarray(action, dtype=np.float64), self.action_low, self.action_high)
        self._v = self._v + (self.gain * a - self.damping * self._v) * dt
        self._x = self._x + self._v * dt
        return self.state()

    def info(self) -> dict[str, Any]:
        """``{'success': bool}`` when a goal is set, else ``{}``."""
        if self.goal is None:
            return {}
        return {"success": bool(np.linalg.norm(self._x - self.goal) < self.goal_tol)}
