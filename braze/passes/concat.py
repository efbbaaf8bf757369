"""Concat elimination: a Concat whose inputs are produced only for it is planned so that each producer
writes straight into its slice of the output (the memory plan makes the inputs views of it); the layer
left behind, ConcatInPlace, copies nothing."""

from __future__ import annotations

from ..ir import Graph
from ..ops.kinds import DOMAIN, Kind
from ..ops.views import is_view_op
from .util import node


def run(graph: Graph, ctx) -> None:
    consumers = graph.consumers()
    producer = graph.producers()
    graph_io = {id(t) for t in graph.inputs} | {id(t) for t in graph.outputs}
    claimed: set[int] = set()
    for i, n in enumerate(graph.nodes):
        if n.op != "Concat" or n.domain or not n.outputs[0].is_static:
            continue
        ins = n.inputs
        ok = len(ins) > 1 and len({id(t) for t in ins}) == len(ins)
        for t in ins:
            p = producer.get(t)
            ok = ok and p is not None and t.is_static and id(t) not in graph_io and id(t) not in claimed \
                and len(consumers.get(t, [])) == 1 and not (p.op == Kind.CONCAT_IN_PLACE or is_view_op(p))
        if not ok:
            continue
        claimed.update(id(t) for t in ins)
        axis = n.attrs["axis"] % n.outputs[0].rank
        graph.nodes[i] = node(graph, Kind.CONCAT_IN_PLACE, list(ins), n.outputs, {"axis": axis}, name=n.name,
                              origin=n.origin, domain=DOMAIN)
        producer[n.outputs[0]] = graph.nodes[i]  # NOTE: a concat feeding another is not placed in place twice
        ctx.fired["concat_in_place"] += 1
