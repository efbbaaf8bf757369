"""Constant folding: a node whose inputs are all constants (or whose outputs' values are known from
static shapes, as Shape's are) is evaluated once at build time and replaced by its results.

Control-flow nodes fold too (their outer reads are inputs like any other), unless a subgraph draws
random numbers; an If whose condition alone is known is replaced by its chosen branch. Sequences and
optionals are never constants."""

from __future__ import annotations

from ..ir import DType, Graph, Node, subgraphs
from ..ops import REGISTRY, infer_shapes
from ..ops.control_flow import inline_if
from ..ops.opdef import input_dtypes
from ..ops.subgraph import has_random

# Outputs larger than this many elements stay computed at run time.
FOLD_LIMIT = 1 << 24


def run(graph: Graph, ctx) -> None:
    known = infer_shapes(graph)
    for node in list(graph.nodes):
        opdef = REGISTRY.for_node(node)
        if opdef.random or has_random(list(subgraphs(node))) or not all(t.is_tensor for t in node.outputs):
            continue
        if all(id(t) in known for t in node.outputs):
            values = [known[id(t)] for t in node.outputs]
        elif _foldable(node):
            args = [None if t is None else t.value for t in node.inputs]
            values = opdef.run(args, node.attrs, len(node.outputs), input_dtypes(node))
        else:
            continue
        for t, v in zip(node.outputs, values):
            t.value = v.detach().contiguous()
            if t.dtype is None or t.dtype.torch != v.dtype:  # NOTE: an emulated type keeps its inferred dtype
                t.dtype = DType.from_torch(v.dtype)
            t.shape = tuple(v.shape)
            known[id(t)] = t.value
        graph.nodes.remove(node)
        ctx.fired["fold_constants"] += 1
    if _inline_ifs(graph, known, ctx):
        run(graph, ctx)  # the chosen branches' nodes fold in turn


def _inline_ifs(graph: Graph, known: dict, ctx) -> bool:
    """Replace each If whose condition is known by its chosen branch (an input fixed by `constants=`)."""
    inlined = False
    for node in list(graph.nodes):
        if node.op != "If" or node.domain != "" or id(node.inputs[0]) not in known:
            continue
        nodes = inline_if(node, known[id(node.inputs[0])], set(graph.tensors()) | {n.name for n in graph.nodes})
        if nodes is not None:
            at = graph.nodes.index(node)
            graph.nodes[at:at + 1] = nodes
            ctx.fired["inline_if"] += 1
            inlined = True
    return inlined


def _foldable(node: Node) -> bool:
    if not all(t is None or t.is_constant for t in node.inputs):
        return False
    return all(t.is_static and t.numel <= FOLD_LIMIT for t in node.outputs)
