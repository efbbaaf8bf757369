"""Shape and dtype inference over a graph, driven by each op's reference implementation.

For every node, in order, the outputs' dtypes and shapes come from one of:
  1. the op's own `infer` rule, where it has one (Shape, NonZero, control flow, ...);
  2. running the reference for real, when every input's value is known and small (shape
     arithmetic: Shape -> Gather -> Concat chains fold here and their values flow on);
  3. running the reference on meta tensors (no data, no time), with the known values of the
     op's `value_inputs` (a Reshape's target shape, a Slice's starts) passed for real.
When a value that decides a shape is not known until run time, the output's shape is left
unknown (None) and the runtime allocates that tensor when it is produced. Sequences and
optionals (Tensor.kind) only pass through ops whose own rule knows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..errors import BrazeError, ShapeError, UnsupportedError, first_line
from ..ir import TENSOR, DType, Graph, Node, Tensor
from .opdef import input_dtypes, sizing

# A tensor whose value is at most this many elements is carried as a known value.
VALUE_LIMIT = 1 << 12


@dataclass
class Inferred:
    dtype: DType
    shape: tuple[int | None, ...] | None
    value: torch.Tensor | None = None  # known value (small tensors only)
    kind: str = TENSOR  # a sequence or optional holds tensors of `dtype` and `shape`

    @staticmethod
    def of(t: Tensor) -> "Inferred":
        """The type a tensor has now (no value)."""
        return Inferred(t.dtype, t.shape, kind=t.kind)  # type: ignore[arg-type]


def infer_graph(graph: Graph, lookup: Callable[[Node], Any], known: dict[int, torch.Tensor] | None = None) -> dict[int, torch.Tensor]:
    """Fill in every node output's dtype and shape. Returns the known values, by id(tensor)."""
    known = {} if known is None else known
    for t in graph.constants():
        if t.value is not None and t.value.numel() <= VALUE_LIMIT:
            known[id(t)] = t.value
    for node in graph.nodes:
        opdef = lookup(node)
        inputs = node.inputs
        values = [known.get(id(t)) if t is not None else None for t in inputs]
        for t in inputs:
            if t is not None and t.dtype is None:
                raise ShapeError(f"node {node.name!r} ({node.op}): input {t.name!r} has no known dtype")
        results = infer_node(opdef, node, values)
        for t, r in zip(node.outputs, results):
            t.dtype, t.shape, t.kind = r.dtype, r.shape, r.kind
            if r.value is not None and r.value.numel() <= VALUE_LIMIT:
                known[id(t)] = r.value
            else:
                known.pop(id(t), None)
    return known


def infer_node(opdef: Any, node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
    n_out = len(node.outputs)
    if not opdef.wants_dtypes:
        _refuse_emulated(node, [t.dtype for t in node.inputs if t is not None])
    if opdef.infer is None:
        odd = next((t for t in node.inputs if t is not None and not t.is_tensor), None)
        if odd is not None:
            raise ShapeError(f"{describe_node(node)}: input {odd.name!r} is a {odd.kind.replace('_', ' ')}; "
                             f"{node.op} takes tensors")
    try:
        if opdef.infer is not None:
            results = opdef.infer(node, values)
        else:
            results = _infer_generic(opdef, node, values)
    except BrazeError:
        raise
    except Exception as e:  # a shape rule failing means the node's inputs do not fit the op
        raise ShapeError(f"{describe_node(node)}: {first_line(e)}") from e
    if len(results) < n_out:
        raise ShapeError(f"{describe_node(node)}: the op gives {len(results)} outputs, the node asks for {n_out}")
    if not opdef.wants_dtypes:
        _refuse_emulated(node, [r.dtype for r in results[:n_out]])
    for t, r in zip(node.outputs, results):
        if r.shape is not None and any(isinstance(d, int) and d < 0 for d in r.shape):
            raise ShapeError(f"{describe_node(node)}: output {t.name!r} comes out with a negative dim "
                             f"{list(r.shape)}")
    return results[:n_out]


def _refuse_emulated(node: Node, dtypes: Sequence[DType | None]) -> None:
    """Only ops that take their inputs' dtypes compute on emulated types (int4, float4_e2m1fn, ...): their
    tensors hold just their storage dtype, which any other op would take for the type."""
    odd = next((d for d in dtypes if d is not None and d.emulated), None)
    if odd is not None:
        raise UnsupportedError(f"{describe_node(node)}: {node.op} does not support {odd} tensors (braze has them "
                               "in conversions and quantization only: Cast, CastLike, QuantizeLinear, "
                               "DequantizeLinear)")


def _infer_generic(opdef: Any, node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
    inputs = node.inputs
    n_out = len(node.outputs)
    present = [(t, v) for t, v in zip(inputs, values) if t is not None]
    if not opdef.random and all(v is not None for _, v in present):
        # NOTE: small inputs can make a huge output (ConstantOfShape, Expand, Range, Tile): its size comes from
        # a meta run first, and only a small result is computed for real, so a declared size is never allocated
        try:
            sized = _infer_on_meta(opdef, node, values)
        except Exception:  # the op reads its inputs' data to size its output: they are small, so run it
            sized = None
        if sized is None or all(r.shape is not None and _elements(r.shape) <= VALUE_LIMIT for r in sized):
            outs = opdef.run(list(values), node.attrs, n_out, input_dtypes(node))
            return [Inferred(DType.from_torch(o.dtype), tuple(o.shape), o) for o in outs]
        return sized
    return _infer_on_meta(opdef, node, values)


def _infer_on_meta(opdef: Any, node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
    """Types from the reference run on meta tensors, with the known values of the op's value inputs."""
    args: list[torch.Tensor | None] = []
    for i, (t, v) in enumerate(zip(node.inputs, values)):
        if t is None:
            args.append(None)
        elif i in opdef.value_inputs:
            if v is None:
                return _data_dependent(opdef, node)
            args.append(v)
        elif not t.is_static:
            return _data_dependent(opdef, node)
        else:
            args.append(torch.empty(t.shape, dtype=t.dtype.torch, device="meta"))  # type: ignore[arg-type,union-attr]
    with sizing():
        outs = opdef.run(args, node.attrs, len(node.outputs), input_dtypes(node))
    return [Inferred(DType.from_torch(o.dtype), tuple(o.shape)) for o in outs]


def _elements(shape: tuple[int | None, ...]) -> int:
    count = 1
    for d in shape:
        count *= d if isinstance(d, int) else 1
    return count


def _data_dependent(opdef: Any, node: Node) -> list[Inferred]:
    """Outputs whose shape is only known at run time: dtype from the op's rule or its first input."""
    if opdef.dtype_rule is not None:
        dtypes = opdef.dtype_rule(node)
    else:
        first = next(t for t in node.inputs if t is not None)
        dtypes = [first.dtype] * len(node.outputs)
    return [Inferred(d, None) for d in dtypes]


def describe_node(node: Node) -> str:
    """`node 'conv1' (Conv) with inputs x: float32[1,3,224,224], w: float32[64,3,7,7]`."""
    ins = ", ".join("_" if t is None else f"{t.name}: {t.type_str()}" for t in node.inputs)
    return f"node {node.name!r} ({node.op}) with inputs {ins or 'none'}"


def meta_like(t: Tensor) -> torch.Tensor:
    return torch.empty(t.shape, dtype=t.dtype.torch, device="meta")  # type: ignore[arg-type,union-attr]
