"""Lowering a graph's float32 computation to float16 or bfloat16.

Every float32 tensor inside the graph becomes the target type: constants are converted (finite values
clamped to the type's finite range, so a -3.4e38 mask stays a very large negative number rather than
-inf; infinities and NaNs stay what they are), Casts to float32 retarget the low type, and the engine's
float32 inputs and outputs keep their type at the boundary, with one Cast layer each, as TensorRT's
engines do. The kernels accumulate in
float32 (cuBLAS, cuDNN, SDPA and braze's Triton kernels all do), so only storage is narrowed.
"""

from __future__ import annotations

import onnx
import torch

from ..ir import DType, Graph, Node, Tensor, subgraphs

_ONNX_FLOAT = int(onnx.TensorProto.FLOAT)
_ONNX_CODES = {DType.float16: int(onnx.TensorProto.FLOAT16), DType.bfloat16: int(onnx.TensorProto.BFLOAT16)}


def lower_precision(graph: Graph, dtype: DType, *, boundary: bool = True) -> int:
    """Narrow float32 to `dtype` in place; returns how many tensors changed type. Subgraphs (Pointwise
    bodies, control-flow branches) are lowered with their parent, without boundary casts."""
    if dtype not in _ONNX_CODES:
        raise ValueError(f"braze lowers to float16 or bfloat16, not {dtype}")
    changed = 0
    for t in graph.constants():
        if t.dtype == DType.float32 and t.value is not None:
            info = torch.finfo(dtype.torch)
            # NOTE: only finite values are clamped: an infinity (a Clip bound, a compare against inf) stays one
            t.value = torch.where(t.value.isinf(), t.value, t.value.clamp(info.min, info.max)).to(dtype.torch)
            t.dtype = dtype
            changed += 1
    for node in graph.nodes:
        _retarget(node, dtype)
        for sub in subgraphs(node):
            changed += lower_precision(sub, dtype, boundary=False)
    keep = _cast_boundary(graph, dtype) if boundary else set()
    inner = [t for t in graph.inputs if not boundary] + [t for n in graph.nodes for t in n.outputs]
    for t in inner:
        if t.dtype == DType.float32 and id(t) not in keep:
            t.dtype = dtype
            changed += 1
    return changed


def _retarget(node: Node, dtype: DType) -> None:
    """Ops that name float32 explicitly produce the low type instead."""
    if node.op in ("Cast", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "EyeLike",
                   "SequenceEmpty") \
            and node.attrs.get("to", node.attrs.get("dtype")) == _ONNX_FLOAT:
        key = "to" if "to" in node.attrs else "dtype"
        node.attrs[key] = _ONNX_CODES[dtype]
    value = node.attrs.get("value")
    if node.op == "ConstantOfShape" and isinstance(value, torch.Tensor) and value.dtype == torch.float32:
        node.attrs["value"] = value.to(dtype.torch)


def _cast_boundary(graph: Graph, dtype: DType) -> set[int]:
    """Cast float32 graph inputs down and float32 graph outputs back up. Returns the ids of the
    float32 tensors that stay float32 (the casts' inputs and the outputs' final values)."""
    keep: set[int] = set()
    code = _ONNX_CODES[dtype]
    prepend: list[Node] = []
    for t in graph.inputs:
        if t.dtype != DType.float32 or not t.is_tensor:  # NOTE: a Cast takes tensors; sequences keep their type
            continue
        low = Tensor(graph.unique_name(f"{t.name}_{dtype}"), dtype, t.shape)
        graph.replace_uses(t, low)
        graph.outputs = [t if o is low else o for o in graph.outputs]
        prepend.append(Node("Cast", [t], [low], {"to": code}, name=graph.unique_name(f"{t.name}_to_{dtype}"),
                            version=0, origin=(f"{t.name} (cast to {dtype})",)))
    graph.nodes[:0] = prepend
    for i, t in enumerate(graph.outputs):
        if t.dtype != DType.float32 or any(t is x for x in graph.inputs) or t.is_constant or not t.is_tensor:
            continue
        low = Tensor(graph.unique_name(f"{t.name}_{dtype}"), dtype, t.shape)
        for node in graph.nodes:
            node.outputs = [low if o is t else o for o in node.outputs]
            node.inputs = [low if x is t else x for x in node.inputs]
        graph.nodes.append(Node("Cast", [low], [t], {"to": _ONNX_FLOAT}, name=graph.unique_name(f"{t.name}_to_float32"),
                                version=0, origin=(f"{t.name} (cast to float32)",)))
        keep.add(id(t))
    return keep

