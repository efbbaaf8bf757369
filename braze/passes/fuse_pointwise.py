"""Pointwise fusion: a connected chain (or tree) of elementwise ops whose intermediate results have
no other reader becomes one Pointwise node carrying the chain as its body, so a backend can run it
as one kernel: one read of each input and one write of the result."""

from __future__ import annotations

from ..ir import Graph, Node, Tensor
from ..ops import REGISTRY
from ..ops.kinds import DOMAIN, Kind
from .util import merged_origin, node


def is_elementwise(n: Node) -> bool:
    """An elementwise node (its op's `elementwise` trait) a generated kernel can run: one static output, no
    emulated types (int4, ...)."""
    opdef = REGISTRY.find(n)
    return opdef is not None and opdef.elementwise and all(t.is_static for t in n.outputs) \
        and len(n.outputs) == 1 and not any(t is not None and t.dtype.emulated for t in n.inputs + n.outputs)


def run(graph: Graph, ctx) -> None:
    consumers = graph.consumers()
    outputs = {id(t) for t in graph.outputs}
    producer = graph.producers()
    group_of: dict[int, list[Node]] = {}
    for n in graph.nodes:
        if not is_elementwise(n):
            continue
        group = [n]
        for t in n.inputs:
            p = producer.get(t) if t is not None else None
            if p is None or id(p) not in group_of or id(t) in outputs or len(consumers.get(t, [])) != 1:
                continue
            absorbed = group_of[id(p)]
            if absorbed is not group:
                group = absorbed + [m for m in group if m not in absorbed]
        for m in group:
            group_of[id(m)] = group
    seen: set[int] = set()
    for group in list(group_of.values()):
        if id(group) in seen or len(group) < 2:
            continue
        seen.add(id(group))
        _fuse(graph, group)
        ctx.fired["pointwise"] += 1


def _fuse(graph: Graph, group: list[Node]) -> None:
    members = {id(n) for n in group}
    inside = {id(t) for n in group for t in n.outputs}
    sink = group[-1]
    external: list[Tensor] = []
    for n in group:
        for t in n.inputs:
            if t is not None and id(t) not in inside and not t.is_constant and all(t is not e for e in external):
                external.append(t)
    body = _body(group, external, sink)
    position = max(graph.nodes.index(n) for n in group)
    fused = node(graph, Kind.POINTWISE, list(external), list(sink.outputs), {"body": body}, name=sink.name,
                 origin=merged_origin(*group), domain=DOMAIN)
    graph.nodes[position:position + 1] = [fused]
    graph.nodes = [n for n in graph.nodes if id(n) not in members]


def _body(group: list[Node], external: list[Tensor], sink: Node) -> Graph:
    mapping: dict[int, Tensor] = {}

    def copy(t: Tensor | None) -> Tensor | None:
        if t is None or t.is_constant:
            return t
        if id(t) not in mapping:
            mapping[id(t)] = Tensor(t.name, t.dtype, t.shape)
        return mapping[id(t)]

    inputs = [copy(t) for t in external]
    nodes = [Node(n.op, [copy(t) for t in n.inputs], [copy(t) for t in n.outputs], dict(n.attrs), n.name, n.domain,
                  n.version, n.origin) for n in group]
    return Graph(inputs=inputs, outputs=[copy(sink.outputs[0])], nodes=nodes, name=f"{sink.name}_body")  # type: ignore[list-item]
