"""Tensor, Node and Graph: the one small IR every part of braze speaks.

A Graph is a list of Nodes in SSA form over named Tensors. A Tensor is either a graph input,
a constant (it carries `value`, a torch tensor on the CPU), or the output of exactly one Node.
Node inputs may be `None` for omitted optional inputs. Producer and consumer maps are computed
on demand, so passes can edit `graph.nodes` freely and ask again.

Most values are tensors; a Tensor's `kind` also allows the two other value kinds of ONNX: a
sequence of tensors and an optional (a tensor or a sequence, or nothing). For those, `dtype` and
`shape` describe the tensors they hold (a dim is None where the tensors differ in it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import torch

from ..errors import ModelError
from .dtype import DType

Dim = int | str | None
"""A dimension: an int, a symbolic name (str), or None where it is unknown until run time."""

TENSOR, SEQUENCE, OPTIONAL_TENSOR, OPTIONAL_SEQUENCE = "tensor", "sequence", "optional_tensor", "optional_sequence"
KINDS = (TENSOR, SEQUENCE, OPTIONAL_TENSOR, OPTIONAL_SEQUENCE)
"""Value kinds. At run time a sequence is a list of tensors, an optional its element or None."""


@dataclass(eq=False)
class Tensor:
    name: str
    dtype: DType | None = None
    shape: tuple[Dim, ...] | None = None  # None: rank unknown
    value: torch.Tensor | None = None  # set for constants (initializers, folded values)
    kind: str = TENSOR  # one of KINDS

    @property
    def is_constant(self) -> bool:
        return self.value is not None

    @property
    def is_tensor(self) -> bool:
        return self.kind == TENSOR

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        """A tensor (not a sequence or an optional) whose every dim is a known int: its size is fixed."""
        return self.kind == TENSOR and self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def numel(self) -> int:
        if not self.is_static:
            raise ValueError(f"tensor {self.name!r} has no static shape: {format_shape(self.shape)}")
        n = 1
        for d in self.shape:  # type: ignore[union-attr]
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * (self.dtype.itemsize if self.dtype else 0)

    def type_str(self) -> str:
        element = f"{self.dtype or '?'}{format_shape(self.shape)}"
        return {SEQUENCE: f"seq({element})", OPTIONAL_TENSOR: f"opt({element})",
                OPTIONAL_SEQUENCE: f"opt(seq({element}))"}.get(self.kind, element)

    def __repr__(self) -> str:
        kind = " const" if self.is_constant else ""
        return f"Tensor({self.name!r}: {self.type_str()}{kind})"


def format_shape(shape: tuple[Dim, ...] | None) -> str:
    if shape is None:
        return "[?...]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def contiguous_strides(shape: tuple[int, ...]) -> list[int]:
    """Element strides of a row-major (C-contiguous) tensor of this shape."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return strides[::-1]


@dataclass(eq=False)
class Node:
    op: str
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    domain: str = ""  # "" is ONNX's default domain; braze's own fused ops use "braze"
    version: int = 0  # opset version of the op definition this node follows
    origin: tuple[str, ...] = ()  # names of the source-model nodes this node stands for

    def __post_init__(self) -> None:
        if not self.origin and self.name:
            self.origin = (self.name,)

    def input(self, i: int) -> Tensor | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def __repr__(self) -> str:
        return f"Node({self.name!r}: {self.op})"


