"""Lowering a graph's float32 computation to float16 or bfloat16.

Every float32 tensor inside the graph becomes the target type: constants are converted (finite values
clamped to the type's finite range, so a -3.4e38 mask stays a very large negative number rather than
-inf; infinities and NaNs stay what they are), Casts to float32 retarget the low type, and the engine's
float32 inputs and outputs keep their type at the boundary, with one Cast layer each, as TensorRT's
engines do. The kernels accumulate in float32 (cuBLAS, cuDNN, SDPA and braze's Triton kernels all do),
so only storage is narrowed.

What decides a shape stays float32: a value input (a Resize's scales, a Range's bounds) and everything
it is computed from, so lowering never changes an output's shape (1.1 is 1.0996 in float16: ten rows
scaled by it would floor to 10, not 11). A constant graph output keeps its declared type.
"""

from __future__ import annotations

import onnx
import torch

from ..ir import DType, Graph, Node, Tensor, subgraphs
from ..ops import REGISTRY
from ..ops.kinds import DOMAIN, Kind

_ONNX_FLOAT = int(onnx.TensorProto.FLOAT)
_ONNX_CODES = {DType.float16: int(onnx.TensorProto.FLOAT16), DType.bfloat16: int(onnx.TensorProto.BFLOAT16)}
# The attribute that names an op's output type, and its default (None: the type of an input).
_TYPE_ATTRS = {
    "Cast": ("to", None), "EyeLike": ("dtype", None), "Bernoulli": ("dtype", None),
    "RandomNormal": ("dtype", _ONNX_FLOAT), "RandomUniform": ("dtype", _ONNX_FLOAT),
    "RandomNormalLike": ("dtype", None), "RandomUniformLike": ("dtype", None), "SequenceEmpty": ("dtype", _ONNX_FLOAT),
    "HannWindow": ("output_datatype", _ONNX_FLOAT), "HammingWindow": ("output_datatype", _ONNX_FLOAT),
    "BlackmanWindow": ("output_datatype", _ONNX_FLOAT), "MelWeightMatrix": ("output_datatype", _ONNX_FLOAT),
    "DequantizeLinear": ("output_dtype", None), Kind.QCONV: ("output_dtype", _ONNX_FLOAT),
    Kind.QGEMM: ("output_dtype", _ONNX_FLOAT),
}

_SHAPE_READERS = ("Shape", "Size")  # read only their input's shape: a shape path does not reach past them


def lower_precision(graph: Graph, dtype: DType, *, boundary: bool = True, keep: frozenset[str] = frozenset()) -> int:
    """Narrow float32 to `dtype` in place; returns how many tensors changed type. Subgraphs (Pointwise
    bodies, control-flow branches) are lowered with their parent, without boundary casts. The nodes named in
    `keep` (layers pinned to fp32) compute in float32: their weights and outputs stay float32, their other
    inputs are cast up before them and their outputs cast down for the lowered layers that read them."""
    if dtype not in _ONNX_CODES:
        raise ValueError(f"braze lowers to float16 or bfloat16, not {dtype}")
    # NOTE: ONNX defines DynamicQuantizeLinear on float32 alone: it computes in float32 like a pinned layer
    keep = keep | {n.name for n in graph.nodes if n.op == "DynamicQuantizeLinear" and n.domain in ("", "ai.onnx")}
    pinned = [n for n in graph.nodes if n.name in keep]
    stay = _shape_path(graph)
    stay |= {id(t) for n in pinned for t in [*n.outputs, *(x for x in n.inputs if x is not None and x.is_constant)]
             if t.dtype == DType.float32}
    cast_up = [(n, i) for n in pinned for i, t in enumerate(n.inputs)
               if t is not None and t.dtype == DType.float32 and id(t) not in stay]
    _split_shared(graph, dtype, stay)
    changed = 0
    for t in graph.constants():
        if t.dtype == DType.float32 and t.value is not None and id(t) not in stay:
            t.value = _narrow(t.value, dtype)
            t.dtype = dtype
            changed += 1
    for node in graph.nodes:
        if not _on_shape_path(node, stay):
            _retarget(node, dtype)
        if node.name not in keep:
            for sub in subgraphs(node):
                changed += lower_precision(sub, dtype, boundary=False)
    kept = _cast_boundary(graph, dtype, stay) if boundary else set()
    inner = [t for t in graph.inputs if not boundary] + [t for n in graph.nodes for t in n.outputs]
    for t in inner:
        if t.dtype == DType.float32 and id(t) not in kept and id(t) not in stay:
            t.dtype = dtype
            changed += 1
    _cast_up(graph, cast_up)
    return changed


