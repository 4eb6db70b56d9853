"""The device runtime: plans from an exported bundle with numpy + onnxruntime (or LiteRT) only.

    from kdp_edge.runtime import Planner
    planner = Planner.load("bundle/", backend="onnx", threads=1)
    plan = planner.plan(obs, goal)      # plan.action, plan.window, plan.scores, plan.latency_ms

Diffusion (denoiser) bundles load as :class:`DiffusionPlanner` through the same ``Planner.load``.

Nothing here imports torch, a simulator or scipy.
"""

from .diffusion import DiffusionPlanner
from .history import HistoryPlanner, ObsHistory
from .planner import Plan, PlanInputError, Planner, PlanOutputError

__all__ = ["DiffusionPlanner", "HistoryPlanner", "ObsHistory", "Plan", "Planner", "PlanInputError", "PlanOutputError"]
