"""Run a graph with the ops' reference implementations: the oracle, node by node, on the CPU.

Used for Pointwise bodies, constant folding, and whole-graph reference runs (`run_graph`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..ir import Graph


def run_graph(graph: Graph, inputs: Sequence[torch.Tensor], outer: Mapping[int, torch.Tensor] | None = None
              ) -> list[torch.Tensor]:
    """Evaluate `graph` on `inputs` (in the order of graph.inputs); `outer` gives values of graph.outer
    tensors by id. Returns the outputs in order."""
    from . import REGISTRY

    values: dict[int, torch.Tensor] = dict(outer or {})
    for t, v in zip(graph.inputs, inputs):
        values[id(t)] = v
    device = inputs[0].device if inputs else torch.device("cpu")
    for node in graph.nodes:
        args = []
        for t in node.inputs:
            if t is None:
                args.append(None)
            elif t.value is not None:
                args.append(t.value.to(device))  # NOTE: constants follow the inputs (meta during inference)
            else:
                args.append(values[id(t)])
        results = REGISTRY.for_node(node).run(args, node.attrs, len(node.outputs))
        for t, r in zip(node.outputs, results):
            values[id(t)] = r
    return [t.value.to(device) if t.value is not None else values[id(t)] for t in graph.outputs]
