"""Recognition of decomposed subgraphs, as exporters emit them, back into single ops:

  LayerNormalization   ReduceMean, Sub, Pow (or Mul), ReduceMean, Add(eps), Sqrt, Div, Mul(gamma), Add(beta)
  Gelu                 x * 0.5 * (1 + erf(x / sqrt 2)) and the tanh approximation, in the usual orders
  SiLU                 x * sigmoid(x)
  HardSwish            x * HardSigmoid(x; 1/6, 1/2) and x * Clip(x + 3, 0, 6) / 6
  Softmax              exp(x - max(x)) / sum(exp(x - max(x))) over one axis
"""

from __future__ import annotations

import math

import torch

from ..ir import Graph, Node
from ..ops.fused import DOMAIN
from .pattern import Any, Const, Match, Op, Rule, rewrite
from .util import constant, merged_origin, node, scalar_value


def _near(value: float | None, target: float, rel: float = 1e-3) -> bool:
    return value is not None and abs(value - target) <= rel * abs(target)


def reduce_axes(n: Node) -> list[int] | None:
    """The axes a Reduce* node reduces over (normalized), if static and keepdims=1."""
    if not n.attrs.get("keepdims", 1) or n.inputs[0].rank is None:
        return None
    rank = n.inputs[0].rank
    axes = n.attrs.get("axes")
    if axes is None and n.input(1) is not None:
        if not n.inputs[1].is_constant:
            return None
        axes = n.inputs[1].value.reshape(-1).tolist()
    if axes is None:
        return None
    return sorted(int(a) % rank for a in axes)


def _trailing(n: Node, m: Match) -> bool:
    axes = reduce_axes(n)
    rank = n.inputs[0].rank
    return bool(axes) and axes == list(range(axes[0], rank))


# -- LayerNormalization ------------------------------------------------------------------------------

def _layer_norm_pattern(with_beta: bool) -> Op:
    mean = Op("ReduceMean", Any("x"), partial=True, where=_trailing, name="mean")
    centered = Op("Sub", Any("x"), mean, name="d", one_use=False)
    square = Op(("Pow", "Mul"), centered, Any("p"), name="sq")
    var = Op("ReduceMean", square, partial=True, where=_trailing, name="var")
    std = Op("Sqrt", Op("Add", var, Const("eps"), commute=True))
    scaled = Op("Mul", Op("Div", centered, std), Const("gamma"), commute=True)
    return Op("Add", scaled, Const("beta"), commute=True) if with_beta else scaled


def _layer_norm(m: Match, graph: Graph) -> list[Node] | None:
    x, sq = m["x"], m["sq"]
    p = m["p"]
    if sq.op == "Pow" and scalar_value(p) != 2.0 or sq.op == "Mul" and p is not m["d"].outputs[0]:
        return None
    axes = reduce_axes(m["mean"])
    if axes != reduce_axes(m["var"]) or x.shape is None or scalar_value(m["eps"]) is None:
        return None
    norm_shape = tuple(x.shape[axes[0]:])
    params = []
    for key in ("gamma", "beta"):
        if key not in m:
            continue
        value = m[key].value
        try:
            value = torch.broadcast_to(value, norm_shape).contiguous()
        except RuntimeError:
            return None
        if value.dim() > len(norm_shape):
            return None
        params.append(constant(graph, value.to(x.dtype.torch), f"{m.root.name}.{key}"))
    root = m.root
    attrs = {"axis": axes[0], "epsilon": scalar_value(m["eps"]), "stash_type": 1}
    return [node(graph, "LayerNormalization", [x, *params], root.outputs, attrs, name=root.name,
                 origin=merged_origin(*m.nodes()))]


# -- Gelu ----------------------------------------------------------------------------------------------

def _erf_arg() -> Op:
    return Op(("Div", "Mul"), Any("x"), Const("c"), name="scale_x")


def _gelu_erf_patterns() -> list[Op]:
    one_plus_erf = Op("Add", Op("Erf", _erf_arg()), Const("one"), commute=True)
    return [
        Op("Mul", Op("Mul", Any("x"), one_plus_erf, commute=True), Const("half"), commute=True),
        Op("Mul", Op("Mul", Any("x"), Const("half"), commute=True), one_plus_erf, commute=True),
    ]


def _gelu_erf(m: Match, graph: Graph) -> list[Node] | None:
    c = scalar_value(m["c"])
    expected = math.sqrt(2.0) if m["scale_x"].op == "Div" else 1 / math.sqrt(2.0)
    if not (_near(c, expected) and _near(scalar_value(m["one"]), 1.0) and _near(scalar_value(m["half"]), 0.5)):
        return None
    return _gelu(m, graph, "none")


