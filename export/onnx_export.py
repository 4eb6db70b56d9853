"""PyTorch generator -> ONNX with the normalisation inside the graph and a dynamic candidate axis K.

The graph's contract is the one in :mod:`kdp_edge.bundle` (raw obs [K, O], raw goal [K, G], noise
[K, H, D] -> raw window [K, H, D]). Opset 18 by default: opset 21 fuses GroupNormalization, which
ORT's quantisation pre-processing expands again (slower int8; see shared EDGE.md).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_OPSET = 18


def io_names(goal_dim: int) -> tuple[list[str], list[str]]:
    return (["obs", "goal", "noise"] if goal_dim else ["obs", "noise"]), ["window"]


def _wrapped(model):
    """A module whose positional inputs match :func:`io_names` (no goal input when goal_dim == 0)."""
    import torch

    class _NoGoal(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, obs, noise):
            return self.inner(obs, obs[:, :0], noise)

    return model if model.goal_dim else _NoGoal(model)


def example_inputs(model, k: int = 4, seed: int = 0) -> tuple:
    """Plausible raw inputs for tracing and parity checks: obs/goal around the data mean."""
    import torch

    g = torch.Generator().manual_seed(seed)
    obs = model.obs_mean + model.obs_std * torch.randn(k, model.obs_dim, generator=g)
    noise = torch.randn(k, model.horizon, model.window_dim, generator=g)
    if model.goal_dim:
        goal = model.goal_mean + model.goal_std * torch.randn(k, model.goal_dim, generator=g)
        return obs, goal, noise
    return obs, noise


def export_onnx(model, path: str | Path, opset: int = DEFAULT_OPSET, check: bool = True) -> Path:
    """Write ``model`` (a KDPGenerator in eval mode) as ONNX with a dynamic K axis; returns the path."""
    import torch
    from torch.export import Dim

    from kdp_edge.errors import require

    require("onnx", "train", "ONNX export")
    require("onnxscript", "train", "ONNX export (torch's dynamo exporter)")
    path = Path(path)
    model = _wrapped(model.eval())
    inputs, outputs = io_names(getattr(model, "goal_dim", 0) or getattr(getattr(model, "inner", None), "goal_dim", 0))
    k = Dim("K", min=1, max=4096)
    dynamic = {name: {0: k} for name in inputs}
    args = example_inputs(model if hasattr(model, "obs_mean") else model.inner)
    with torch.no_grad():
        prog = torch.onnx.export(model, args, dynamo=True, opset_version=opset, input_names=inputs,
                                 output_names=outputs, dynamic_shapes=dynamic, verbose=False)
    prog.save(str(path))
    if check:
        import onnx

        onnx.checker.check_model(str(path), full_check=True)
    return path
