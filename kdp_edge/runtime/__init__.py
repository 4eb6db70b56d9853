"""The device runtime: plans from an exported bundle with numpy + onnxruntime (or LiteRT) only.

    from kdp_edge.runtime import Planner
    planner = Planner.load("bundle/", backend="onnx", threads=1)
    plan = planner.plan(obs, goal)      # plan.action, plan.window, plan.scores, plan.latency_ms

Nothing here imports torch, a simulator or scipy.
"""

from .planner import Plan, PlanInputError, Planner, PlanOutputError

__all__ = ["Plan", "Planner", "PlanInputError", "PlanOutputError"]
