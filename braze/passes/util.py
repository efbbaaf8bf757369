"""Small helpers every pass uses: forwarding a tensor, making constants and nodes."""

from __future__ import annotations

from typing import Any

import torch

from ..ir import DType, Graph, Node, Tensor


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
    return Node(op, inputs, outputs, dict(attrs or {}), name=unique, domain=domain, version=version, origin=origin)


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


ACTIVATION_OPS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "SiLU", "Gelu", "Elu")


def activation_of(n: Node) -> tuple[str, list[float]] | None:
    """The fused-activation spec (braze.ops.fused.activate) a node computes, or None if it is not one."""
    if n.domain == "braze":
        return ("silu", []) if n.op == "SiLU" else None
    if n.domain:
        return None
    if n.op == "Relu":
        return "relu", []
    if n.op == "Sigmoid":
        return "sigmoid", []
    if n.op == "Tanh":
        return "tanh", []
    if n.op == "HardSwish":
        return "hardswish", []
    if n.op == "LeakyRelu":
        return "leaky_relu", [float(n.attrs.get("alpha", 0.01))]
    if n.op == "Elu":
        return "elu", [float(n.attrs.get("alpha", 1.0))]
    if n.op == "HardSigmoid":
        return "hardsigmoid", [float(n.attrs.get("alpha", 0.2)), float(n.attrs.get("beta", 0.5))]
    if n.op == "Gelu":
        return ("gelu_tanh" if n.attrs.get("approximate") == "tanh" else "gelu"), []
    if n.op == "Clip":
        if not follows(n, 11):
            return "clip", [float(n.attrs.get("min", float("-inf"))), float(n.attrs.get("max", float("inf")))]
        bounds = []
        for t, default in ((n.input(1), float("-inf")), (n.input(2), float("inf"))):
            if t is None:
                bounds.append(default)
            elif t.is_constant and t.value.numel() == 1:
                bounds.append(float(t.value.reshape(-1)[0]))
            else:
                return None
        return "clip", bounds
    return None
