"""An independent check of an activation memory plan against the layer order that uses it.

It recomputes lifetimes from the graph (a view's readers keep the tensor it views alive; a graph
output lives to the end) and asserts that every planned tensor lies inside the arena, that tensors
alive at the same time never share a byte, and that a ConcatInPlace input sharing its output's
memory sits exactly at its slice, with the output's strides.
"""

from __future__ import annotations

from braze.engine.plan import MemoryPlan
from braze.ir import Graph, Tensor, contiguous_strides


def byte_range(t: Tensor, offset: int, strides: list[int]) -> tuple[int, int]:
    """[first, last + 1) bytes a tensor with these element strides covers."""
    if t.numel == 0:
        return offset, offset
    span = 1 + sum((d - 1) * s for d, s in zip(t.shape, strides))  # type: ignore[arg-type]
    return offset, offset + span * t.dtype.itemsize  # type: ignore[union-attr]


def check_memory_plan(graph: Graph, memory: MemoryPlan, view_layers: set[str] | frozenset[str]) -> None:
    tensors = graph.tensors()
    strides = {name: memory.strides.get(name) or contiguous_strides(tensors[name].shape) for name in memory.offsets}
    ranges = {name: byte_range(tensors[name], offset, strides[name]) for name, offset in memory.offsets.items()}
    for name, (start, stop) in ranges.items():
        assert 0 <= start <= stop <= memory.arena_size, f"{name} at bytes [{start}, {stop}) is outside the arena"

    storage: dict[str, str] = {}  # tensor -> the tensor whose memory it is
    for node in graph.nodes:
        if node.name in view_layers:
            storage.update((t.name, node.inputs[0].name) for t in node.outputs)  # type: ignore[union-attr]
        elif node.op == "ConcatInPlace":
            out = node.outputs[0]
            start = 0
            for t in node.inputs:
                assert t is not None
                if out.name in ranges and t.name in ranges and _overlap(ranges[t.name], ranges[out.name]):
                    axis = node.attrs["axis"]
                    slice_offset = memory.offsets[out.name] + start * strides[out.name][axis] * t.dtype.itemsize
                    assert (memory.offsets[t.name], strides[t.name]) == (slice_offset, strides[out.name]), \
                        f"{t.name} shares {out.name}'s memory but is not at its slice"
                    storage[t.name] = out.name
                start += t.shape[node.attrs["axis"]]

    def root(name: str) -> str:
        while name in storage:
            name = storage[name]
        return name

    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for step, node in enumerate(graph.nodes):
        for t in node.outputs:
            first.setdefault(root(t.name), step)
            last[root(t.name)] = max(last.get(root(t.name), step), step)
        for t in node.inputs:
            if t is not None and root(t.name) in first:
                last[root(t.name)] = step
    for t in graph.outputs:
        if root(t.name) in first:
            last[root(t.name)] = len(graph.nodes)

    names = sorted(ranges)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ra, rb = root(a), root(b)
            if ra == rb or not (first[ra] <= last[rb] and first[rb] <= last[ra]):
                continue
            assert not _overlap(ranges[a], ranges[b]), \
                f"{a} {ranges[a]} and {b} {ranges[b]} overlap while both are alive"


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]
