"""Environments as plug-ins: one module per environment, registered by name.

An :class:`Environment` owns what kdp-edge knows about a task: which env names it answers to, the
data's step period, how plans are scored, plausible raw conditions (for latency benchmarks and for
export parity when the training data is absent), fallback action limits, whether its datasets get
hindsight goals, and where its closed-loop evaluation, export check and virtual robot live. Callers ask
:func:`env_for` instead of testing env names.

This package and its modules import nothing heavy at import time (the CLI reads the env names for
its options); numpy and the maze geometry are imported where used (the device runtime asks for
benchmark conditions). Evaluation code is named as ``"module:function"`` and imported by the app
or export when they need it (:meth:`Environment.load`), so the runtime never imports training code.

Adding an environment: one module here with a subclass, and one line in :data:`ENVIRONMENTS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

Condition = tuple[Any, Any]  # raw (obs float32 [obs_dim], goal float32 [goal_dim] or None)


class Environment:
    """Defaults for a task kdp-edge knows nothing about; subclasses override what their task knows."""

    name = "generic"
    step_dt_s = 0.0  # seconds between data steps; 0: the runtime assumes one control period per step
    hindsight_goals = False  # datasets without goals get goals from their segments' end positions
    evaluate = ""  # "module:function" of kdp-edge eval for this env (run_dir, options...) -> report
    closed_loop = ""  # "module:function" scoring exported models in closed loop (export parity)
    closed_loop_needs: tuple[str, ...] = ()  # importable modules the closed loop needs (extras)
    closed_loop_extra = ""  # the pip extra that provides them
    # "module:function" (env, episodes, seed) -> kdp_edge.sim_episodes.SimEpisodes: the plant and episodes
    # behind ``kdp-edge run --port sim://<env name>`` (a virtual robot on a pty); "": no virtual robot
    sim_plant = ""
    sim_needs: tuple[str, ...] = ()  # importable modules the virtual robot needs (extras)
    sim_extra = ""  # the pip extra that provides them

    def matches(self, env: str) -> bool:
        return env == self.name

    def task_env(self, env: str) -> str:
        """The env name of the task that ``env`` plays (a ``sim://`` name may name a robot, e.g.
        ``feetech-arm`` plays ``arm``): bundles exported for that env run on it."""
        return env

    def scoring_kwargs(self, env: str, goal_dim: int, layout, executed_steps: int = 8) -> dict:
        """Arguments of :class:`kdp_edge.planning.ScoringSpec`: Euclidean goal distance for goal tasks,
        consensus over the action dims (the medoid candidate; where ``layout``, a
        :class:`kdp_edge.layout.WindowLayout`, puts them) without a goal."""
        if goal_dim == 0:
            return {"kind": "consensus", "consensus_dims": layout.action_dims, "consensus_steps": executed_steps}
        return {"kind": "goal_distance"}

    def free_positions(self, env: str) -> list | None:
        """Free (x, y) positions to place plausible observations and goals at (None: no geometry)."""
        return None

    def fallback_action_limits(self, act_dim: int) -> tuple | None:
        """Action limits when the training data is not there to read them from (None: unknown)."""
        return None

    def load(self, what: str) -> Callable:
        """The function named by attribute ``what`` (``evaluate``, ``closed_loop`` or ``sim_plant``)."""
        spec = getattr(self, what)
        if not spec:  # (what: evaluate, closed_loop or sim_plant)
            from ..errors import KDPError

            raise KDPError(f"environment '{self.name}' has no {what.replace('_', ' ')}; "
                           f"known environments: {', '.join(names())}")
        module, func = spec.split(":")
        return getattr(importlib.import_module(module), func)

    def closed_loop_available(self) -> tuple[bool, str]:
        """(True, "") when the closed-loop check can run here; else (False, why)."""
        import importlib.util

        if not self.closed_loop:
            return False, f"env {self.name} has no closed-loop check"
        missing = [m for m in self.closed_loop_needs if importlib.util.find_spec(m) is None]
        if missing:
            return False, (f"the {self.closed_loop_extra} extra is not installed ({', '.join(missing)} missing): "
                           f"pip install 'kdp-edge[{self.closed_loop_extra}]'")
        return True, ""


def _registry() -> list[Environment]:
    from .arm import Arm
    from .pointmaze import PointMaze
    from .pusht import PushT
    from .toy import BimodalToy

    return [PointMaze(), PushT(), BimodalToy(), Arm()]


ENVIRONMENTS: list[Environment] = _registry()
GENERIC = Environment()


def env_for(env: str) -> Environment:
    """The environment plug-in answering to ``env`` (e.g. ``pointmaze-medium``); the generic one when
    none does (unknown datasets plan with Euclidean / consensus scoring and no geometry)."""
    return next((e for e in ENVIRONMENTS if e.matches(env or "")), GENERIC)


def names() -> list[str]:
    """Every env name kdp-edge evaluates (for CLI choices and messages)."""
    out: list[str] = []
    for e in ENVIRONMENTS:
        out += getattr(e, "variants", [e.name]) if e.evaluate else []
    return out


def sim_names() -> list[str]:
    """Env names that ``kdp-edge run --port sim://NAME`` can start a virtual robot for."""
    return [n for e in ENVIRONMENTS if e.sim_plant
            for n in getattr(e, "sim_variants", getattr(e, "variants", [e.name]))]


def plausible_conditions(env: str, obs_dim: int, goal_dim: int, n: int, seed: int = 0, goals: int = 4) -> list[Condition]:
    """``n`` raw (obs, goal) pairs with ``goals`` distinct goals (a deployed robot keeps one goal for
    many plans): standard normal per dimension; where the environment has geometry, positions in free
    space (+- 0.3 m) and the other observation dims halved (velocities)."""
    import numpy as np

    free = env_for(env).free_positions(env)
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(goals):
        g = rng.standard_normal(goal_dim).astype(np.float32) if goal_dim else None
        if g is not None and free is not None and goal_dim >= 2:
            g[:2] = free[rng.integers(len(free))]
        pool.append(g)
    out = []
    for i in range(n):
        obs = rng.standard_normal(obs_dim).astype(np.float32)
        if free is not None and obs_dim >= 2:
            obs[:2] = free[rng.integers(len(free))] + rng.uniform(-0.3, 0.3, 2)
            obs[2:] *= 0.5
        out.append((obs, pool[i % goals]))
    return out


__all__ = ["ENVIRONMENTS", "Environment", "env_for", "names", "plausible_conditions", "sim_names"]
