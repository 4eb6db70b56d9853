"""TFLite export: litert-torch (PyTorch -> .tflite) and ai-edge-quantizer (int8), one file per K.

TFLite has no dynamic batch here (shared EDGE.md), so each file is converted for one candidate
count K: ``model_fp32_k{K}.tflite`` / ``model_int8_k{K}.tflite`` (ModelFile.candidates = K).
Inputs are named like the ONNX graph's (signature ``serving_default``: ``obs`` [K, O], ``goal``
[K, G] when goal_dim > 0, ``noise`` [K, H, D]); the one output is the raw window [K, H, D].
Inputs and outputs stay float32 in the int8 file too (quantise / dequantise ops inside).

int8: ai-edge-quantizer's static int8 configuration (the ``static_wi8_ai8`` recipe: int8 weights
per channel, int8 activations, min/max uniform), applied to the weighted ops (FULLY_CONNECTED,
CONV_2D, ...) by default or to every supported op with ``ops="all"``. Calibration ranges are the
GLOBAL min/max over all calibration batches (``qsv_utils.min_max_update``): the quantiser's default
moving average of per-batch ranges comes out too narrow with small batches (EDGE.md: 16-20% error).

Needs the ``tflite`` extra (litert-torch, ai-edge-quantizer, ai-edge-litert); running a .tflite
needs only ``ai-edge-litert`` (the ``litert`` extra) or the legacy ``tflite-runtime``.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdp_edge.errors import MissingExtraError, require

from .layers import tflite_layer_regex


def tflite_name(precision: str, k: int) -> str:
    """Bundle file name of a TFLite model: ``model_fp32_k16.tflite``, ``model_int8_k16.tflite``,
    ``model_int8dyn_k16.tflite`` (precision int8-dynamic)."""
    tag = {"fp32": "fp32", "int8": "int8", "int8-dynamic": "int8dyn"}[precision]
    return f"model_{tag}_k{k}.tflite"


def require_tflite_export() -> None:
    """Raise MissingExtraError naming the ``tflite`` extra when a converter package is missing."""
    require("litert_torch", "tflite", "TFLite export")
    require("ai_edge_quantizer", "tflite", "TFLite int8 quantisation")
    from kdp_edge.runtime.tflite_backend import load_interpreter_class

    try:
        load_interpreter_class()
    except MissingExtraError as exc:
        raise MissingExtraError("ai_edge_litert", "tflite", "TFLite export (its parity checks run the .tflite "
                                "files)") from exc


@contextlib.contextmanager
def _quiet():
    """Silence litert-torch's progress console and the quantiser's tqdm bars / report."""
    try:
        from litert_torch import _config

        old, _config.config.show_progress = _config.config.show_progress, False
    except (ImportError, AttributeError):
        _config, old = None, None
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if _config is not None:
            _config.config.show_progress = old


def export_tflite_fp32(model, path: str | Path, k: int) -> Path:
    """Convert ``model`` (KDPGenerator, eval mode) for exactly ``k`` candidates; returns the path."""
    import torch

    from .onnx_export import example_inputs

    require_tflite_export()
    import litert_torch

    class _Signature(torch.nn.Module):
        """Named inputs (obs, goal, noise) and a named output (window) in the TFLite signature."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, obs, goal, noise):
            return {"window": self.inner(obs, goal, noise)}

    class _SignatureNoGoal(_Signature):
        def forward(self, obs, noise):
            return {"window": self.inner(obs, obs[:, :0], noise)}

    args = example_inputs(model, k=k)
    names = ["obs", "goal", "noise"] if model.goal_dim else ["obs", "noise"]
    wrapper = (_Signature if model.goal_dim else _SignatureNoGoal)(model.eval()).eval()
    with _quiet(), torch.no_grad():
        edge = litert_torch.convert(wrapper, sample_kwargs=dict(zip(names, args, strict=True)))
        edge.export(str(path))
    return Path(path)


