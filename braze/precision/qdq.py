"""Which layers INT8 may take (the recipe), and the Quantize/Dequantize pairs calibration puts before them.

After the float passes, a quantizable layer is a FusedConv (2-D, constant weight) or a FusedGemm (constant
[K, N] weight). The recipe, common to TensorRT's samples, NVIDIA ModelOpt and onnxruntime's quantizer, leaves
in the float type:
- the first convolution when it has fewer than 16 input channels (an image's few channels carry little of the
  compute and much of the error);
- a last layer: one whose output reaches a graph output without passing another quantizable layer (the
  classifier, a detector's heads);
and a pin (`PrecisionPolicy.layers`/`op_types`) overrides the recipe either way. Softmax, normalization and
attention stay in the float type: they are not quantizable layers.

`insert_qdq` gives each chosen layer's activation input a QuantizeLinear -> DequantizeLinear pair with the
calibrated scale (symmetric INT8: zero point 0); the Q/DQ fusion rules (passes/fuse_qdq.py) then make the
layer an INT8 kind, exactly as for a model that came with its own Q/DQ nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import BrazeError
from ..ir import DType, Graph, Node, Tensor
from ..ops.kinds import Kind, is_kind
from .policy import Precision, PrecisionPolicy

MIN_CHANNELS = 16  # a first convolution with fewer input channels stays in the float type


@dataclass(frozen=True)
class Choice:
    """A quantizable layer and whether the recipe (or a pin) lets it run in INT8, with why not."""

    node: Node
    int8: bool
    reason: str  # "" when int8


def quantizable(node: Node) -> bool:
    """A layer INT8 kernels exist for: a 2-D convolution (Conv, FusedConv) or a matrix product (MatMul, FusedGemm)
    with a constant float32 weight and a float32 input."""
    plain = node.domain in ("", "ai.onnx") and node.op in ("Conv", "MatMul")
    if not (plain or is_kind(node, Kind.FUSED_CONV, Kind.FUSED_GEMM)) or len(node.inputs) < 2:
        return False
    x, w = node.inputs[0], node.inputs[1]
    rank = 4 if node.op in ("Conv", Kind.FUSED_CONV) else 2
    return (w is not None and w.is_constant and w.rank == rank and w.dtype == DType.float32
            and x is not None and x.dtype == DType.float32)


def choose_layers(graph: Graph, policy: PrecisionPolicy) -> list[Choice]:
    """Every quantizable layer, in order, with the recipe's and the pins' decision."""
    layers = [n for n in graph.nodes if quantizable(n)]
    last = _last_layers(graph, {id(n) for n in layers})
    choices = []
    for i, n in enumerate(layers):
        pin = policy.pinned(n)
        if pin is not None:
            reason = "" if pin is Precision.INT8 else f"pinned to {pin}"
        elif n.op in ("Conv", Kind.FUSED_CONV) and i == 0 and \
                n.inputs[1].shape[1] * int(n.attrs.get("group", 1)) < MIN_CHANNELS:
            reason = f"first convolution, {n.inputs[1].shape[1] * int(n.attrs.get('group', 1))} input channels"
        elif id(n) in last:
            reason = "last layer before an output"
        else:
            reason = ""
        choices.append(Choice(n, not reason, reason))
    return choices


def _last_layers(graph: Graph, quantizable_ids: set[int]) -> set[int]:
    """The quantizable layers from which a graph output is reached without another quantizable layer."""
    producer = graph.producers()
    last: set[int] = set()
    pending = [producer[t] for t in graph.outputs if t in producer]
    seen: set[int] = set()
    while pending:
        n = pending.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if id(n) in quantizable_ids:
            last.add(id(n))
            continue
        pending += [producer[t] for t in n.inputs if t is not None and t in producer]
    return last


def calibration_tensors(choices: list[Choice]) -> list[str]:
    """The names of the activations calibration must measure: the input of every layer going to INT8."""
    names: list[str] = []
    for c in choices:
        if c.int8 and c.node.inputs[0].name not in names:
            names.append(c.node.inputs[0].name)
    return names


def insert_qdq(graph: Graph, choices: list[Choice], scales: dict[str, float]) -> frozenset[str]:
    """Put QuantizeLinear -> DequantizeLinear (int8, zero point 0, the calibrated scale) on the activation input
    of each chosen layer; layers that read one tensor share one pair. Returns the names of the quantized tensors
    made (the fusion may round these layers' weights to int8; a model's own Q/DQ layers keep theirs exact)."""
    pairs: dict[int, Tensor] = {}
    for c in choices:
        x = c.node.inputs[0]
        if not c.int8 or x.name not in scales:
            continue
        if id(x) not in pairs:
            pairs[id(x)] = _pair(graph, x, scales[x.name], c.node)
        c.node.inputs[0] = pairs[id(x)]
    producer = graph.producers()
    return frozenset(producer[dq].inputs[0].name for dq in pairs.values())


def _pair(graph: Graph, x: Tensor, scale: float, before: Node) -> Tensor:
    value = torch.tensor(scale, dtype=torch.float32)
    if not (torch.isfinite(value) and value >= torch.finfo(torch.float32).tiny):
        raise BrazeError(f"the INT8 scale of tensor {x.name!r} is {scale!r}, which float32 holds as {float(value)}: a "
                         f"scale must be a positive, finite, normal float32 (calibrate again, or fix the cache)")
    s = Tensor(graph.unique_name(f"{x.name}.scale"), DType.float32, (), value)
    z = Tensor(graph.unique_name(f"{x.name}.zero_point"), DType.int8, (), torch.tensor(0, dtype=torch.int8))
    q = Tensor(graph.unique_name(f"{x.name}.int8"), DType.int8, x.shape)
    dq = Tensor(graph.unique_name(f"{x.name}.dequantized"), DType.float32, x.shape)
    origin = (f"{x.name} (quantized)",)
    at = graph.nodes.index(before)
    graph.nodes[at:at] = [
        Node("QuantizeLinear", [x, s, z], [q], {}, name=graph.unique_name(f"{x.name}.quantize"), version=19,
             origin=origin),
        Node("DequantizeLinear", [q, s, z], [dq], {}, name=graph.unique_name(f"{x.name}.dequantize"), version=19,
             origin=origin),
    ]
    return dq
