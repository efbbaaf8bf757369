"""Convolution fusions: a zero Pad folded into the conv's own pads (TF-style "same" padding); BatchNormalization
folded into the conv's weights; bias, residual Add and activation absorbed into one FusedConv layer (the "CBR"
layer and the ResNet block ending)."""

from __future__ import annotations

import torch

from ..ir import Graph, Node
from ..ops.epilogue import ACTIVATION_OPS
from ..ops.kinds import DOMAIN, Kind
from .pattern import Any, Const, Match, Op, Rule, rewrite
from .util import activation_of, constant, merged_origin, node

CONVS = ("Conv", Kind.FUSED_CONV)
_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _conv_parts(conv: Node) -> tuple:
    """(x, w, b, residual, conv attrs, activation, act_params) of a Conv or FusedConv."""
    x, w = conv.inputs[0], conv.inputs[1]
    b, residual = conv.input(2), conv.input(3)
    attrs = {k: conv.attrs[k] for k in _CONV_ATTRS if k in conv.attrs}
    return x, w, b, residual, attrs, conv.attrs.get("activation", "none"), conv.attrs.get("act_params") or []


def _fused(graph: Graph, like: Node, out, x, w, b, residual, attrs, activation, params, origin) -> Node:
    inputs = [x, w, b, residual]
    while inputs[-1] is None:
        inputs.pop()
    return node(graph, Kind.FUSED_CONV, inputs, [out], {**attrs, "activation": activation, "act_params": params},
                name=like.name, origin=origin, domain=DOMAIN)


def _plain(n: Node, m: Match) -> bool:
    """A conv with nothing fused after it yet, and a constant weight."""
    return n.inputs[1].is_constant and n.attrs.get("activation", "none") == "none"


def _fold_batchnorm(m: Match, graph: Graph) -> list[Node] | None:
    bn, conv = m.root, m["conv"]
    if conv.input(3) is not None or len(bn.outputs) > 1 or bn.attrs.get("training_mode", 0):
        return None
    x, w, b, _, attrs, _, _ = _conv_parts(conv)
    if b is not None and not b.is_constant:
        return None
    scale, beta, mean, var = (t.value.double() for t in bn.inputs[1:5])
    out_channels = w.shape[0]
    if any(v.numel() != out_channels for v in (scale, beta, mean, var)):
        return None
    factor = scale / torch.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    w_new = (w.value.double() * factor.reshape(-1, *([1] * (w.value.dim() - 1)))).to(w.value.dtype)
    b_old = b.value.double() if b is not None else torch.zeros(out_channels, dtype=torch.float64)
    b_new = ((b_old - mean) * factor + beta).to(w.value.dtype)
    w_t = constant(graph, w_new, f"{conv.name}.weight")
    b_t = constant(graph, b_new, f"{conv.name}.bias")
    folded = node(graph, conv.op, [x, w_t, b_t], bn.outputs, dict(conv.attrs), name=conv.name,
                  origin=merged_origin(conv, bn), domain=conv.domain, version=conv.version)
    return [folded]


def _add_bias(m: Match, graph: Graph) -> list[Node] | None:
    add, conv, c = m.root, m["conv"], m["c"]
    x, w, b, residual, attrs, act, params = _conv_parts(conv)
    out = add.outputs[0]
    channels = w.shape[0]
    if residual is not None or out.shape != conv.outputs[0].shape or c.value.numel() != channels:
        return None
    rank = len(out.shape)
    if tuple(c.shape) not in ((channels,) + (1,) * (rank - 2), (1, channels) + (1,) * (rank - 2)):
        return None
    bias = c.value.reshape(-1).to(w.value.dtype)
    if b is not None:
        if not b.is_constant:
            return None
        bias = b.value + bias
    b_t = constant(graph, bias, f"{conv.name}.bias")
    return [_fused(graph, conv, out, x, w, b_t, None, attrs, act, params, merged_origin(conv, add))]