def _cast_up(graph: Graph, reads: list[tuple[Node, int]]) -> None:
    """Give each (pinned node, input) a float32 copy of the lowered tensor it reads, made right before it."""
    made: dict[int, Tensor] = {}
    for node, i in reads:
        t = node.inputs[i]
        if id(t) not in made:
            up = Tensor(graph.unique_name(f"{t.name}_float32"), DType.float32, t.shape)
            graph.nodes.insert(graph.nodes.index(node), Node(
                "Cast", [t], [up], {"to": _ONNX_FLOAT}, name=graph.unique_name(f"{t.name}_to_float32"), version=0,
                origin=(f"{t.name} (cast to float32)",)))
            made[id(t)] = up
        node.inputs[i] = made[id(t)]


def _value_inputs(node: Node) -> frozenset[int]:
    """The inputs lowering leaves in float32: those that decide a shape, and quantization scales (an op's
    scale_inputs: lowering never moves a quantization step)."""
    opdef = REGISTRY.find(node)
    return frozenset() if opdef is None else opdef.value_inputs | opdef.scale_inputs


def _scale_inputs(node: Node) -> frozenset[int]:
    opdef = REGISTRY.find(node)
    return frozenset() if opdef is None else opdef.scale_inputs


def _shape_path(graph: Graph) -> set[int]:
    """The ids of the float32 tensors that stay float32: value inputs, what they are computed from (back to a
    Shape or Size, which read no values), what is computed from them alone, and constant graph outputs."""
    producer = {id(t): n for n in graph.nodes for t in n.outputs}
    pending = [t for n in graph.nodes for i in _value_inputs(n) if (t := n.input(i)) is not None]
    pending += [t for t in graph.outputs if t.is_constant]
    seen: set[int] = set()
    stay: set[int] = set()
    while pending:
        t = pending.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.dtype == DType.float32:
            stay.add(id(t))
        node = producer.get(id(t))
        if node is not None and node.op not in _SHAPE_READERS:
            pending += [x for x in node.inputs if x is not None]
    for node in graph.nodes:  # NOTE: an op fed only such float32 values (a Range of float bounds) makes float32 too
        scales = _scale_inputs(node)
        floats = [x for i, x in enumerate(node.inputs)
                  if x is not None and x.dtype == DType.float32 and i not in scales]
        if floats and all(id(x) in stay for x in floats):
            stay.update(id(t) for t in node.outputs if t.dtype == DType.float32)
    return stay


def _on_shape_path(node: Node, stay: set[int]) -> bool:
    return any(id(t) in stay for t in node.outputs)


def _split_shared(graph: Graph, dtype: DType, stay: set[int]) -> None:
    """Where computation also reads a float32 tensor of a shape path (a scalar constant shared by a scale and a
    shape), it reads a low copy: the constant converted, or a Cast placed right after the tensor is made."""
    copies: dict[int, Tensor] = {}
    casts: dict[int, Node] = {}  # by id of the tensor cast; graph inputs' and outer tensors' go first
    for node in graph.nodes:
        if _on_shape_path(node, stay):
            continue
        values = _value_inputs(node)
        for i, t in enumerate(node.inputs):
            if t is None or id(t) not in stay or i in values:
                continue
            if id(t) not in copies:
                low = Tensor(graph.unique_name(f"{t.name}_{dtype}"), dtype, t.shape,
                             None if t.value is None else _narrow(t.value, dtype))
                if t.value is None:
                    name = graph.unique_name(f"{t.name}_to_{dtype}")
                    casts[id(t)] = Node("Cast", [t], [low], {"to": _ONNX_CODES[dtype]}, name=name, version=0,
                                        origin=(f"{t.name} (cast to {dtype})",))
                copies[id(t)] = low
            node.inputs[i] = copies[id(t)]
    made = {id(t) for n in graph.nodes for t in n.outputs}
    order = [cast for key, cast in casts.items() if key not in made]
    for node in graph.nodes:
        order += [node] + [casts[id(t)] for t in node.outputs if id(t) in casts]
    graph.nodes = order