def _gelu_tanh_patterns() -> list[Op]:
    cube = Op("Pow", Any("x"), Const("three"))
    inner = Op("Mul", Op("Add", Any("x"), Op("Mul", cube, Const("k"), commute=True), commute=True), Const("s"),
               commute=True)
    one_plus_tanh = Op("Add", Op("Tanh", inner), Const("one"), commute=True)
    return [
        Op("Mul", Op("Mul", Any("x"), one_plus_tanh, commute=True), Const("half"), commute=True),
        Op("Mul", Op("Mul", Any("x"), Const("half"), commute=True), one_plus_tanh, commute=True),
    ]


def _gelu_tanh(m: Match, graph: Graph) -> list[Node] | None:
    checks = [("three", 3.0), ("k", 0.044715), ("s", math.sqrt(2 / math.pi)), ("one", 1.0), ("half", 0.5)]
    if not all(_near(scalar_value(m[key]), value) for key, value in checks):
        return None
    return _gelu(m, graph, "tanh")


def _gelu(m: Match, graph: Graph, approximate: str) -> list[Node]:
    root = m.root
    return [node(graph, "Gelu", [m["x"]], root.outputs, {"approximate": approximate}, name=root.name,
                 origin=merged_origin(*m.nodes()))]


# -- SiLU, HardSwish ---------------------------------------------------------------------------------------

def _silu(m: Match, graph: Graph) -> list[Node] | None:
    root = m.root
    return [node(graph, "SiLU", [m["x"]], root.outputs, name=root.name, origin=merged_origin(*m.nodes()),
                 domain=DOMAIN)]


def _hardswish_from_hardsigmoid(m: Match, graph: Graph) -> list[Node] | None:
    hs = m["hs"]
    if not (_near(hs.attrs.get("alpha", 0.2), 1 / 6) and _near(hs.attrs.get("beta", 0.5), 0.5)):
        return None
    return _hardswish(m, graph)


def _hardswish_from_clip(m: Match, graph: Graph) -> list[Node] | None:
    clip = m["clip"]
    bounds = [scalar_value(t) if t is not None else None for t in (clip.input(1), clip.input(2))]
    if clip.version < 11:
        bounds = [clip.attrs.get("min"), clip.attrs.get("max")]
    if not (_near(scalar_value(m["three"]), 3.0) and _near(scalar_value(m["six"]), 6.0)
            and bounds[0] == 0.0 and _near(bounds[1], 6.0)):
        return None
    return _hardswish(m, graph)


def _hardswish(m: Match, graph: Graph) -> list[Node]:
    root = m.root
    return [node(graph, "HardSwish", [m["x"]], root.outputs, name=root.name, origin=merged_origin(*m.nodes()))]


# -- Softmax ---------------------------------------------------------------------------------------------

def _softmax_pattern(stable: bool) -> Op:
    arg = Op("Sub", Any("x"), Op("ReduceMax", Any("x"), partial=True, name="max"), name="shift") if stable else Any("x")
    e = Op("Exp", arg, name="e", one_use=False)
    return Op("Div", e, Op("ReduceSum", e, partial=True, name="sum"))


def _softmax(m: Match, graph: Graph) -> list[Node] | None:
    axes = reduce_axes(m["sum"])
    if axes is None or len(axes) != 1 or ("max" in m and reduce_axes(m["max"]) != axes):
        return None
    root = m.root
    return [node(graph, "Softmax", [m["x"]], root.outputs, {"axis": axes[0]}, name=root.name,
                 origin=merged_origin(*m.nodes()))]


RULES = [
    Rule("layer_norm", _layer_norm_pattern(with_beta=True), _layer_norm),
    Rule("layer_norm_no_beta", _layer_norm_pattern(with_beta=False), _layer_norm),
    *[Rule("gelu_erf", p, _gelu_erf) for p in _gelu_erf_patterns()],
    *[Rule("gelu_tanh", p, _gelu_tanh) for p in _gelu_tanh_patterns()],
    Rule("silu", Op("Mul", Any("x"), Op("Sigmoid", Any("x")), commute=True), _silu),
    Rule("hardswish", Op("Mul", Any("x"), Op("HardSigmoid", Any("x"), name="hs"), commute=True),
         _hardswish_from_hardsigmoid),
    Rule("hardswish", Op("Div", Op("Mul", Any("x"), Op("Clip", Op("Add", Any("x"), Const("three"), commute=True),
                                                        partial=True, name="clip"), commute=True), Const("six")),
         _hardswish_from_clip),
    Rule("softmax", _softmax_pattern(stable=True), _softmax),
    Rule("softmax", _softmax_pattern(stable=False), _softmax),
]


def run(graph: Graph, ctx) -> None:
    rewrite(graph, RULES, ctx.fired)
