"""Recognition of decomposed subgraphs, as exporters emit them, back into single ops:

  LayerNormalization   ReduceMean, Sub, Pow (or Mul), ReduceMean, Add(eps), Sqrt, Div; then a constant
                       Mul (gamma) and Add (beta) after any LayerNormalization are absorbed into it
  Gelu                 x * 0.5 * (1 + erf(x / sqrt 2)) and the tanh approximation (cube as Pow or x*x*x),
                       in the usual orders
  SiLU                 x * sigmoid(x)
  HardSwish            x * HardSigmoid(x; 1/6, 1/2) and x * Clip(x + 3, 0, 6) / 6
  Softmax              exp(x - max(x)) / sum(exp(x - max(x))) over one axis
"""

from __future__ import annotations

import math

import torch

from ..ir import Graph, Node
from ..ops.kinds import DOMAIN, Kind
from .pattern import Any, Const, Match, Op, Rule, rewrite
from .util import activation_of, constant, merged_origin, node, same_type, scalar_value


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

def _layer_norm_pattern() -> Op:
    mean = Op("ReduceMean", Any("x"), partial=True, where=_trailing, name="mean")
    centered = Op("Sub", Any("x"), mean, name="d", one_use=False)
    square = Op(("Pow", "Mul"), centered, Any("p"), name="sq")
    var = Op("ReduceMean", square, partial=True, where=_trailing, name="var")
    return Op("Div", centered, Op("Sqrt", Op("Add", var, Const("eps"), commute=True)))


def _layer_norm(m: Match, graph: Graph) -> list[Node] | None:
    """(x - mean) / sqrt(var + eps) -> LayerNormalization(x, ones); scale and bias are absorbed after."""
    x, sq, p, root = m["x"], m["sq"], m["p"], m.root
    if sq.op == "Pow" and scalar_value(p) != 2.0 or sq.op == "Mul" and p is not m["d"].outputs[0]:
        return None
    axes = reduce_axes(m["mean"])
    eps = scalar_value(m["eps"])
    if axes != reduce_axes(m["var"]) or eps is None or not same_type(x, root.outputs[0]):
        return None
    scale = constant(graph, torch.ones(x.shape[axes[0]:], dtype=x.dtype.torch), f"{root.name}.scale")
    attrs = {"axis": axes[0], "epsilon": eps, "stash_type": 1}
    return [node(graph, "LayerNormalization", [x, scale], root.outputs, attrs, name=root.name,
                 origin=merged_origin(*m.nodes()))]


def _affine_layer_norm(n: Node, m: Match) -> bool:
    scale, bias = n.input(1), n.input(2)
    return n.domain in ("", "ai.onnx") and n.inputs[0].rank is not None and scale is not None \
        and scale.is_constant and (bias is None or bias.is_constant)


