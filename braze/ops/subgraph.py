"""Subgraphs of control-flow ops (If, Loop, Scan, SequenceMap): their outer reads, types and runs.

A subgraph may read tensors of the graphs around it (`Graph.outer`). The node that owns it takes
those reads as inputs after its own, so that everything reasoning about the enclosing graph
(ordering, constant folding, dead-node removal, tensor lifetimes, the engine's slots) sees them
as ordinary reads. Their order is fixed by `outer_reads`: the node's subgraphs by attribute name,
each one's outer tensors in order, every tensor once. The reference implementation receives their
values in that order and hands them to `run_graph` by tensor.

Passes edit the enclosing graph without looking inside subgraphs; `bind_outer` (run by each rule
of shape inference, so after every pass) points the subgraphs at whatever tensors the node reads
now, so the two never drift apart.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..errors import BrazeError, ExecutionError, ShapeError
from ..ir import OPTIONAL_SEQUENCE, OPTIONAL_TENSOR, SEQUENCE, TENSOR, Graph, Node, Tensor, subgraphs
from .evaluate import device_of, run_graph
from .infer import Inferred, describe_node, infer_graph

OPTIONAL_OF = {TENSOR: OPTIONAL_TENSOR, SEQUENCE: OPTIONAL_SEQUENCE}  # the optional kind of each value kind


def graph_attrs(attrs: Mapping[str, Any]) -> list[Graph]:
    """The subgraph-valued attributes, by attribute name."""
    return [attrs[k] for k in sorted(attrs) if isinstance(attrs[k], Graph)]


def outer_reads(graphs: Sequence[Graph]) -> list[Tensor]:
    """The enclosing-scope tensors `graphs` read, each once, in order: the trailing inputs of their node."""
    found: dict[int, Tensor] = {}
    for g in graphs:
        for t in g.outer:
            found.setdefault(id(t), t)
    return list(found.values())


def bind_outer(node: Node, values: Sequence[torch.Tensor | None]) -> tuple[list[Any], dict[int, torch.Tensor]]:
    """Make the node's subgraphs read exactly the tensors its trailing inputs name now. `values` (the
    inputs' build-time values) align with node.inputs; returns them aligned with the node's inputs
    after binding, and the known values of the outer reads, by tensor."""
    given = {id(t): v for t, v in zip(node.inputs, values) if t is not None and v is not None}
    graphs = graph_attrs(node.attrs)
    reads = outer_reads(graphs)
    own = node.inputs[:len(node.inputs) - len(reads)]
    for inner, now in zip(reads, node.inputs[len(own):]):
        if inner is not now and now is not None:
            for g in graphs:
                _rebind(g, inner, now)
    node.inputs = own + outer_reads(graphs)  # type: ignore[operator]
    aligned = [None if t is None else given.get(id(t)) for t in node.inputs]
    known = {id(t): v for t, v in zip(node.inputs[len(own):], aligned[len(own):]) if v is not None}
    return aligned, known


def n_own_inputs(node: Node) -> int:
    """How many of the node's inputs are its own, before the outer reads."""
    return len(node.inputs) - len(outer_reads(graph_attrs(node.attrs)))


def _rebind(graph: Graph, old: Tensor, new: Tensor) -> None:
    if not any(t is old for t in graph.outer):
        return
    graph.replace_uses(old, new)
    outer: dict[int, Tensor] = {}
    for t in graph.outer:
        t = new if t is old else t
        outer.setdefault(id(t), t)
    graph.outer = list(outer.values())


def split_args(args: Sequence[Any], n_own: int, graphs: Sequence[Graph]) -> tuple[list[Any], dict[int, Any]]:
    """A reference's positional arguments as (its own inputs, padded to `n_own`; outer values by tensor).

    NOTE: OpDef.run drops trailing None arguments, and an empty optional is None: they are put back."""
    reads = outer_reads(graphs)
    padded = list(args) + [None] * max(0, n_own + len(reads) - len(args))
    return padded[:n_own], {id(t): v for t, v in zip(reads, padded[n_own:])}


def run_body(graph: Graph, inputs: Sequence[Any], outer: Mapping[int, Any], what: str) -> list[Any]:
    """Run a subgraph (`what`: "body", "then branch", ...); an error inside it says where it arose."""
    device = device_of(list(inputs) + list(outer.values()))
    try:
        return run_graph(graph, inputs, outer, device)
    except BrazeError as e:
        raise type(e)(f"in its {what}: {e}") from e
    except Exception as e:
        raise ExecutionError(f"in its {what}: {(str(e).strip().splitlines() or [type(e).__name__])[0]}") from e


# -- types -----------------------------------------------------------------------------------------

def infer_body(node: Node, graph: Graph, inputs: Sequence[Inferred], known: Mapping[int, torch.Tensor],
               what: str) -> list[Inferred]:
    """Type `graph`'s inputs as given, infer its nodes, and return its outputs' types (with known values)."""
    from . import REGISTRY

    if len(inputs) != len(graph.inputs):
        raise ShapeError(f"{describe_node(node)}: its {what} takes {len(graph.inputs)} inputs, the node gives "
                         f"{len(inputs)}")
    found = dict(known)
    for t, given in zip(graph.inputs, inputs):
        t.dtype, t.shape, t.kind = given.dtype, given.shape, given.kind
        if given.value is not None:
            found[id(t)] = given.value
        else:
            found.pop(id(t), None)
    try:
        found = infer_graph(graph, REGISTRY.for_node, found)
    except BrazeError as e:
        raise type(e)(f"in the {what} of node {node.name!r} ({node.op}): {e}") from e
    results = []
    for t in graph.outputs:
        if t.dtype is None:
            raise ShapeError(f"{describe_node(node)}: output {t.name!r} of its {what} has no known type")
        results.append(Inferred(t.dtype, t.shape, found.get(id(t)), t.kind))
    return results


def merge(a: Inferred, b: Inferred, where: str) -> Inferred:
    """A type that covers both: dims that differ become unknown, a value and its optional an optional."""
    if a.dtype != b.dtype:
        raise ShapeError(f"{where}: one is {a.dtype}, the other {b.dtype}")
    kind = a.kind
    if a.kind != b.kind:
        kind = OPTIONAL_OF.get(a.kind, a.kind)
        if kind != OPTIONAL_OF.get(b.kind, b.kind):
            raise ShapeError(f"{where}: one is a {a.kind.replace('_', ' ')}, the other a {b.kind.replace('_', ' ')}")
    if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
        shape = None
    else:
        shape = tuple(x if x == y else None for x, y in zip(a.shape, b.shape))
    value = a.value if a.value is not None and b.value is not None and torch.equal(a.value, b.value) else None
    return Inferred(a.dtype, shape, value, kind)


def same_type(a: Inferred, b: Inferred) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.kind == b.kind


def has_random(graphs: Sequence[Graph]) -> bool:
    """Whether any node in `graphs` (nested subgraphs included) draws random numbers."""
    from . import REGISTRY

    for g in graphs:
        for n in g.nodes:
            if REGISTRY.for_node(n).random or has_random(list(subgraphs(n))):
                return True
    return False


def element(t: Inferred) -> Inferred:
    """The type of one tensor of a sequence."""
    return Inferred(t.dtype, t.shape)


def as_sequence(t: Inferred) -> Inferred:
    return Inferred(t.dtype, t.shape, kind=SEQUENCE)
