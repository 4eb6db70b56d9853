"""int8 ONNX: onnxruntime static QDQ quantisation (and dynamic), plus per-layer error analysis.

Static path (see shared EDGE.md): ``quant_pre_process`` (shape inference + graph optimisation) ->
``quantize_static`` in QDQ format, int8 weights per output channel (symmetric), activations
U8 or S8 with MinMax ranges over the whole calibration set (global min/max: onnxruntime's MinMax
keeps the extremes over all batches unless asked for a moving average).

By default only the weighted ops (Gemm / MatMul / Conv) are quantised ("weighted"): the graph's
normalisation and SiLU stay float, which measured more accurate at equal speed on the MLP (first
action 1.70% vs 1.88% of the action range, K=16 latency 0.14 vs 0.15 ms). ``ops="all"`` quantises
every op onnxruntime supports except InstanceNormalization (the GroupNorm trap in EDGE.md).

:func:`layer_sensitivity` runs ``onnxruntime.quantization.qdq_loss_debug`` on the fp32 and int8
graphs and reports, per weighted layer, the signal-to-quantisation-noise ratio (SQNR, dB) of its
input and output against the float model: the layers with the largest drop are the ones to keep
in float when the int8 model exceeds its error budget.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .layers import WEIGHTED_ONNX_OPS, onnx_layer_of_node, onnx_nodes_for_layers

ACTIVATIONS = ("u8", "s8")
INT8_OPS = ("weighted", "all")


@dataclass
class OnnxInt8Config:
    """How to quantise one ONNX graph (static QDQ)."""

    activations: str = "u8"  # u8 (QUInt8, ~2-3x faster on x86 here) | s8 (QInt8, S8S8)
    ops: str = "weighted"  # weighted: Gemm/MatMul/Conv only | all: every supported op
    float_layers: list[str] = field(default_factory=list)  # torch module paths kept in float
    per_channel: bool = True
    batch: int = 16  # calibration rows per feed (the device's K)

    def describe(self, float_nodes: dict[str, str] | None = None) -> str:
        fl = ", ".join(self.float_layers) if self.float_layers else "none"
        return (f"onnxruntime static QDQ: weights S8 per-channel, activations {self.activations.upper()} "
                f"(MinMax, global ranges), quantised ops: {'Gemm/MatMul/Conv' if self.ops == 'weighted' else 'all'}; "
                f"float layers: {fl}")


def _quiet():
    """Silence onnxruntime.quantization's prints and tqdm bars (they go to stdout/stderr)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


def preprocess(fp32_path: str | Path, out_path: str | Path) -> Path:
    """onnxruntime's quantisation pre-processing (symbolic shape inference + optimisation).

    Symbolic shape inference cannot follow every graph with a dynamic K axis (the U-Net's
    Resize): then it is skipped and ONNX's own shape inference is used, as onnxruntime advises.
    """
    import os

    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(fp32_path).resolve(), Path(out_path).resolve()
    cwd = os.getcwd()
    # on failure the symbolic shape inference saves sym_shape_infer_temp.onnx (+ external data) into
    # the working directory: run it from a scratch directory
    with _quiet(), tempfile.TemporaryDirectory(prefix="kdp-prequant-") as tmp:
        os.chdir(tmp)
        try:
            try:
                quant_pre_process(str(src), str(dst))
            except Exception:  # onnxruntime raises a bare Exception("Incomplete symbolic shape inference")
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        finally:
            os.chdir(cwd)
    return dst