def _add_residual(m: Match, graph: Graph) -> list[Node] | None:
    add, conv, residual = m.root, m["conv"], m["residual"]
    x, w, b, old_residual, attrs, act, params = _conv_parts(conv)
    out = add.outputs[0]
    if old_residual is not None or residual.shape != out.shape or conv.outputs[0].shape != out.shape:
        return None
    if residual.dtype != out.dtype:
        return None
    return [_fused(graph, conv, out, x, w, b, residual, attrs, act, params, merged_origin(conv, add))]


def _add_activation(m: Match, graph: Graph) -> list[Node] | None:
    act_node, conv = m.root, m["conv"]
    spec = activation_of(act_node)
    if spec is None:
        return None
    x, w, b, residual, attrs, _, _ = _conv_parts(conv)
    return [_fused(graph, conv, act_node.outputs[0], x, w, b, residual, attrs, spec[0], spec[1],
                   merged_origin(conv, act_node))]


def _zero_pads(pad: Node, rank: int) -> list[int] | None:
    """A Pad's [begin..., end...] over all `rank` dims, when it pads with the constant 0 by constant amounts."""
    if pad.attrs.get("mode", "constant") != "constant":
        return None
    if pad.version < 11:
        pads, value, axes = list(pad.attrs.get("pads") or []), float(pad.attrs.get("value", 0.0)), None
    else:
        given = [pad.input(i) for i in (1, 2, 3)]
        if any(t is not None and not t.is_constant for t in given) or given[0] is None:
            return None
        pads = [int(v) for v in given[0].value.reshape(-1).tolist()]
        value = 0.0 if given[1] is None or given[1].value.numel() == 0 else float(given[1].value.reshape(-1)[0])
        axes = None if given[2] is None else [int(a) % rank for a in given[2].value.reshape(-1).tolist()]
    if value != 0.0:
        return None
    axes = axes if axes is not None else list(range(rank))
    if len(pads) != 2 * len(axes):
        return None
    full = [0] * (2 * rank)
    for i, axis in enumerate(axes):
        full[axis], full[rank + axis] = pads[i], pads[len(axes) + i]
    return full


def _fold_pad(m: Match, graph: Graph) -> list[Node] | None:
    """Pad(x, zeros) -> Conv  =>  Conv with the Pad's amounts added to its own pads (TF-style "same" padding)."""
    conv, pad = m.root, m["pad"]
    x = pad.inputs[0]
    rank = x.rank
    if rank is None or rank < 3 or conv.attrs.get("auto_pad", "NOTSET") != "NOTSET":
        return None
    full = _zero_pads(pad, rank)
    if full is None or any(full[d] or full[rank + d] for d in (0, 1)) or min(full) < 0:
        return None
    spatial = rank - 2
    own = list(conv.attrs.get("pads") or [0] * (2 * spatial))
    begin = [own[i] + full[2 + i] for i in range(spatial)]
    pads = begin + [own[spatial + i] + full[rank + 2 + i] for i in range(spatial)]
    attrs = {**conv.attrs, "pads": pads}
    return [node(graph, conv.op, [x, *conv.inputs[1:]], conv.outputs, attrs, name=conv.name,
                 origin=merged_origin(pad, conv), domain=conv.domain, version=conv.version)]


def _conv(name: str = "conv") -> Op:
    return Op(CONVS, any_inputs=True, name=name, where=_plain)


RULES = [
    Rule("pad_into_conv", Op(CONVS, Op("Pad", Any("x"), partial=True, name="pad"), Const("w"), partial=True,
                             where=lambda n, m: n.attrs.get("layout", "nchw") == "nchw"), _fold_pad),
    Rule("conv_batchnorm", Op("BatchNormalization", _conv(), Const(), Const(), Const(), Const()), _fold_batchnorm),
    Rule("conv_bias", Op("Add", _conv(), Const("c"), commute=True), _add_bias),
    Rule("conv_residual", Op("Add", _conv(), Any("residual"), commute=True), _add_residual),
    Rule("conv_activation", Op(ACTIVATION_OPS, _conv(), partial=True), _add_activation),
]


def run(graph: Graph, ctx) -> None:
    rewrite(graph, RULES, ctx.fired)
