"""Matrix-product fusions: MatMul/Gemm with a constant weight, its bias, activation (GELU in erf and
tanh forms included) and a residual Add become one FusedGemm layer: act(x @ w + b) + residual."""

from __future__ import annotations

from ..ir import Graph, Node
from ..ops.epilogue import ACTIVATION_OPS
from ..ops.kinds import DOMAIN, Kind
from .pattern import Any, Const, Match, Op, Rule, rewrite
from .util import activation_of, constant, merged_origin, node


def _weight_2d(n: Node, m: Match) -> bool:
    return n.inputs[1].is_constant and n.inputs[1].rank == 2


def _gemm_parts(g: Node) -> tuple:
    """(x, w, b, residual, activation, act_params) of a MatMul or FusedGemm."""
    if g.op == "MatMul":
        return g.inputs[0], g.inputs[1], None, None, "none", []
    return g.inputs[0], g.inputs[1], g.input(2), g.input(3), g.attrs.get("activation", "none"), g.attrs.get("act_params") or []


def _fused(graph: Graph, like: Node, out, x, w, b, residual, activation, params, origin) -> Node:
    inputs = [x, w, b, residual]
    while inputs[-1] is None:
        inputs.pop()
    return node(graph, Kind.FUSED_GEMM, inputs, [out], {"activation": activation, "act_params": params},
                name=like.name, origin=origin, domain=DOMAIN)


def _from_gemm(m: Match, graph: Graph) -> list[Node] | None:
    """ONNX Gemm with constant B (and C) -> FusedGemm with alpha, beta and the transposes folded in."""
    g = m.root
    a, b_in, c = g.inputs[0], g.inputs[1], g.input(2)
    if g.attrs.get("transA", 0) or a.rank != 2 or (c is not None and not c.is_constant):
        return None
    w = b_in.value.t() if g.attrs.get("transB", 0) else b_in.value
    alpha, beta = float(g.attrs.get("alpha", 1.0)), float(g.attrs.get("beta", 1.0))
    n_out = w.shape[1]
    bias = None
    if c is not None:
        if c.value.numel() != n_out or c.value.dim() > 2 or (c.value.dim() == 2 and c.value.shape[0] != 1):
            return None
        bias = constant(graph, (c.value.reshape(-1) * beta).to(w.dtype), f"{g.name}.bias")
    w_t = constant(graph, (w * alpha).contiguous() if alpha != 1.0 else w.contiguous(), f"{g.name}.weight")
    return [_fused(graph, g, g.outputs[0], a, w_t, bias, None, "none", [], g.origin)]


def _add_bias(m: Match, graph: Graph) -> list[Node] | None:
    add, mm, c = m.root, m["mm"], m["c"]
    x, w, b, residual, act, params = _gemm_parts(mm)
    n_out = w.shape[1]
    if b is not None or residual is not None or act != "none" or add.outputs[0].shape != mm.outputs[0].shape:
        return None
    if c.rank is None or c.rank > len(add.outputs[0].shape) or tuple(c.shape) != (1,) * (c.rank - 1) + (n_out,):
        return None  # a bias varies along the last axis only
    bias = constant(graph, c.value.reshape(-1).to(w.value.dtype), f"{mm.name}.bias")
    return [_fused(graph, mm, add.outputs[0], x, w, bias, None, "none", [], merged_origin(mm, add))]


def _add_activation(m: Match, graph: Graph) -> list[Node] | None:
    act_node, mm = m.root, m["mm"]
    spec = activation_of(act_node)
    x, w, b, residual, act, _ = _gemm_parts(mm)
    if spec is None or residual is not None or act != "none":
        return None
    return [_fused(graph, mm, act_node.outputs[0], x, w, b, None, spec[0], spec[1], merged_origin(mm, act_node))]


def _add_residual(m: Match, graph: Graph) -> list[Node] | None:
    add, mm, residual = m.root, m["mm"], m["residual"]
    x, w, b, old, act, params = _gemm_parts(mm)
    out = add.outputs[0]
    if old is not None or residual.shape != out.shape or mm.outputs[0].shape != out.shape or residual.dtype != out.dtype:
        return None
    return [_fused(graph, mm, out, x, w, b, residual, act, params, merged_origin(mm, add))]


def _mm(name: str = "mm") -> Op:
    return Op(("MatMul", Kind.FUSED_GEMM), any_inputs=True, name=name, where=_weight_2d)


RULES = [
    Rule("gemm_as_fused_gemm", Op("Gemm", any_inputs=True, where=lambda n, m: n.inputs[1].is_constant), _from_gemm),
    Rule("matmul_bias", Op("Add", _mm(), Const("c"), commute=True), _add_bias),
    Rule("matmul_activation", Op(ACTIVATION_OPS, _mm(), partial=True), _add_activation),
    Rule("matmul_residual", Op("Add", _mm(), Any("residual"), commute=True), _add_residual),
]


def run(graph: Graph, ctx) -> None:
    rewrite(graph, RULES, ctx.fired)
