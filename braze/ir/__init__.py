"""braze's graph IR: DType, Tensor, Node and Graph, their checks and printer, shape inference.

The IR is deliberately small: a Node names its op (ONNX op types for parsed models, braze's own
fused kinds after optimization), reads and writes named Tensors, and carries plain attributes.
Shape inference over a graph lives in `infer`; the per-op rules it applies come from braze.ops.
"""

from .dtype import DType, to_numpy, to_torch
from .graph import (KINDS, OPTIONAL_SEQUENCE, OPTIONAL_TENSOR, SEQUENCE, TENSOR, Dim, Graph, Node, Tensor,
                    contiguous_strides, format_shape, subgraphs)

__all__ = ["DType", "Dim", "Graph", "KINDS", "Node", "OPTIONAL_SEQUENCE", "OPTIONAL_TENSOR", "SEQUENCE", "TENSOR", "Tensor",
           "contiguous_strides", "format_shape", "subgraphs", "to_numpy", "to_torch"]
