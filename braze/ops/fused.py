"""braze's own fused node kinds (domain "braze"), made by the optimizer.

Each reference is the composition of the ops it replaces, so every fusion is checked against the
same oracle as the unfused graph; backends implement them as single kernels.

  FusedConv   conv(x, w) + bias [+ residual] -> activation          (CBR, ResNet block endings)
  FusedGemm   activation(x @ w + bias) [+ residual]                 (Linear layers, MLPs)
  Attention   softmax(q @ k^T * scale [+ mask]) @ v                 (BERT, ViT self-attention)
  Pointwise   any chain of elementwise ops, as a subgraph            (one pass over memory)
  SiLU        x * sigmoid(x)
  ConcatInPlace  a Concat whose producers write straight into their slices of its output
"""

from __future__ import annotations

import math

import torch

from ..ir import Graph
from . import conv as _conv
from .activation import gelu_onnx
from .opdef import op

DOMAIN = "braze"

ACTIVATIONS = ("none", "relu", "clip", "leaky_relu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "silu",
               "gelu", "gelu_tanh", "elu")


def activate(x: torch.Tensor, kind: str, params: list[float]) -> torch.Tensor:
    """Apply one of ACTIVATIONS; `params` are its constants (clip: min, max; leaky_relu/elu: alpha;
    hardsigmoid: alpha, beta)."""
    if kind == "none":
        return x
    if kind == "relu":
        return torch.relu(x)
    if kind == "clip":
        low, high = params
        if low == -math.inf and high == math.inf:  # a Clip without bounds
            return x
        return torch.clamp(x, None if low == -math.inf else low, None if high == math.inf else high)
    if kind == "leaky_relu":
        return torch.where(x < 0, x * params[0], x)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    if kind == "tanh":
        return torch.tanh(x)
    if kind == "hardswish":
        return x * torch.clamp(x * (1 / 6) + 0.5, 0, 1)
    if kind == "hardsigmoid":
        return torch.clamp(x * params[0] + params[1], 0, 1)
    if kind == "silu":
        return x * torch.sigmoid(x)
    if kind == "gelu":
        return gelu_onnx(x)
    if kind == "gelu_tanh":
        return gelu_onnx(x, "tanh")
    if kind == "elu":
        return torch.where(x < 0, params[0] * torch.expm1(x), x)
    raise ValueError(f"unknown activation {kind!r} (known: {', '.join(ACTIVATIONS)})")


@op("FusedConv", domain=DOMAIN)
def fused_conv(x, w, b=None, residual=None, *, auto_pad: str = "NOTSET", dilations: list[int] | None = None,
               group: int = 1, kernel_shape: list[int] | None = None, pads: list[int] | None = None,
               strides: list[int] | None = None, activation: str = "none", act_params: list[float] | None = None,
               layout: str = "nchw"):
    """`layout` is where the tensors live in memory (nchw, or nhwc: channels last); the values are the same."""
    y = _conv.conv.fn(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                      pads=pads, strides=strides)
    if residual is not None:
        y = y + residual
    return activate(y, activation, act_params or [])


@op("FusedGemm", domain=DOMAIN)
def fused_gemm(x, w, b=None, residual=None, *, activation: str = "none", act_params: list[float] | None = None):
    """x [..., K] @ w [K, N] + b [N] -> activation -> + residual [..., N]."""
    y = torch.matmul(x, w)
    if b is not None:
        y = y + b
    y = activate(y, activation, act_params or [])
    if residual is not None:
        y = y + residual
    return y


@op("Attention", domain=DOMAIN)
def attention(q, k, v, mask=None, *, scale: float = 1.0, k_transposed: int = 1):
    """q [..., S, D]; k [..., D, Sk] when k_transposed else [..., Sk, D]; v [..., Sk, Dv]; additive mask
    broadcastable to [..., S, Sk]."""
    kt = k if k_transposed else k.transpose(-1, -2)
    scores = torch.matmul(q, kt) * scale
    if mask is not None:
        scores = scores + mask
    return torch.matmul(torch.softmax(scores, dim=-1), v)


@op("ConcatInPlace", domain=DOMAIN)
def concat_in_place(*xs, axis: int):
    """Concat whose inputs the memory plan placed inside its output: the layer itself copies nothing."""
    return torch.cat(xs, dim=axis)


@op("SiLU", domain=DOMAIN)
def silu(x):
    return x * torch.sigmoid(x)


@op("Pointwise", domain=DOMAIN)
def pointwise(*xs, body: Graph):
    """Evaluate `body` (a graph of elementwise ops whose inputs are this node's inputs)."""
    from .evaluate import run_graph

    return tuple(run_graph(body, list(xs)))


OPS = [fused_conv, fused_gemm, attention, silu, pointwise, concat_in_place]
