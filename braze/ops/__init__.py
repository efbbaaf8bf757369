"""braze's ops: one module per family, each a list of OpDefs (reference implementation,
attributes, shape rule), gathered here into one explicit table.

    REGISTRY.resolve("Conv", "", opset=17)   # the definition a model of opset 17 means
    REGISTRY.for_node(node)                   # the definition an IR node follows
    infer_shapes(graph)                       # dtypes and shapes of every tensor
"""

from __future__ import annotations

import torch

from ..ir import Graph
from . import (activation, attention, blocks, cast, control_flow, conv, detection, elementwise, experimental, fused,
               gather, generator, linalg, loss, misc, ml, msdynamic, msquant, normalization, pad, pool, qconv, qfused,
               quantize, reduce, resize, rnn, sampling, sequence, shape, signal, softmax, stateful, text, transformer,
               unary)
from .infer import infer_graph
from .opdef import OpDef, op
from .registry import Registry

MODULES = (activation, elementwise, unary, conv, pool, normalization, linalg, shape, gather, generator, cast, softmax,
           reduce, resize, pad, fused, qfused, quantize, qconv, signal, sampling, detection, blocks, text, ml, attention,
           transformer, misc, loss, rnn, stateful, control_flow, sequence, experimental,
           msquant, msdynamic)

REGISTRY = Registry(d for module in MODULES for d in module.OPS)


def infer_shapes(graph: Graph) -> dict[int, torch.Tensor]:
    """Set every node output's dtype and shape; returns the values known at build time, by id(tensor)."""
    return infer_graph(graph, REGISTRY.for_node)


__all__ = ["MODULES", "OpDef", "REGISTRY", "Registry", "infer_shapes", "op"]
