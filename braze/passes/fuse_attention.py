"""Attention fusion: MatMul(q, k^T) -> (scale) -> (+ mask) -> Softmax(last axis) -> MatMul(., v), in the
layouts the BERT and ViT exports produce, becomes one Attention layer. A scale applied to q before the
product (q * c) is absorbed as well."""

from __future__ import annotations

import itertools

import torch

from ..ir import Graph, Node, Tensor
from ..ops.kinds import DOMAIN, Kind
from .pattern import Any, Const, Match, Op, Rule, rewrite
from .util import follows, merged_origin, node, scalar_value


def _last_axis(n: Node, m: Match) -> bool:
    rank = n.inputs[0].rank
    return rank is not None and int(n.attrs.get("axis", -1)) % rank == rank - 1 and follows(n, 13)


def _pattern(q_scaled: bool, scaled: bool, masked: bool) -> Op:
    q = Op("Mul", Any("q"), Const("q_scale"), commute=True) if q_scaled else Any("q")
    scores = Op("MatMul", q, Any("k"))
    if scaled:
        scores = Op(("Div", "Mul"), scores, Const("scale"), name="scale_op")
    if masked:
        scores = Op("Add", scores, Any("mask"), commute=True)
    return Op("MatMul", Op("Softmax", scores, where=_last_axis), Any("v"))


def _scalar_over(c: Tensor, x: Tensor) -> float | None:
    """The value of constant `c` if it is one number that, multiplying `x`, leaves x's shape as it is."""
    value = scalar_value(c)
    if value is None or not x.is_static:
        return None
    try:
        keeps_shape = torch.broadcast_shapes(c.value.shape, x.shape) == x.shape  # type: ignore[union-attr,arg-type]
    except RuntimeError:
        return None
    return value if keeps_shape else None


def _attention(m: Match, graph: Graph) -> list[Node] | None:
    q, k, v = m["q"], m["k"], m["v"]
    if q.rank is None or q.rank < 2 or k.rank != q.rank or v.rank != q.rank or not (q.dtype == k.dtype == v.dtype):
        return None
    scale = 1.0
    if "scale" in m:
        c = _scalar_over(m["scale"], m["scale_op"].inputs[0])
        if c is None or c == 0:
            return None
        scale = 1.0 / c if m["scale_op"].op == "Div" else c
    if "q_scale" in m:
        c = _scalar_over(m["q_scale"], q)
        if c is None:
            return None
        scale *= c
    inputs = [q, k, v] + ([m["mask"]] if "mask" in m else [])
    if "mask" in m and m["mask"].dtype != q.dtype:
        return None
    root = m.root
    return [node(graph, Kind.ATTENTION, inputs, root.outputs, {"scale": scale, "k_transposed": 1}, name=root.name,
                 origin=merged_origin(*m.nodes()), domain=DOMAIN)]


RULES = [Rule("attention", _pattern(*flags), _attention) for flags in itertools.product((True, False), repeat=3)]


def run(graph: Graph, ctx) -> None:
    rewrite(graph, RULES, ctx.fired)
