"""Convolutions on the CPU through oneDNN: weights reordered once into oneDNN's blocked layout, activations
channels-last, and the bias, a residual add and the activation fused into the convolution as oneDNN
post-ops (the path PyTorch's own CPU compiler takes)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ...device import Target
from ...ir import Node
from ..operands import conv_geometry
from ..tactic import TacticBase

_CL = torch.channels_last


def onednn_post_op(activation: str, params: list[float]) -> tuple[str, list[float], str] | None:
    """oneDNN's name, scalars and algorithm for one of braze's fused activations."""
    simple = {"none": "none", "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "hardswish": "hardswish",
              "silu": "swish"}
    if activation in simple:
        return simple[activation], [], ""
    if activation == "leaky_relu":
        return "leaky_relu", [params[0]], ""
    if activation == "clip":
        return "hardtanh", [params[0], params[1]], ""
    if activation in ("gelu", "gelu_tanh"):
        return "gelu", [], "tanh" if activation == "gelu_tanh" else "none"
    return None


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class OneDnnConvTactic(TacticBase):
    name = "onednn_conv"
    owned_inputs = (1, 2)  # weight and bias, prepared at compile

    def supports(self, node: Node, target: Target) -> bool:
        if target.is_cuda or not onednn_available() or node.op not in ("Conv", "FusedConv"):
            return False
        x, w, b = node.inputs[0], node.inputs[1], node.input(2)
        act = node.attrs.get("activation", "none")
        residual = node.input(3) is not None
        return (w.is_constant and w.rank == 4 and x.is_static and x.dtype is not None and x.dtype.value == "float32"
                and (b is None or b.is_constant)
                and onednn_post_op(act, list(node.attrs.get("act_params") or [])) is not None
                and (not residual or act in ("none", "relu")) and node.outputs[0].is_static)

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        x, w_t = node.inputs[0], node.inputs[1]
        a = node.attrs
        win = conv_geometry(node)
        padding = list(win.begin) if win.symmetric else [0, 0]
        pre_pad = None if win.symmetric else (win.begin[1], win.end[1], win.begin[0], win.end[0])
        stride, dilation, group = list(win.strides), list(win.dilations), int(a.get("group", 1))
        shape = list(x.shape)  # type: ignore[arg-type]
        if pre_pad is not None:
            shape[2] += win.begin[0] + win.end[0]
            shape[3] += win.begin[1] + win.end[1]
        w = w_t.value.contiguous()  # type: ignore[union-attr]
        weight = torch.ops.mkldnn._reorder_convolution_weight(w, padding, stride, dilation, group, shape)
        b = node.input(2)
        bias = b.value.contiguous() if b is not None else None  # type: ignore[union-attr]
        post_op = onednn_post_op(a.get("activation", "none"), list(a.get("act_params") or []))
        assert post_op is not None, "supports() checked the activation"
        unary, scalars, algorithm = post_op
        conv = torch.ops.mkldnn._convolution_pointwise

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            x = inputs[0].contiguous(memory_format=_CL)  # type: ignore[union-attr]
            if pre_pad is not None:
                x = F.pad(x, pre_pad).contiguous(memory_format=_CL)
            residual = inputs[3] if len(inputs) > 3 else None
            if residual is not None:
                y = conv(x, residual.contiguous(memory_format=_CL), weight, bias, padding, stride, dilation, group,
                         "add", 1.0, None if unary == "none" else unary, [], "")
            else:
                y = conv(x, weight, bias, padding, stride, dilation, group, unary, scalars, algorithm or None)
            out = outputs[0]
            if out is None:
                return [y]
            out.copy_(y)
            return None

        return kernel
