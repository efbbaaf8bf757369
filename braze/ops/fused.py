"""braze's own fused node kinds (domain "braze"), made by the optimizer.

Each reference is the composition of the ops it replaces, so every fusion is checked against the
same oracle as the unfused graph; backends implement them as single kernels.

  FusedConv   conv(x, w) + bias [+ residual] -> activation          (CBR, ResNet block endings)
  FusedGemm   activation(x @ w + bias) [+ residual]                 (Linear layers, MLPs)
  Attention   softmax(q @ k^T * scale [+ mask]) @ v                 (BERT, ViT self-attention)
  Pointwise   any chain of elementwise ops, as a subgraph            (one pass over memory)
  SiLU        x * sigmoid(x)
  ConcatInPlace  a Concat whose producers write straight into their slices of its output

Their names are `Kind` members (kinds.py); the activations FusedConv and FusedGemm apply, and `activate`,
come from the activation table (epilogue.py) and are re-exported here.
"""

from __future__ import annotations

import torch

from ..ir import Graph
from . import conv as _conv
from .epilogue import ACTIVATIONS, activate
from .kinds import DOMAIN, Kind
from .opdef import op

@op(Kind.FUSED_CONV, domain=DOMAIN)
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


@op(Kind.FUSED_GEMM, domain=DOMAIN)
def fused_gemm(x, w, b=None, residual=None, *, activation: str = "none", act_params: list[float] | None = None):
    """x [..., K] @ w [K, N] + b [N] -> activation -> + residual [..., N]."""
    y = torch.matmul(x, w)
    if b is not None:
        y = y + b
    y = activate(y, activation, act_params or [])
    if residual is not None:
        y = y + residual
    return y


@op(Kind.ATTENTION, domain=DOMAIN)
def attention(q, k, v, mask=None, *, scale: float = 1.0, k_transposed: int = 1):
    """q [..., S, D]; k [..., D, Sk] when k_transposed else [..., Sk, D]; v [..., Sk, Dv]; additive mask
    broadcastable to [..., S, Sk]."""
    kt = k if k_transposed else k.transpose(-1, -2)
    scores = torch.matmul(q, kt) * scale
    if mask is not None:
        scores = scores + mask
    return torch.matmul(torch.softmax(scores, dim=-1), v)


@op(Kind.CONCAT_IN_PLACE, domain=DOMAIN)
def concat_in_place(*xs, axis: int):
    """Concat whose inputs the memory plan placed inside its output: the layer itself copies nothing."""
    return torch.cat(xs, dim=axis)


@op(Kind.SILU, domain=DOMAIN, elementwise=True)
def silu(x):
    return activate(x, "silu", [])


@op(Kind.POINTWISE, domain=DOMAIN, keeps_layout=True)
def pointwise(*xs, body: Graph):
    """Evaluate `body` (a graph of elementwise ops whose inputs are this node's inputs)."""
    from .evaluate import run_graph

    return tuple(run_graph(body, list(xs)))


OPS = [fused_conv, fused_gemm, attention, silu, pointwise, concat_in_place]
