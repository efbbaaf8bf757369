"""Horizontal fusion: sibling layers that read the same input with constant weights (the Q, K and V
projections; Inception-style branches) become one wider layer followed by a Split, whose outputs
the memory plan makes views of the wide result."""

from __future__ import annotations

import torch

from ..ir import Graph, Node, Tensor
from ..ops.kinds import DOMAIN, Kind
from .util import constant, node

_CONV_KEYS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides", "activation", "act_params")


def run(graph: Graph, ctx) -> None:
    for x, users in list(graph.consumers().items()):
        for group in _groups(x, users):
            _fuse(graph, group, ctx)


def _gemm_key(n: Node, x: Tensor):
    """FusedGemm without a residual, or a plain MatMul (a projection without bias), over `x`."""
    plain = n.op == "MatMul" and n.domain == ""
    if not (plain or n.op == Kind.FUSED_GEMM) or n.inputs[0] is not x or n.input(3) is not None:
        return None
    w, b = n.inputs[1], n.input(2)
    if not w.is_constant or w.rank != 2 or (b is not None and not b.is_constant):
        return None
    return ("gemm", w.value.dtype, w.shape[0], n.attrs.get("activation", "none"),
            tuple(n.attrs.get("act_params") or ()))


def _conv_key(n: Node, x: Tensor):
    if n.op != Kind.FUSED_CONV or n.inputs[0] is not x or n.input(3) is not None or n.attrs.get("group", 1) != 1:
        return None
    w, b = n.inputs[1], n.input(2)
    if not w.is_constant or (b is not None and not b.is_constant):
        return None
    return ("conv", w.value.dtype, tuple(w.shape[1:]), repr([n.attrs.get(k) for k in _CONV_KEYS]))


def _groups(x: Tensor, users: list[Node]) -> list[list[Node]]:
    buckets: dict[tuple, list[Node]] = {}
    for n in dict.fromkeys(users):
        key = _gemm_key(n, x) or _conv_key(n, x)
        if key is not None and n.outputs[0].is_static:
            buckets.setdefault(key, []).append(n)
    return [g for g in buckets.values() if len(g) > 1]


def _fuse(graph: Graph, group: list[Node], ctx) -> None:
    first = group[0]
    is_gemm = first.op in (Kind.FUSED_GEMM, "MatMul")
    axis = 1 if is_gemm else 0  # weight axis of the output features: [K, N] vs [M, C, kh, kw]
    weights = [n.inputs[1].value for n in group]
    widths = [int(w.shape[axis]) for w in weights]
    w = constant(graph, torch.cat(weights, dim=axis), f"{first.name}.hweight")
    inputs: list[Tensor | None] = [first.inputs[0], w]
    if any(n.input(2) is not None for n in group):
        biases = [n.inputs[2].value.reshape(-1) if n.input(2) is not None else torch.zeros(width, dtype=w.value.dtype)
                  for n, width in zip(group, widths)]
        inputs.append(constant(graph, torch.cat(biases), f"{first.name}.hbias"))
    out_axis = -1 if is_gemm else 1
    out0 = first.outputs[0]
    shape = list(out0.shape)
    shape[out_axis] = sum(widths)
    wide = Tensor(graph.unique_name(f"{first.name}_wide"), out0.dtype, tuple(shape))
    label = " || ".join(" + ".join(n.origin) for n in group)
    attrs = {"activation": first.attrs.get("activation", "none"), "act_params": list(first.attrs.get("act_params") or [])} \
        if is_gemm else dict(first.attrs)
    fused = node(graph, Kind.FUSED_GEMM if is_gemm else first.op, inputs, [wide], attrs, name=f"{first.name}_wide",
                 origin=(label,), domain=DOMAIN)
    sizes = constant(graph, torch.tensor(widths, dtype=torch.int64), f"{first.name}.splits")
    split = node(graph, "Split", [wide, sizes], [n.outputs[0] for n in group], {"axis": out_axis % len(shape)},
                 name=f"{first.name}_split", origin=(label,))
    position = min(graph.nodes.index(n) for n in group)
    for n in group:
        graph.nodes.remove(n)
    graph.nodes[position:position] = [fused, split]
    ctx.fired["horizontal_" + ("gemm" if is_gemm else "conv")] += 1
