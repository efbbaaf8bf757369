"""Small helpers every pass uses: forwarding a tensor, making constants and nodes."""

from __future__ import annotations

from typing import Any

import torch

from ..ir import DType, Graph, Node, Tensor
from ..ops.epilogue import ACTIVATION_TABLE, Activation


def forward(graph: Graph, old: Tensor, new: Tensor) -> bool:
    """Let every reader of `old` read `new` instead, so the node writing `old` can go.

    A graph output keeps its name: `new` takes it over, unless `new` is itself a graph input,
    output or constant (then the node stays and False is returned).
    """
    if old is new:
        return False
    if any(t is old for t in graph.outputs):
        if new.is_constant or any(t is new for t in graph.inputs) or any(t is new for t in graph.outputs):
            return False
        new.name = old.name
    graph.replace_uses(old, new)
    return True


def constant(graph: Graph, value: torch.Tensor, base: str) -> Tensor:
    """A new constant tensor with a name not yet used in `graph`."""
    value = value.detach().contiguous()
    return Tensor(graph.unique_name(base), DType.from_torch(value.dtype), tuple(value.shape), value)


def node(graph: Graph, op: str, inputs: list[Tensor | None], outputs: list[Tensor], attrs: dict[str, Any] | None = None,
         *, name: str, origin: tuple[str, ...], domain: str = "", version: int = 0) -> Node:
    """A new node with a unique name standing for the source nodes `origin`."""
    unique = name if name not in {n.name for n in graph.nodes} else graph.unique_name(name)
    return Node(str(op), inputs, outputs, dict(attrs or {}), name=unique, domain=domain, version=version, origin=origin)


def merged_origin(*nodes: Node) -> tuple[str, ...]:
    seen: list[str] = []
    for n in nodes:
        for o in n.origin or (n.name,):
            if o not in seen:
                seen.append(o)
    return tuple(seen)


def scalar_value(t: Tensor | None) -> float | None:
    """The value of a constant whose elements are all equal (a scalar in effect), else None."""
    if t is None or t.value is None or t.value.numel() == 0:
        return None
    flat = t.value.reshape(-1)
    first = flat[0]
    if flat.numel() > 1 and not bool((flat == first).all()):
        return None
    return float(first)


def follows(n: Node, since: int) -> bool:
    """Whether `n` follows the op's definition from opset `since` on (version 0, braze's own nodes: the newest)."""
    return n.version == 0 or n.version >= since


def same_type(a: Tensor, b: Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.is_static


def activation_of(n: Node) -> tuple[str, list[float]] | None:
    """The activation (a name of braze.ops.epilogue's table and its act_params) a node computes, or None if it
    computes none: found from the table's op, domain and selecting attributes; the constants come from the
    op's attributes, or from its constant inputs from the opset the table names (Clip-11)."""
    for a in ACTIVATION_TABLE.values():
        if a.op == n.op and a.domain == n.domain and all(n.attrs.get(k, v) == v for k, v in a.attrs):
            return _with_params(a, n)
    return None


def _with_params(a: Activation, n: Node) -> tuple[str, list[float]] | None:
    if a.params_as_inputs_since is None or not follows(n, a.params_as_inputs_since):
        return a.name, [float(n.attrs.get(name, default)) for name, default in a.params]
    params = []
    for i, (_, default) in enumerate(a.params, start=1):
        t = n.input(i)
        if t is None:
            params.append(default)
        elif t.is_constant and t.value.numel() == 1:
            params.append(float(t.value.reshape(-1)[0]))
        else:
            return None
    return a.name, params
