"""TFLite backend for the device runtime: LiteRT (``ai-edge-litert``), else legacy ``tflite-runtime``.

Same contract as :class:`~kdp_edge.runtime.planner.OnnxBackend`: ``backend(feeds) -> window`` with
``feeds = {"obs": [K, obs_dim], "goal": [K, goal_dim], "noise": [K, H, D]}`` (float32, raw units)
and ``window`` float32 [K, H, D]. TFLite has no dynamic batch, so a ``.tflite`` file is exported for
one candidate count K (``ModelFile.candidates``); :attr:`TFLiteBackend.candidates` reports it.

Input names: converters rename inputs. ``litert-torch`` calls the positional arguments of the
signature ``args_0, args_1, ...`` (tensor names ``serving_default_args_0``); keyword exports keep
``obs``/``goal``/``noise``; TensorFlow appends ``:0``. :func:`match_inputs` maps the bundle's input
names onto the file's inputs by (1) name, after stripping the ``serving_default_`` prefix and the
``:N`` suffix, (2) position (trailing argument number, in the bundle's input order) when the
shapes agree, (3) shape when it is unique, and raises :class:`~kdp_edge.bundle.BundleError`
listing both sides when none of these is unambiguous.

Quantised inputs or outputs (int8/uint8 tensors with a scale and zero point, as in a fully
integer model) are quantised / dequantised here, so callers always pass and get float32.

Only numpy and the interpreter package are imported: this runs on the device.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..bundle import BundleError
from ..errors import MissingExtraError

_SUFFIX = re.compile(r":\d+$")
_PREFIXES = ("serving_default_",)
_ARG_NUMBER = re.compile(r"(\d+)$")


def load_interpreter_class():
    """``Interpreter`` from ``ai_edge_litert`` (preferred) or ``tflite_runtime`` (legacy fallback).

    Raises :class:`MissingExtraError` naming ``pip install 'kdp-edge[litert]'`` when neither exists.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # legacy: numpy<2, slow int8 (see EDGE.md)

        return Interpreter
    except ImportError as exc:
        raise MissingExtraError("ai-edge-litert", "litert", "Running .tflite models (backend 'tflite')") from exc


def normalize_name(name: str) -> str:
    """``serving_default_obs:0`` -> ``obs``: the name without converter decoration, lower case."""
    n = _SUFFIX.sub("", name)
    for p in _PREFIXES:
        if n.startswith(p):
            n = n[len(p):]
    return n.lower()


