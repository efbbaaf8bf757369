"""Elimination: nodes that do nothing go, chains that can be one node become one.

  Identity, Dropout (inference), Cast to the same type, Expand to the same shape   -> removed
  Flatten / Squeeze / Unsqueeze with static shapes                                 -> Reshape
  Reshape(Reshape(x)), Transpose(Transpose(x))                                     -> one node
  Reshape to the same shape, Transpose by the identity permutation                 -> removed
  x * 1, x / 1, x + 0, x - 0, x ** 1 (when broadcasting changes nothing)          -> removed
  two nodes computing the same thing from the same inputs                          -> one (CSE)
"""

from __future__ import annotations

import torch

from ..ir import Graph, Node, subgraphs
from ..ops import REGISTRY
from .pattern import Any, Const, Match, Op, Rule, rewrite
from .util import constant, forward, node, scalar_value, same_type


def _drop(m: Match, graph: Graph) -> list[Node] | None:
    root = m.root
    return [] if forward(graph, root.outputs[0], root.inputs[0]) else None


def _drop_if_same(m: Match, graph: Graph) -> list[Node] | None:
    root = m.root
    return _drop(m, graph) if same_type(root.inputs[0], root.outputs[0]) else None


def _drop_dropout(m: Match, graph: Graph) -> list[Node] | None:
    root = m.root
    training = root.input(2)
    if training is not None and not (training.is_constant and not bool(training.value.reshape(-1)[0])):
        return None
    if len(root.outputs) > 1 and (graph.consumers().get(root.outputs[1]) or root.outputs[1] in graph.outputs):
        return None
    return _drop(m, graph)


def _reshape(graph: Graph, x, out, name: str, origin: tuple[str, ...]) -> list[Node] | None:
    if not (x.is_static and out.is_static):
        return None
    shape = constant(graph, torch.tensor(out.shape, dtype=torch.int64), f"{name}_shape")
    # NOTE: allowzero=1: the target shape is explicit, so a 0 in it is an empty dim, not "copy the input's".
    return [node(graph, "Reshape", [x, shape], [out], {"allowzero": 1}, name=name, origin=origin)]


def _as_reshape(m: Match, graph: Graph) -> list[Node] | None:
    root = m.root
    return _reshape(graph, root.inputs[0], root.outputs[0], root.name, root.origin)


def _merge_reshapes(m: Match, graph: Graph) -> list[Node] | None:
    root, inner = m.root, m["inner"]
    return _reshape(graph, inner.inputs[0], root.outputs[0], root.name, inner.origin + root.origin)


def _perm(n: Node) -> list[int]:
    rank = n.inputs[0].rank
    return list(n.attrs.get("perm") or reversed(range(rank)))  # type: ignore[arg-type]


def _merge_transposes(m: Match, graph: Graph) -> list[Node] | None:
    root, inner = m.root, m["inner"]
    if inner.inputs[0].rank is None:
        return None
    outer_perm, inner_perm = _perm(root), _perm(inner)
    perm = [inner_perm[p] for p in outer_perm]
    return [node(graph, "Transpose", [inner.inputs[0]], root.outputs, {"perm": perm}, name=root.name,
                 origin=inner.origin + root.origin, version=root.version)]


def _identity_transpose(m: Match, graph: Graph) -> list[Node] | None:
    root = m.root
    if root.inputs[0].rank is None or _perm(root) != list(range(root.inputs[0].rank)):
        return None
    return _drop(m, graph)


def _neutral(value: float):
    """x op c -> x, where the constant c is all `value` and broadcasting changes nothing."""

    def replace(m: Match, graph: Graph) -> list[Node] | None:
        root, x = m.root, m["x"]
        if scalar_value(m["c"]) != value or not same_type(x, root.outputs[0]):
            return None
        return [] if forward(graph, root.outputs[0], x) else None

    return replace


RULES = [
    Rule("remove_identity", Op("Identity", Any()), _drop),
    Rule("remove_dropout", Op("Dropout", any_inputs=True), _drop_dropout),
    Rule("remove_noop_cast", Op("Cast", Any()), _drop_if_same),
    Rule("remove_noop_expand", Op("Expand", Any(), Any()), _drop_if_same),
    Rule("shape_op_as_reshape", Op(("Flatten", "Squeeze", "Unsqueeze"), any_inputs=True), _as_reshape),
    Rule("merge_reshapes", Op("Reshape", Op("Reshape", Any(), Any(), name="inner"), Any()), _merge_reshapes),
    Rule("remove_noop_reshape", Op("Reshape", Any(), Any()), _drop_if_same),
    Rule("merge_transposes", Op("Transpose", Op("Transpose", Any(), name="inner")), _merge_transposes),
    Rule("remove_identity_transpose", Op("Transpose", Any()), _identity_transpose),
    Rule("remove_mul_one", Op("Mul", Any("x"), Const("c"), commute=True), _neutral(1.0)),
    Rule("remove_add_zero", Op("Add", Any("x"), Const("c"), commute=True), _neutral(0.0)),
    Rule("remove_sub_zero", Op("Sub", Any("x"), Const("c")), _neutral(0.0)),
    Rule("remove_div_one", Op("Div", Any("x"), Const("c")), _neutral(1.0)),
    Rule("remove_pow_one", Op("Pow", Any("x"), Const("c")), _neutral(1.0)),
]


def run(graph: Graph, ctx) -> None:
    rewrite(graph, RULES, ctx.fired)
    ctx.fired["cse"] += eliminate_common_subexpressions(graph)


def eliminate_common_subexpressions(graph: Graph) -> int:
    """Merge nodes with the same op, attributes and inputs (random ones excepted); and equal small constants."""
    merged = _merge_equal_constants(graph)
    seen: dict[tuple, Node] = {}
    for n in list(graph.nodes):
        if any(True for _ in subgraphs(n)) or REGISTRY.for_node(n).random:
            continue
        key = (n.op, n.domain, n.version, tuple(id(t) for t in n.inputs), len(n.outputs), _attr_key(n.attrs))
        first = seen.setdefault(key, n)
        if first is n:
            continue
        if all(forward(graph, mine, theirs) for mine, theirs in zip(n.outputs, first.outputs)):
            graph.nodes.remove(n)
            merged += 1
    return merged


def _merge_equal_constants(graph: Graph, limit: int = 1 << 12) -> int:
    canonical: dict[tuple, object] = {}
    merged = 0
    for t in graph.constants():
        v = t.value
        if v is None or v.numel() > limit:
            continue
        key = (t.dtype, tuple(v.shape), v.reshape(-1).tolist().__repr__())  # NOTE: int4 and int8 share storage
        first = canonical.setdefault(key, t)
        if first is not t and not any(o is t for o in graph.outputs):
            graph.replace_uses(t, first)  # type: ignore[arg-type]
            merged += 1
    return merged


def _attr_key(attrs: dict) -> str:
    return repr(sorted((k, v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in attrs.items()))