@dataclass
class TFLiteInt8Config:
    ops: str = "weighted"  # weighted: FULLY_CONNECTED / CONV / BATCH_MATMUL | all: static_wi8_ai8 everywhere
    float_layers: list[str] = field(default_factory=list)  # torch module paths kept in float
    calibration: str = "global"  # global min/max (recommended) | moving (the quantiser's default)

    def describe(self) -> str:
        fl = ", ".join(self.float_layers) if self.float_layers else "none"
        return (f"ai-edge-quantizer static_wi8_ai8 config (int8 weights per channel, int8 activations, "
                f"{self.calibration} min/max calibration), quantised ops: "
                f"{'FULLY_CONNECTED/CONV/BATCH_MATMUL' if self.ops == 'weighted' else 'all supported'}; "
                f"float I/O; float layers: {fl}")


def _weighted_ops():
    from ai_edge_quantizer.qtyping import TFLOperationName as O

    return [O.FULLY_CONNECTED, O.BATCH_MATMUL, O.CONV_2D, O.DEPTHWISE_CONV_2D, O.CONV_2D_TRANSPOSE]


def quantize_tflite_int8(fp32_path: str | Path, out_path: str | Path, calib, k: int, cfg: TFLiteInt8Config) -> Path:
    """Static int8 of the fp32 .tflite for K = ``k``, calibrated on ``calib`` (a
    calibration.int8.CalibrationSet; batches of exactly ``k`` rows)."""
    require_tflite_export()
    from ai_edge_quantizer import calibrator, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName as O
    from ai_edge_quantizer.utils import qsv_utils

    if cfg.ops == "all":
        q = quantizer.Quantizer(str(fp32_path), recipe.static_wi8_ai8())
        for op in (O.INPUT, O.OUTPUT):  # keep the graph's inputs and output float32
            q.update_quantization_recipe(".*", op, algorithm_key=AlgorithmName.NO_QUANTIZE)
    elif cfg.ops == "weighted":
        q = quantizer.Quantizer(str(fp32_path))
        for op in _weighted_ops():
            q.add_static_config(".*", op, activation_num_bits=8, weight_num_bits=8)
    else:
        raise ValueError(f"unknown int8 op set {cfg.ops!r}: use weighted or all")
    for layer in cfg.float_layers:
        for op in _weighted_ops():
            q.update_quantization_recipe(tflite_layer_regex(layer), op, algorithm_key=AlgorithmName.NO_QUANTIZE)
    batches = list(calib.batches(k))
    if not batches:
        raise ValueError(f"calibration set has {len(calib)} rows, fewer than one batch of K={k}")
    data = {"serving_default": batches}
    with _quiet():
        if cfg.calibration == "global":
            # Quantizer.calibrate has no hook for the range update: drive its Calibrator directly
            cal = calibrator.Calibrator(q._float_model_buffer, num_threads=1,
                                        qsv_update_func=qsv_utils.min_max_update)
            cal.calibrate(data, q._recipe_manager)
            result = cal.get_model_qsvs()
        else:
            result = q.calibrate(data, num_threads=1)
        q.quantize(result, serialize_to_path=str(out_path), enable_progress_report=False)
    return Path(out_path)


def quantize_tflite_dynamic(fp32_path: str | Path, out_path: str | Path) -> Path:
    """Dynamic-range int8 (``dynamic_wi8_afp32``: int8 weights, activations quantised at run time)."""
    require_tflite_export()
    from ai_edge_quantizer import quantizer, recipe

    with _quiet():
        q = quantizer.Quantizer(str(fp32_path), recipe.dynamic_wi8_afp32())
        q.quantize(serialize_to_path=str(out_path), enable_progress_report=False)
    return Path(out_path)


class TFLiteRunner:
    """Runs a one-K .tflite through the device runtime's :class:`TFLiteBackend` on feed dicts
    (``obs``/``goal``/``noise``) -> windows [K, H, D]; larger batches (a multiple of K) are run K rows
    at a time."""

    def __init__(self, path: str | Path, threads: int = 1):
        from kdp_edge.runtime.tflite_backend import TFLiteBackend

        self.path = Path(path)
        with contextlib.redirect_stderr(io.StringIO()):
            self.backend = TFLiteBackend(self.path, threads)
        self.input_names = sorted(self.backend.file_inputs)
        self.k = self.backend.candidates

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        n = len(feeds["noise"])
        if n % self.k:
            raise ValueError(f"{self.path.name} runs K={self.k} candidates per call; got a batch of {n}")
        return np.concatenate([self.backend({k: v[s:s + self.k] for k, v in feeds.items()})
                               for s in range(0, n, self.k)])
