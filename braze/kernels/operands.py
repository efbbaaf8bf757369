"""What several backends' tactics ask of a layer's operands."""

from __future__ import annotations

import torch

from ..ir import Node
from ..ops.kinds import Kind, is_kind
from ..ops.spatial import Window, window

_FLOAT = (torch.float16, torch.bfloat16, torch.float32)


def gemm_operands(node: Node) -> tuple[int, int] | None:
    """(K, N) when the node is x[..., K] @ W[K, N] with a constant 2-D weight (MatMul or FusedGemm)."""
    if not ((node.op == "MatMul" and node.domain == "") or is_kind(node, Kind.FUSED_GEMM)):
        return None
    x, w = node.inputs[0], node.inputs[1]
    if not (w.is_constant and w.rank == 2 and x.is_static and x.rank is not None and x.rank >= 2):
        return None
    if x.dtype is None or x.dtype.torch not in _FLOAT or node.outputs[0].dtype != x.dtype:
        return None
    if node.input(2) is not None and not node.inputs[2].is_constant:
        return None
    return int(w.shape[0]), int(w.shape[1])  # type: ignore[index]


def conv_geometry(node: Node) -> Window:
    """The resolved window (explicit pads) of a 2-D Conv/FusedConv node."""
    x, w = node.inputs[0], node.inputs[1]
    a = node.attrs
    return window(x.shape[2:], w.shape[2:],  # type: ignore[index]
                  strides=a.get("strides"), dilations=a.get("dilations"), pads=a.get("pads"),
                  auto_pad=a.get("auto_pad", "NOTSET"))
