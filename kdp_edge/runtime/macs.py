"""Multiply-accumulates per candidate of an exported model, counted from its ONNX graph (MatMul / Gemm /
Conv / ConvTranspose output shapes); needs the ``onnx`` package (None without it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def count_macs(onnx_path: str | Path) -> dict[str, Any] | None:
    """Multiply-accumulates per candidate of an ONNX generator (its K axis fixed to 1).

    Counts MatMul / Gemm / Conv / ConvTranspose (and MatMulInteger, QLinearMatMul, ConvInteger,
    QLinearConv) from shapes after ONNX shape inference; element-wise ops are not counted. Needs
    the ``onnx`` package (``kdp-edge[train]``): returns None without it. ``complete`` is False
    when some op's shapes could not be inferred (those ops are left out of ``macs_per_candidate``).
    """
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        return None
    model = onnx.load(str(onnx_path))
    for vi in list(model.graph.input) + list(model.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1  # the candidate axis K (and any other dynamic axis) -> 1
    try:
        model = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # inference failures are not fatal for a benchmark
        return {"macs_per_candidate": 0, "complete": False, "ops": 0}
    shapes: dict[str, list[int]] = {t.name: list(t.dims) for t in model.graph.initializer}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    for node in model.graph.node:  # Constant weights (some exporters) have their shape in the attribute
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = list(a.t.dims)
    total, complete, ops = 0, True, 0

    def known(*names):
        s = [shapes.get(n) for n in names]
        return None if any(x is None or not x or 0 in x for x in s) else s

    for node in model.graph.node:
        op, ins, y = node.op_type, list(node.input), node.output[0]
        if op in ("MatMul", "MatMulInteger", "Gemm", "QLinearMatMul"):
            a_name = ins[0]
            s = known(a_name, y)
            if s is None:
                complete = False
                continue
            a, out = s
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            inner = a[0] if (op == "Gemm" and trans_a) else a[-1]
            total += int(np.prod(out)) * inner
            ops += 1
        elif op in ("Conv", "ConvInteger", "QLinearConv"):
            w_name = ins[3] if op == "QLinearConv" else ins[1]
            s = known(w_name, y)
            if s is None:
                complete = False
                continue
            w, out = s
            total += int(np.prod(out)) * int(np.prod(w[1:]))
            ops += 1
        elif op == "ConvTranspose":
            s = known(ins[0], ins[1])
            if s is None:
                complete = False
                continue
            x, w = s
            total += int(np.prod(x)) * int(np.prod(w[1:]))
            ops += 1
    return {"macs_per_candidate": int(total), "complete": complete, "ops": ops}
