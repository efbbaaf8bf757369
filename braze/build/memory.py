"""Activation memory planning: one arena, offsets assigned from tensor lifetimes.

A tensor lives from the layer that writes it to the last layer that reads it (graph outputs to
the end). Two kinds of tensors share memory with another:
  - outputs of view layers (Reshape, Split, ... run by a view tactic) are views of their input at
    run time: they get no memory, and their input lives as long as any view of it is read;
  - inputs of a ConcatInPlace are placed inside the concat's output, each at its slice (with the
    output's strides), so their producers write the concatenated result directly.
The remaining tensors are placed largest first, each at the lowest aligned offset that overlaps no
placed tensor whose lifetime it shares (greedy by size). Tensors whose shape is only known at run
time are left out, as are sequences and optionals (never static); the runtime allocates them when
produced. A control-flow node lists what its subgraphs read as inputs, so those live long enough.
"""

from __future__ import annotations

from ..engine.plan import MemoryPlan
from ..ir import Graph, Node, Tensor, contiguous_strides
from ..ops import REGISTRY
from ..ops.kinds import Kind


def plan_memory(graph: Graph, alignment: int = 64, view_layers: frozenset[str] = frozenset(),
                allocating_layers: frozenset[str] = frozenset()) -> MemoryPlan:
    """Plan the arena. `view_layers` names the layers whose outputs are views of their first input;
    `allocating_layers` those whose kernels return memory of their own (no arena space, no concat placement)."""
    base: dict[int, Tensor] = {}  # tensor -> the tensor that owns its memory
    placed: dict[int, tuple[Tensor, Tensor, int]] = {}  # concat input -> (it, concat output, element offset)

    def owner(t: Tensor) -> Tensor:
        while id(t) in base:
            t = base[id(t)]
        return t

    producer = {id(t): n for n in graph.nodes for t in n.outputs}
    own = {id(t) for n in graph.nodes if n.name in allocating_layers and n.name not in view_layers for t in n.outputs}
    for node in graph.nodes:
        if node.name in view_layers:
            for out in node.outputs:
                base[id(out)] = node.inputs[0]  # type: ignore[assignment]
        elif node.op == Kind.CONCAT_IN_PLACE and not any(
                id(t) in own or producer.get(id(t)) is None or producer[id(t)].name in view_layers
                for t in node.inputs if t is not None):
            _place_concat_inputs(node, base, placed)

    inputs = {id(t) for t in graph.inputs}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    roots: dict[int, Tensor] = {}
    for step, node in enumerate(graph.nodes):
        for t in node.outputs:
            root = owner(t)
            if root.is_constant or id(root) in inputs or id(root) in own or not root.is_static or root.dtype is None:
                continue
            roots[id(root)] = root
            first[id(root)] = min(first.get(id(root), step), step)
            last[id(root)] = max(last.get(id(root), step), step)
        for t in node.inputs:
            if t is not None and id(owner(t)) in roots:
                last[id(owner(t))] = max(last[id(owner(t))], step)
    end = len(graph.nodes)
    for t in graph.outputs:
        if id(owner(t)) in roots:
            last[id(owner(t))] = end

    offsets = _assign(roots, first, last, alignment)
    memory = MemoryPlan(arena_size=0, alignment=alignment, offsets={})
    channels_last = _channels_last(graph)
    for key, t in roots.items():
        memory.offsets[t.name] = offsets[key]
        if key in channels_last:
            memory.strides[t.name] = _channels_last_strides(t.shape)  # type: ignore[arg-type]
    for t, concat_out, elem_offset in placed.values():
        root = owner(concat_out)
        if id(root) not in offsets:
            continue
        memory.offsets[t.name] = offsets[id(root)] + elem_offset * t.dtype.itemsize  # type: ignore[union-attr]
        memory.strides[t.name] = contiguous_strides(root.shape)  # type: ignore[arg-type]
    memory.arena_size = max((offsets[k] + _size(roots[k], alignment) for k in roots), default=0)
    return memory


def _keeps_layout(node: Node) -> bool:
    """Whether the node's kernels return their input's memory format (its op's keeps_layout trait)."""
    opdef = REGISTRY.find(node)
    return opdef is not None and opdef.keeps_layout


def _channels_last(graph: Graph) -> set[int]:
    """Tensors that run channels-last: outputs of layers marked layout=nhwc and of layout-keeping layers fed by them."""
    found: set[int] = set()
    for node in graph.nodes:
        first = node.input(0)
        marked = node.attrs.get("layout") == "nhwc"
        follows = first is not None and id(first) in found and _keeps_layout(node)
        if marked or follows:
            found.update(id(t) for t in node.outputs if t.rank == 4)
    return found


def _channels_last_strides(shape: tuple[int, ...]) -> list[int]:
    n, c, h, w = shape
    return [h * w * c, 1, w * c, c]


def _place_concat_inputs(node: Node, base: dict[int, Tensor], placed: dict[int, tuple[Tensor, Tensor, int]]) -> None:
    out = node.outputs[0]
    axis = int(node.attrs["axis"])
    strides = contiguous_strides(out.shape)  # type: ignore[arg-type]
    start = 0
    for t in node.inputs:
        assert t is not None
        base[id(t)] = out
        placed[id(t)] = (t, out, start * strides[axis])
        start += t.shape[axis]  # type: ignore[index]


def _size(t: Tensor, alignment: int) -> int:
    return (t.nbytes + alignment - 1) // alignment * alignment


def _assign(roots: dict[int, Tensor], first: dict[int, int], last: dict[int, int], alignment: int) -> dict[int, int]:
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    offsets: dict[int, int] = {}
    for key in sorted(roots, key=lambda k: (-_size(roots[k], alignment), first[k])):
        need, lo, hi = _size(roots[key], alignment), first[key], last[key]
        busy = sorted((off, off + sz) for off, sz, f, l in placed if f <= hi and lo <= l and sz)
        offset = 0
        for start, stop in busy:
            if offset + need <= start:
                break
            offset = max(offset, stop)
        placed.append((offset, need, lo, hi))
        offsets[key] = offset
    return offsets
