"""Activation memory planning: one arena, offsets assigned from tensor lifetimes.

A tensor lives from the layer that writes it to the last layer that reads it (graph outputs to
the end). Tensors are placed largest first, each at the lowest aligned offset that overlaps no
already placed tensor whose lifetime it shares (the greedy-by-size heuristic). Tensors whose
shape is only known at run time are left out; the runtime allocates them when produced.
"""

from __future__ import annotations

from ..engine.plan import MemoryPlan
from ..ir import Graph, Tensor


def plan_memory(graph: Graph, alignment: int = 64) -> MemoryPlan:
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    tensors: dict[int, Tensor] = {}
    inputs = {id(t) for t in graph.inputs}
    for step, node in enumerate(graph.nodes):
        for t in node.outputs:
            if not t.is_constant and id(t) not in inputs and t.is_static and t.dtype is not None:
                tensors[id(t)] = t
                first[id(t)] = step
                last[id(t)] = step
        for t in node.inputs:
            if t is not None and id(t) in tensors:
                last[id(t)] = step
    end = len(graph.nodes)
    for t in graph.outputs:
        if id(t) in tensors:
            last[id(t)] = end

    def size(t: Tensor) -> int:
        return (t.nbytes + alignment - 1) // alignment * alignment

    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    offsets: dict[str, int] = {}
    arena = 0
    for key in sorted(tensors, key=lambda k: (-size(tensors[k]), first[k])):
        t = tensors[key]
        need, lo, hi = size(t), first[key], last[key]
        busy = sorted((off, off + sz) for off, sz, f, l in placed if f <= hi and lo <= l and sz)
        offset = 0
        for start, stop in busy:
            if offset + need <= start:
                break
            offset = max(offset, stop)
        placed.append((offset, need, lo, hi))
        offsets[t.name] = offset
        arena = max(arena, offset + need)
    return MemoryPlan(arena_size=arena, alignment=alignment, offsets=offsets)
