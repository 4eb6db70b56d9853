"""Names of a generator's weighted layers, and how to find them in exported graphs.

Layers are named by their PyTorch module path inside :class:`kdp_edge.models.KDPGenerator`
(``net.net.0`` is the MLP's first Linear, ``net.cond_mlp.0`` / ``net.down_blocks.1.film`` are the
U-Net's conditioning Linears). Those names are what ``--keep-float`` takes, what ModelFile notes
list, and what both quantisers are told to leave in float:

* ONNX: the Gemm/MatMul/Conv node whose weight initializer is ``<layer>.weight``;
* TFLite (litert-torch): the op whose output tensor name holds the module path, one
  ``<Class>_<attribute>`` segment per path component (``.../Sequential_net/...Linear_0;2``).
"""

from __future__ import annotations

import re

WEIGHTED_ONNX_OPS = ("Gemm", "MatMul", "Conv", "ConvTranspose")


def weighted_layers(model) -> list[str]:
    """Module paths of every Linear / Conv1d / ConvTranspose1d of ``model``, in definition order."""
    from torch import nn

    kinds = (nn.Linear, nn.Conv1d, nn.ConvTranspose1d)
    return [name for name, mod in model.named_modules() if isinstance(mod, kinds)]


def conditioning_layers(model) -> list[str]:
    """The layers that eat the condition: the MLP's first Linear (its input is [condition, noise]),
    or the U-Net's condition MLP and FiLM Linears. Keeping these in float helped int8 accuracy
    most in the shared EDGE measurements."""
    arch = getattr(getattr(model, "cfg", None), "arch", "mlp")
    layers = weighted_layers(model)
    if arch == "mlp":
        return layers[:1]
    return [n for n in layers if ".cond_mlp." in f".{n}." or n.endswith(".film")]


def onnx_nodes_for_layers(onnx_model, layers: list[str]) -> dict[str, str]:
    """``{layer: node name}`` for the weighted ONNX nodes whose weight is ``<layer>.weight``
    (also under a wrapper prefix such as ``inner.``). Layers without a node are left out."""
    weights = {f"{layer}.weight": layer for layer in layers}
    out: dict[str, str] = {}
    for node in onnx_model.graph.node:
        if node.op_type not in WEIGHTED_ONNX_OPS or len(node.input) < 2:
            continue
        w = node.input[1]
        for wname, layer in weights.items():
            if w == wname or w.endswith("." + wname):
                out[layer] = node.name
    return out


def onnx_layer_of_node(onnx_model) -> dict[str, str]:
    """``{node name: layer}`` for every weighted node with a named weight initializer."""
    inits = {i.name for i in onnx_model.graph.initializer}
    out = {}
    for node in onnx_model.graph.node:
        if node.op_type in WEIGHTED_ONNX_OPS and len(node.input) > 1 and node.input[1] in inits:
            w = node.input[1]
            out[node.name] = w.removeprefix("inner.").removesuffix(".weight")
    return out


def tflite_layer_regex(layer: str) -> str:
    """Regex matching the output tensor name of ``layer``'s op in a litert-torch .tflite file."""
    return "".join(rf"/[^/;]*_{re.escape(part)}" for part in layer.split(".")) + ";"