def _over_normalized(value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
    """`value` broadcast to the normalized dims `shape`, or None if it varies along another dim."""
    while value.dim() > len(shape) and value.shape[0] == 1:
        value = value[0]
    try:
        return torch.broadcast_to(value, shape).contiguous()
    except RuntimeError:
        return None


def _layer_norm_affine(m: Match, graph: Graph) -> list[Node] | None:
    """LayerNormalization(x, s, b) * c -> (x, s*c, b*c); LayerNormalization(x, s, b) + c -> (x, s, b+c)."""
    root, ln = m.root, m["ln"]
    x = ln.inputs[0]
    shape = tuple(x.shape[int(ln.attrs.get("axis", -1)) % x.rank:])
    if not same_type(ln.outputs[0], root.outputs[0]):
        return None
    values = [_over_normalized(t.value, shape) for t in (ln.inputs[1], m["c"])]
    if ln.input(2) is not None:
        values.append(_over_normalized(ln.inputs[2].value, shape))
    if any(v is None for v in values):
        return None
    scale, c, *bias = (v.to(x.dtype.torch) for v in values)  # type: ignore[union-attr]
    if root.op == "Mul":
        scale, bias = scale * c, [b * c for b in bias]
    else:
        bias = [bias[0] + c] if bias else [c]
    params = [constant(graph, scale, f"{ln.name}.scale")] + [constant(graph, b, f"{ln.name}.bias") for b in bias]
    return [node(graph, "LayerNormalization", [x, *params], root.outputs, dict(ln.attrs), name=ln.name,
                 origin=merged_origin(ln, root), version=ln.version)]


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
    cubes = [Op("Pow", Any("x"), Const("three")),
             Op("Mul", Any("x"), Op("Mul", Any("x"), Any("x")), commute=True)]
    patterns = []
    for cube in cubes:
        inner = Op("Mul", Op("Add", Any("x"), Op("Mul", cube, Const("k"), commute=True), commute=True), Const("s"),
                   commute=True)
        one_plus_tanh = Op("Add", Op("Tanh", inner), Const("one"), commute=True)
        patterns += [
            Op("Mul", Op("Mul", Any("x"), one_plus_tanh, commute=True), Const("half"), commute=True),
            Op("Mul", Op("Mul", Any("x"), Const("half"), commute=True), one_plus_tanh, commute=True),
        ]
    return patterns


def _gelu_tanh(m: Match, graph: Graph) -> list[Node] | None:
    checks = [("three", 3.0), ("k", 0.044715), ("s", math.sqrt(2 / math.pi)), ("one", 1.0), ("half", 0.5)]
    if not all(_near(scalar_value(m[key]), value) for key, value in checks if key in m):
        return None
    return _gelu(m, graph, "tanh")


def _gelu(m: Match, graph: Graph, approximate: str) -> list[Node] | None:
    return _unary(m, graph, "Gelu", {"approximate": approximate})


def _unary(m: Match, graph: Graph, op: str, attrs: dict | None = None, domain: str = "") -> list[Node] | None:
    """The matched subgraph as one `op` of m["x"]; declined when constants in it broadcast x to another shape."""
    root, x = m.root, m["x"]
    if not same_type(x, root.outputs[0]):
        return None
    return [node(graph, op, [x], root.outputs, attrs, name=root.name, origin=merged_origin(*m.nodes()), domain=domain)]


# -- SiLU, HardSwish ---------------------------------------------------------------------------------------

def _silu(m: Match, graph: Graph) -> list[Node] | None:
    return _unary(m, graph, Kind.SILU, domain=DOMAIN)


def _hardswish_from_hardsigmoid(m: Match, graph: Graph) -> list[Node] | None:
    hs = m["hs"]
    if not (_near(hs.attrs.get("alpha", 0.2), 1 / 6) and _near(hs.attrs.get("beta", 0.5), 0.5)):
        return None
    return _hardswish(m, graph)


def _hardswish_from_clip(m: Match, graph: Graph) -> list[Node] | None:
    spec = activation_of(m["clip"])
    if spec is None or not (_near(scalar_value(m["three"]), 3.0) and _near(scalar_value(m["six"]), 6.0)
                            and spec[1][0] == 0.0 and _near(spec[1][1], 6.0)):
        return None
    return _hardswish(m, graph)


def _hardswish(m: Match, graph: Graph) -> list[Node] | None:
    return _unary(m, graph, "HardSwish")


# -- Softmax ---------------------------------------------------------------------------------------------

def _softmax_pattern(stable: bool) -> Op:
    arg = Op("Sub", Any("x"), Op("ReduceMax", Any("x"), partial=True, name="max"), name="shift") if stable else Any("x")
    e = Op("Exp", arg, name="e", one_use=False)
    return Op("Div", e, Op("ReduceSum", e, partial=True, name="sum"))


def _softmax(m: Match, graph: Graph) -> list[Node] | None:
    axes = reduce_axes(m["sum"])
    if axes is None or len(axes) != 1 or ("max" in m and reduce_axes(m["max"]) != axes):
        return None
    return _unary(m, graph, "Softmax", {"axis": axes[0]})


RULES = [
    Rule("layer_norm", _layer_norm_pattern(), _layer_norm),
    Rule("layer_norm_scale", Op("Mul", Op("LayerNormalization", any_inputs=True, name="ln", where=_affine_layer_norm),
                                   Const("c"), commute=True), _layer_norm_affine),
    Rule("layer_norm_bias", Op("Add", Op("LayerNormalization", any_inputs=True, name="ln", where=_affine_layer_norm),
                                  Const("c"), commute=True), _layer_norm_affine),
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