def _narrow(value: torch.Tensor, dtype: DType) -> torch.Tensor:
    info = torch.finfo(dtype.torch)
    # NOTE: only finite values are clamped: an infinity (a Clip bound, a compare against inf) stays one
    return torch.where(value.isinf(), value, value.clamp(info.min, info.max)).to(dtype.torch)


def _retarget(node: Node, dtype: DType) -> None:
    """Ops that name float32 explicitly, or by default, produce the low type instead."""
    if node.op in ("QuantizeLinear", "DequantizeLinear") and node.domain in ("", "ai.onnx"):
        # NOTE: the scale stays float32 (scale_inputs): version 23 is the first whose x (or output) may be of another
        # float type than the scale (DequantizeLinear making the low type by output_dtype); the same ops otherwise
        least = 23
        if 0 < node.version < least:  # NOTE: version 0 already means the newest
            node.version = least
        scale_type = node.inputs[1].dtype
        if node.op == "DequantizeLinear" and not node.attrs.get("output_dtype") and scale_type == DType.float32:
            node.attrs["output_dtype"] = _ONNX_CODES[dtype]
    # NOTE: ONNX's and braze's ops only: com.microsoft's QGemm is not braze's
    attr = _TYPE_ATTRS.get(node.op) if node.domain in ("", "ai.onnx", DOMAIN) else None
    if attr is not None and node.attrs.get(attr[0], attr[1]) == _ONNX_FLOAT:
        node.attrs[attr[0]] = _ONNX_CODES[dtype]
    value = node.attrs.get("value")
    if node.op in ("Constant", "ConstantOfShape") and isinstance(value, torch.Tensor) and value.dtype == torch.float32:
        node.attrs["value"] = _narrow(value, dtype)
    for key in ("value_float", "value_floats"):
        if node.op == "Constant" and node.attrs.get(key) is not None:
            node.attrs["value"] = _narrow(torch.tensor(node.attrs.pop(key), dtype=torch.float32), dtype)


def _cast_boundary(graph: Graph, dtype: DType, stay: set[int]) -> set[int]:
    """Cast float32 graph inputs down and float32 graph outputs back up. Returns the ids of the float32 tensors
    that stay float32 (the casts' inputs and the outputs' final values)."""
    keep: set[int] = set()
    code = _ONNX_CODES[dtype]
    prepend: list[Node] = []
    for t in graph.inputs:
        if t.dtype != DType.float32 or not t.is_tensor:  # NOTE: a Cast takes tensors; sequences keep their type
            continue
        if id(t) in stay:  # NOTE: its computing readers were given a cast of their own (_split_shared)
            continue
        low = Tensor(graph.unique_name(f"{t.name}_{dtype}"), dtype, t.shape)
        graph.replace_uses(t, low)
        graph.outputs = [t if o is low else o for o in graph.outputs]
        prepend.append(Node("Cast", [t], [low], {"to": code}, name=graph.unique_name(f"{t.name}_to_{dtype}"),
                            version=0, origin=(f"{t.name} (cast to {dtype})",)))
    graph.nodes[:0] = prepend
    for t in graph.outputs:
        if t.dtype != DType.float32 or any(t is x for x in graph.inputs) or t.is_constant or not t.is_tensor \
                or id(t) in stay or id(t) in keep:  # NOTE: an output listed twice is cast once
            continue
        low = Tensor(graph.unique_name(f"{t.name}_{dtype}"), dtype, t.shape)
        for node in graph.nodes:
            node.outputs = [low if o is t else o for o in node.outputs]
            node.inputs = [low if x is t else x for x in node.inputs]
        graph.nodes.append(Node("Cast", [low], [t], {"to": _ONNX_FLOAT}, name=graph.unique_name(f"{t.name}_to_float32"),
                                version=0, origin=(f"{t.name} (cast to float32)",)))
        keep.add(id(t))
    return keep