def quantize_static(pre_path: str | Path, out_path: str | Path, calib, cfg: OnnxInt8Config) -> dict[str, str]:
    """Static QDQ int8 of the pre-processed graph ``pre_path`` -> ``out_path``.

    ``calib`` is a :class:`calibration.int8.CalibrationSet`. Returns ``{layer: node}`` of the
    layers kept in float. Raises ValueError for unknown layer names (the message lists the known ones).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    from calibration.int8 import OnnxCalibrationReader

    if cfg.activations not in ACTIVATIONS:
        raise ValueError(f"unknown activation type {cfg.activations!r}: use {' or '.join(ACTIVATIONS)}")
    if cfg.ops not in INT8_OPS:
        raise ValueError(f"unknown int8 op set {cfg.ops!r}: use {' or '.join(INT8_OPS)}")
    model = onnx.load(str(pre_path))
    float_nodes = onnx_nodes_for_layers(model, cfg.float_layers)
    unknown = sorted(set(cfg.float_layers) - set(float_nodes))
    if unknown:
        known = sorted(set(onnx_layer_of_node(model).values()))
        raise ValueError(f"layers {unknown} are not weighted layers of this graph; known: {known}")
    exclude = list(float_nodes.values())
    op_types = list(WEIGHTED_ONNX_OPS) if cfg.ops == "weighted" else None
    if cfg.ops == "all":  # EDGE.md trap: QDQ InstanceNormalization (GroupNorm) does not load
        exclude += [n.name for n in model.graph.node if n.op_type == "InstanceNormalization"]
    names = [i.name for i in model.graph.input]
    reader = OnnxCalibrationReader(calib, names, cfg.batch)
    with _quiet():
        ort_quantize_static(
            str(pre_path), str(out_path), reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=op_types,
            per_channel=cfg.per_channel, activation_type=QuantType.QUInt8 if cfg.activations == "u8" else QuantType.QInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
        )
    return float_nodes


def quantize_dynamic(pre_path: str | Path, out_path: str | Path, float_layers: list[str] | None = None) -> None:
    """Dynamic int8 (weights int8 per channel, activations quantised at run time; no calibration)."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    exclude = list(onnx_nodes_for_layers(onnx.load(str(pre_path)), float_layers or []).values())
    with _quiet():
        ort_quantize_dynamic(str(pre_path), str(out_path), per_channel=True, weight_type=QuantType.QInt8,
                             nodes_to_exclude=exclude)


@dataclass
class LayerError:
    """qdq_loss_debug's verdict on one weighted layer (SQNR in dB against the float model; higher
    is better). ``drop_db`` = input SQNR - output SQNR: the accuracy this layer loses."""

    layer: str
    node: str
    sqnr_in: float | None
    sqnr_out: float | None
    drop_db: float | None

    def to_dict(self) -> dict:
        r = lambda x: None if x is None else round(float(x), 2)  # noqa: E731
        return {"layer": self.layer, "node": self.node, "sqnr_in_db": r(self.sqnr_in),
                "sqnr_out_db": r(self.sqnr_out), "drop_db": r(self.drop_db)}


def layer_sensitivity(pre_path: str | Path, int8_path: str | Path, calib, batch: int = 16,
                      rows: int = 64) -> list[LayerError]:
    """Per-layer SQNR with ``onnxruntime.quantization.qdq_loss_debug`` on ``rows`` calibration rows;
    sorted worst first (largest SQNR drop, then lowest output SQNR)."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from calibration.int8 import CalibrationSet, OnnxCalibrationReader

    sub = CalibrationSet(calib.obs[:rows], None if calib.goal is None else calib.goal[:rows], calib.noise[:rows])
    fmodel = onnx.load(str(pre_path))
    names = [i.name for i in fmodel.graph.input]
    with tempfile.TemporaryDirectory(prefix="kdp-qdq-debug-") as tmp, _quiet():
        faug, qaug = Path(tmp) / "float_aug.onnx", Path(tmp) / "qdq_aug.onnx"
        modify_model_output_intermediate_tensors(str(pre_path), str(faug))
        modify_model_output_intermediate_tensors(str(int8_path), str(qaug))
        fact = collect_activations(str(faug), OnnxCalibrationReader(sub, names, batch))
        qact = collect_activations(str(qaug), OnnxCalibrationReader(sub, names, batch))
    err = compute_activation_error(create_activation_matching(qact, fact))
    sqnr = {k: v.get("xmodel_err") for k, v in err.items()}
    layer_of = onnx_layer_of_node(fmodel)
    out = []
    for node in fmodel.graph.node:
        if node.name not in layer_of:
            continue
        s_in, s_out = sqnr.get(node.input[0]), sqnr.get(node.output[0])
        if s_out is None:  # output not quantised: judge by what the next quantised tensor sees
            nxt = [n for n in fmodel.graph.node if node.output[0] in n.input]
            while nxt and s_out is None:
                s_out = sqnr.get(nxt[0].output[0])
                nxt = [n for n in fmodel.graph.node if nxt[0].output[0] in n.input]
        drop = s_in - s_out if s_in is not None and s_out is not None else None
        out.append(LayerError(layer_of[node.name], node.name, s_in, s_out, drop))
    out.sort(key=lambda e: (-(e.drop_db if e.drop_db is not None else -1e9), e.sqnr_out or 0.0))
    return out
