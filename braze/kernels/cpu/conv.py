"""Convolutions on the CPU through oneDNN: weights reordered once into oneDNN's blocked layout, activations
channels-last, and the bias, a residual add and the activation fused into the convolution as oneDNN
post-ops (the path PyTorch's own CPU compiler takes).

oneDNN's relu and hardtanh post-ops map NaN to 0 (a max/min that returns the number), and its gelu maps +inf to
NaN; braze's references follow ONNX (NaN stays NaN, gelu(+inf) is +inf). Those activations run as one torch pass
in place after the product instead (`finish_in_place`), so a fused layer propagates NaN and inf as the unfused
graph does."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ...device import Target
from ...ir import Node
from ...ops.epilogue import activate, subset
from ...ops.kinds import Kind
from ..operands import conv_geometry
from ..tactic import TacticBase

_CL = torch.channels_last


# The fused activations oneDNN's post-ops take: activation -> (oneDNN's name, algorithm). The act_params are
# passed as its scalars, in the table's order (braze/ops/epilogue.py).
_POST_OPS = {"none": ("none", ""), "sigmoid": ("sigmoid", ""), "tanh": ("tanh", ""), "hardswish": ("hardswish", ""),
             "silu": ("swish", ""), "leaky_relu": ("leaky_relu", ""), "gelu_tanh": ("gelu", "tanh")}
# NOTE: activations whose oneDNN post-op loses NaN or inf; `finish_in_place` applies them after the product.
_AFTER_PRODUCT = ("relu", "clip", "gelu")
ONEDNN_ACTIVATIONS = subset([*_POST_OPS, *_AFTER_PRODUCT], "oneDNN's post-ops")


def onednn_post_op(activation: str, params: list[float]) -> tuple[str, list[float], str] | None:
    """oneDNN's name, scalars and algorithm for the post-op of one of braze's fused activations ("none" where
    `finish_in_place` applies it instead); None where braze has neither."""
    if activation not in ONEDNN_ACTIVATIONS:
        return None
    if activation in _AFTER_PRODUCT:
        return "none", [], ""
    name, algorithm = _POST_OPS[activation]
    return name, list(params), algorithm


def finish_in_place(activation: str, params: list[float]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The activation to apply in place after oneDNN's product, where its post-op would not propagate NaN/inf."""
    if activation == "relu":
        return torch.relu_
    if activation == "clip":
        low, high = None if params[0] == -math.inf else params[0], None if params[1] == math.inf else params[1]
        return None if low is None and high is None else (lambda y: y.clamp_(low, high))
    if activation == "gelu":
        return lambda y: y.copy_(activate(y, "gelu", []))
    return None


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class OneDnnConvTactic(TacticBase):
    name = "onednn_conv"
    owned_inputs = (1, 2)  # weight and bias, prepared at compile

    def supports(self, node: Node, target: Target) -> bool:
        if target.is_cuda or not onednn_available() or node.op not in ("Conv", Kind.FUSED_CONV):
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
        finish = finish_in_place(a.get("activation", "none"), list(a.get("act_params") or []))
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
            if finish is not None:
                finish(y)
            out = outputs[0]
            if out is None:
                return [y]
            out.copy_(y)
            return None

        return kernel