def _shape_ok(found: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """Shapes agree; -1 / None in ``found`` (a dynamic dimension) matches anything."""
    return len(found) == len(want) and all(f in (-1, None) or f == w for f, w in zip(found, want, strict=True))


def match_inputs(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> dict[str, str]:
    """Map the bundle's input names onto a model file's input names.

    expected: bundle input name -> shape, in the bundle's input order (e.g. ``{"obs": (16, 4),
        "goal": (16, 2), "noise": (16, 32, 6)}``).
    found: the file's input name -> shape (``-1`` for a dynamic dimension), any order.
    Returns expected name -> found name. Raises BundleError when the mapping is not unambiguous
    or a matched input has the wrong shape.
    """
    if len(found) != len(expected):
        raise BundleError(_mismatch(expected, found, f"the file has {len(found)} inputs, the bundle lists "
                                                     f"{len(expected)}"))
    out: dict[str, str] = {}
    by_norm: dict[str, list[str]] = {}
    for f in found:
        by_norm.setdefault(normalize_name(f), []).append(f)
    # (1) by name
    for e in expected:
        hits = by_norm.get(e.lower(), [])
        if len(hits) == 1:
            out[e] = hits[0]
    rest_e = [e for e in expected if e not in out]
    rest_f = [f for f in found if f not in out.values()]
    # (2) by position: args_0, args_1, ... in the bundle's input order, accepted only if shapes agree
    if rest_e:
        numbers = [_ARG_NUMBER.search(normalize_name(f)) for f in rest_f]
        if all(numbers) and len({int(m.group(1)) for m in numbers}) == len(numbers):
            ordered = [f for _, f in sorted(zip((int(m.group(1)) for m in numbers), rest_f, strict=True))]
            if all(_shape_ok(found[f], expected[e]) for e, f in zip(rest_e, ordered, strict=True)):
                out.update(zip(rest_e, ordered, strict=True))
                rest_e, rest_f = [], []
    # (3) by unique shape
    for e in rest_e:
        hits = [f for f in rest_f if _shape_ok(found[f], expected[e])]
        others = [x for x in rest_e if x != e and _shape_ok(tuple(expected[x]), expected[e])]
        if len(hits) != 1 or others:
            raise BundleError(_mismatch(expected, found, f"cannot tell which input is '{e}'"))
        out[e] = hits[0]
        rest_f.remove(hits[0])
    for e, f in out.items():
        if not _shape_ok(found[f], expected[e]):
            raise BundleError(_mismatch(expected, found, f"input '{f}' (for '{e}') has shape {list(found[f])}, "
                                                         f"expected {list(expected[e])}"))
    return out


def _mismatch(expected, found, why: str) -> str:
    want = ", ".join(f"{k} {list(v)}" for k, v in expected.items())
    have = ", ".join(f"{k} {list(v)}" for k, v in found.items())
    return (f"TFLite inputs do not match the bundle: {why} (bundle: {want}; file: {have}); re-export the bundle "
            "(kdp-edge export RUN_DIR --format tflite) so that its inputs are obs, goal, noise in this order")


class TFLiteBackend:
    """A ``.tflite`` model file for one fixed candidate count K.

    path: the ``.tflite`` file. threads: interpreter threads (1 = one core; 0 = the runtime's
    default). XNNPACK is used by default by ai-edge-litert. inputs: the bundle's input names and
    shapes in order (``{"obs": (K, O), "goal": (K, G), "noise": (K, H, D)}``); when omitted the
    mapping is made on the first call from the feeds' names and shapes.
    """

    def __init__(self, path: str | Path, threads: int = 1, inputs: dict[str, tuple[int, ...]] | None = None):
        interpreter_cls = load_interpreter_class()
        self.path = Path(path)
        try:
            self.interpreter = interpreter_cls(model_path=str(self.path), num_threads=threads if threads > 0 else None)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # the interpreter reports bad files as ValueError
            raise BundleError(f"{self.path}: the TFLite interpreter cannot load it ({exc}); re-export the bundle") from exc
        self._details = self._signature_inputs()
        outs = self.interpreter.get_output_details()
        if len(outs) != 1:
            raise BundleError(f"{self.path}: {len(outs)} outputs, a generator has exactly one (window); re-export")
        self._out = outs[0]
        first = next(iter(self._details.values()))
        self.candidates = int(first["shape"][0])  # the fixed K of this file
        self.index: dict[str, dict] = {}
        if inputs is not None:
            self._bind({k: tuple(int(x) for x in v) for k, v in inputs.items()})

    def _signature_inputs(self) -> dict[str, dict]:
        """Input name -> tensor details; signature names (``args_0``/``obs``) when the file has one
        signature, else the tensor names."""
        sigs = self.interpreter.get_signature_list() if hasattr(self.interpreter, "get_signature_list") else {}
        tensors = {d["index"]: d for d in self.interpreter.get_input_details()}
        if len(sigs) == 1:
            runner = self.interpreter.get_signature_runner(next(iter(sigs)))
            if hasattr(runner, "get_input_details"):
                sig = runner.get_input_details()
                if sig and all(d["index"] in tensors for d in sig.values()):
                    return {name: tensors[d["index"]] for name, d in sig.items()}
        return {d["name"]: d for d in tensors.values()}

    def _bind(self, expected: dict[str, tuple[int, ...]]) -> None:
        found = {name: tuple(int(x) for x in d.get("shape_signature", d["shape"])) for name, d in self._details.items()}
        mapping = match_inputs(expected, found)
        self.index = {e: self._details[f] for e, f in mapping.items()}

    @property
    def input_names(self) -> list[str]:
        return list(self.index)

    @property
    def file_inputs(self) -> list[str]:
        """The file's own input names (signature names when it has one signature)."""
        return list(self._details)

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """feeds (float32: obs [K, O], goal [K, G], noise [K, H, D]) -> window float32 [K, H, D]."""
        if not self.index:
            self._bind({k: tuple(v.shape) for k, v in feeds.items()})
        it = self.interpreter
        for name, d in self.index.items():
            x = feeds[name]
            if x.shape[0] != self.candidates:
                raise BundleError(f"{self.path} was exported for K={self.candidates} candidates, got K={x.shape[0]}; "
                                  f"use --candidates {self.candidates} or export a .tflite file for K={x.shape[0]}")
            it.set_tensor(d["index"], _to_tensor(x, d))
        it.invoke()
        return _from_tensor(it.get_tensor(self._out["index"]), self._out)


def _to_tensor(x: np.ndarray, d: dict) -> np.ndarray:
    dtype = d["dtype"]
    if dtype == np.float32:
        return np.ascontiguousarray(x, dtype=np.float32)
    scale, zero = d.get("quantization", (0.0, 0))
    if not scale:
        raise BundleError(f"TFLite input {d['name']} is {np.dtype(dtype).name} without quantisation parameters; "
                          "re-export with float inputs")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def _from_tensor(y: np.ndarray, d: dict) -> np.ndarray:
    if y.dtype == np.float32:
        return y
    scale, zero = d.get("quantization", (0.0, 0))
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
