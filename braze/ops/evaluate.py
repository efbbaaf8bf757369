"""Run a graph with the ops' reference implementations: the oracle, node by node, on the CPU.

Used for Pointwise bodies, constant folding, control-flow bodies and whole-graph reference runs
(`run_graph`). Values are tensors, or for sequences and optionals lists of tensors and None.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from ..ir import Graph, Tensor
from .opdef import input_dtypes


def run_graph(graph: Graph, inputs: Sequence[Any], outer: Mapping[int, Any] | None = None,
              device: torch.device | None = None,
              observe: Callable[[Tensor, Any], None] | None = None) -> list[Any]:
    """Evaluate `graph` on `inputs` (in the order of graph.inputs); `outer` gives values of graph.outer
    tensors by id (they take precedence over a constant's own value: the engine's copy on its device).
    Other constants are moved to `device` (default: where the first input or outer tensor is).
    `observe(tensor, value)`, if given, is called for each node output of this graph (not of its subgraphs)
    as soon as it is computed (calibration). Returns the outputs in order."""
    from . import REGISTRY

    values: dict[int, Any] = dict(outer or {})
    for t, v in zip(graph.inputs, inputs):
        values[id(t)] = v
    if device is None:
        device = device_of(list(inputs) + list(values.values()))
    for node in graph.nodes:
        args = []
        for t in node.inputs:
            if t is None:
                args.append(None)
            elif id(t) in values or t.value is None:
                args.append(values[id(t)])
            else:
                args.append(t.value.to(device))  # NOTE: constants follow the inputs (meta during inference)
        results = REGISTRY.for_node(node).run(args, node.attrs, len(node.outputs), input_dtypes(node))
        for t, r in zip(node.outputs, results):
            values[id(t)] = r
        if observe is not None:
            for t, r in zip(node.outputs, results):
                observe(t, r)
    return [values[id(t)] if id(t) in values or t.value is None else t.value.to(device) for t in graph.outputs]


def device_of(values: Iterable[Any]) -> torch.device:
    """The device of the first tensor among `values` (lists searched too); the CPU if there is none."""
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device
        if isinstance(v, (list, tuple)):
            for item in v:
                if isinstance(item, torch.Tensor):
                    return item.device
    return torch.device("cpu")
