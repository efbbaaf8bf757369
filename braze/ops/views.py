"""Nodes whose result can be a view of their input (ops with the `view` trait, OpDef.view): no data moves,
only the shape and strides change.

Backends run these with a view tactic, and the memory plan gives the output no memory of its own: it
aliases the input, whose lifetime grows to cover the view's readers.
"""

from __future__ import annotations

import torch

from ..ir import Node
from . import REGISTRY


def is_view_op(node: Node) -> bool:
    """Whether the node's op has the view trait, whatever its shapes."""
    opdef = REGISTRY.find(node)
    return opdef is not None and opdef.view


def is_view(node: Node) -> bool:
    """Whether a view tactic can run the node: a view op on static shapes."""
    return is_view_op(node) and all(t.is_static for t in node.outputs) \
        and node.inputs[0] is not None and node.inputs[0].is_static


def view_outputs(node: Node, x: torch.Tensor) -> list[torch.Tensor]:
    """The node's outputs as views of its first input `x` (copies only where strides forbid a view)."""
    if node.op == "Transpose":
        perm = node.attrs.get("perm") or list(reversed(range(x.dim())))
        return [x.permute(tuple(perm))]
    if node.op == "Split":
        axis = int(node.attrs.get("axis", 0)) % x.dim()
        sizes = [t.shape[axis] for t in node.outputs]
        return list(torch.split(x, sizes, dim=axis))  # type: ignore[arg-type]
    return [x.reshape(node.outputs[0].shape)]  # type: ignore[arg-type]