@dataclass(eq=False)
class Graph:
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    name: str = "graph"
    opset: int = 0
    # Tensors of enclosing graphs that nodes of a subgraph may read (If/Loop/Scan bodies).
    outer: list[Tensor] = field(default_factory=list)

    # -- queries --------------------------------------------------------------------------

    def producers(self) -> dict[Tensor, Node]:
        return {t: n for n in self.nodes for t in n.outputs}

    def consumers(self) -> dict[Tensor, list[Node]]:
        users: dict[Tensor, list[Node]] = {}
        for n in self.nodes:
            for t in n.inputs:
                if t is not None:
                    users.setdefault(t, []).append(n)
        return users

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor the graph mentions, by name."""
        found: dict[str, Tensor] = {}
        for t in itertools.chain(self.inputs, self.outer, self.outputs, self._node_tensors()):
            found.setdefault(t.name, t)
        return found

    def constants(self) -> list[Tensor]:
        seen: dict[int, Tensor] = {}
        for t in self._node_tensors():
            if t.is_constant:
                seen.setdefault(id(t), t)
        for t in self.outputs:
            if t.is_constant:
                seen.setdefault(id(t), t)
        return list(seen.values())

    def weight_bytes(self) -> int:
        """Bytes of the graph's constants (its weights), each counted once."""
        return sum(t.value.nbytes for t in self.constants())  # type: ignore[union-attr]

    def _node_tensors(self) -> Iterator[Tensor]:
        for n in self.nodes:
            for t in n.inputs:
                if t is not None:
                    yield t
            yield from n.outputs

    def node_by_name(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    # -- edits ----------------------------------------------------------------------------

    def toposort(self) -> None:
        """Order nodes so that every node follows the producers of its inputs (stable)."""
        producer = self.producers()
        order: list[Node] = []
        state: dict[int, int] = {}  # 1: visiting, 2: done
        for root in self.nodes:
            if state.get(id(root)) == 2:
                continue
            stack: list[tuple[Node, Iterator[Tensor | None]]] = [(root, iter(root.inputs))]
            state[id(root)] = 1
            while stack:
                node, pending = stack[-1]
                for t in pending:
                    dep = producer.get(t) if t is not None else None
                    if dep is None or state.get(id(dep)) == 2:
                        continue
                    if state.get(id(dep)) == 1:
                        raise ModelError(f"graph {self.name!r} has a cycle through node {dep.name!r} ({dep.op})")
                    state[id(dep)] = 1
                    stack.append((dep, iter(dep.inputs)))
                    break
                else:
                    stack.pop()
                    state[id(node)] = 2
                    order.append(node)
        self.nodes = order

    def cleanup(self) -> int:
        """Remove nodes none of whose outputs reach a graph output. Returns how many went."""
        needed = {id(t) for t in self.outputs}
        kept: list[Node] = []
        for node in reversed(self.nodes):
            if any(id(t) in needed for t in node.outputs):
                kept.append(node)
                needed.update(id(t) for t in node.inputs if t is not None)  # NOTE: subgraphs' reads included
        removed = len(self.nodes) - len(kept)
        self.nodes = kept[::-1]
        return removed

    def replace_uses(self, old: Tensor, new: Tensor) -> None:
        """Point every reader of `old` (nodes and graph outputs) at `new`."""
        for n in self.nodes:
            n.inputs = [new if t is old else t for t in n.inputs]
        self.outputs = [new if t is old else t for t in self.outputs]

    def unique_name(self, base: str) -> str:
        taken = self.tensors().keys() | {n.name for n in self.nodes}
        if base not in taken:
            return base
        for i in itertools.count(1):
            candidate = f"{base}_{i}"
            if candidate not in taken:
                return candidate
        raise AssertionError("unreachable")

    # -- checks ---------------------------------------------------------------------------

    def verify(self) -> None:
        """Raise ModelError unless the graph is well formed and topologically ordered."""
        problems: list[str] = []
        available: set[int] = {id(t) for t in self.inputs} | {id(t) for t in self.outer}
        names: dict[str, Tensor] = {}
        node_names: set[str] = set()

        def claim(t: Tensor, where: str) -> None:
            other = names.setdefault(t.name, t)
            if other is not t:
                problems.append(f"two different tensors are named {t.name!r} ({where})")

        for t in self.inputs:
            claim(t, "graph input")
            if t.is_constant:
                problems.append(f"graph input {t.name!r} carries a constant value")
        for node in self.nodes:
            if node.name in node_names:
                problems.append(f"two nodes are named {node.name!r}")
            node_names.add(node.name)
            for i, t in enumerate(node.inputs):
                if t is None:
                    continue
                claim(t, f"input {i} of node {node.name!r}")
                if not t.is_constant and id(t) not in available:
                    problems.append(f"node {node.name!r} ({node.op}) reads {t.name!r} before anything produces it")
            for t in node.outputs:
                claim(t, f"output of node {node.name!r}")
                if t.is_constant:
                    problems.append(f"node {node.name!r} ({node.op}) writes constant tensor {t.name!r}")
                if id(t) in available:
                    problems.append(f"tensor {t.name!r} is produced twice (again by node {node.name!r})")
                available.add(id(t))
            for sub in subgraphs(node):
                try:
                    sub.verify()
                except ModelError as e:
                    problems.append(f"subgraph of node {node.name!r}: {e}")
        for t in self.outputs:
            if not t.is_constant and id(t) not in available:
                problems.append(f"graph output {t.name!r} is never produced")
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise ModelError(f"graph {self.name!r} is not well formed:\n  {shown}{more}")

    def walk(self) -> Iterator["Graph"]:
        """This graph, then every subgraph of its nodes (an If's branches, a Loop's body), depth first."""
        yield self
        for node in self.nodes:
            for sub in subgraphs(node):
                yield from sub.walk()

    # -- copying and printing -------------------------------------------------------------

    def copy(self) -> "Graph":
        """A structural copy: new Tensor and Node objects, constant values shared (read-only)."""
        return _copy_graph(self, {})

    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)


def subgraphs(node: Node) -> Iterable[Graph]:
    for value in node.attrs.values():
        if isinstance(value, Graph):
            yield value


def _copy_graph(graph: Graph, mapping: dict[int, Tensor]) -> Graph:
    def tensor(t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        if id(t) not in mapping:
            mapping[id(t)] = Tensor(t.name, t.dtype, t.shape, t.value, t.kind)
        return mapping[id(t)]

    def attr(value: Any) -> Any:
        return _copy_graph(value, mapping) if isinstance(value, Graph) else value

    nodes = [
        Node(n.op, [tensor(t) for t in n.inputs], [tensor(t) for t in n.outputs],  # type: ignore[misc]
             {k: attr(v) for k, v in n.attrs.items()}, n.name, n.domain, n.version, n.origin)
        for n in graph.nodes
    ]
    return Graph(
        inputs=[tensor(t) for t in graph.inputs],  # type: ignore[misc]
        outputs=[tensor(t) for t in graph.outputs],  # type: ignore[misc]
        nodes=nodes,
        name=graph.name,
        opset=graph.opset,
        outer=[tensor(t) for t in graph.outer],  # type: ignore[misc]
    )
