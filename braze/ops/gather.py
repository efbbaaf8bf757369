"""Indexing ops: gathers and scatters, and selections whose result size depends on the data.

Gather, GatherElements, GatherND, ScatterElements (and its deprecated alias Scatter), ScatterND,
ReverseSequence, and the data-dependent Compress, NonZero and Unique. Negative indices count
from the end of their axis; indices out of range are an error.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..ir import DType, Node
from .infer import Inferred
from .opdef import op
from .shape import axis_index, int_list

_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


def _wrap(indices: torch.Tensor, size: int | torch.Tensor) -> torch.Tensor:
    indices = indices.to(torch.int64)
    return torch.where(indices < 0, indices + size, indices)


def _check_range(indices: torch.Tensor, size: torch.Tensor | int) -> None:
    """Indices (already wrapped) must lie in [0, size); checked only on real data."""
    if indices.device.type != "meta" and indices.numel() and bool(((indices < 0) | (indices >= size)).any()):
        raise IndexError(f"indices out of range; valid range per coordinate: {size.tolist() if isinstance(size, torch.Tensor) else size}")


def _constant_indices(node: Node) -> bool:
    """A Gather of constant indices selects the same elements of a quantized tensor as of its dequantized one."""
    indices = node.input(1)
    return indices is not None and indices.is_constant


@op("Gather", commutes_with_quantize=_constant_indices)
def gather(data, indices, *, axis: int = 0):
    axis = axis_index(axis, data.dim())
    index = _wrap(indices, data.shape[axis])
    _check_range(index, data.shape[axis])
    out = torch.index_select(data, axis, index.reshape(-1))
    return out.reshape(data.shape[:axis] + indices.shape + data.shape[axis + 1:])


@op("GatherElements", since=11)
def gather_elements(data, indices, *, axis: int = 0):
    axis = axis_index(axis, data.dim())
    if indices.dim() != data.dim():
        raise ValueError(f"indices have rank {indices.dim()}, data has rank {data.dim()}")
    index = _wrap(indices, data.shape[axis])
    _check_range(index, data.shape[axis])
    return torch.gather(data, axis, index)


def _linear_index(indices: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Row-major offsets into a block of shape `dims` of the index tuples on the last axis of `indices`."""
    size = torch.tensor(list(dims), dtype=torch.int64, device=indices.device)
    index = _wrap(indices, size)
    _check_range(index, size)
    strides = torch.tensor([math.prod(dims[j + 1:]) for j in range(len(dims))], dtype=torch.int64,
                           device=indices.device)
    return (index * strides).sum(-1)


@op("GatherND", since=11)
def gather_nd_11(data, indices):
    return _gather_nd(data, indices, 0)


@op("GatherND", since=12)
def gather_nd_12(data, indices, *, batch_dims: int = 0):
    return _gather_nd(data, indices, batch_dims)


def _gather_nd(data: torch.Tensor, indices: torch.Tensor, b: int) -> torch.Tensor:
    if indices.dim() < 1 or not 0 <= b < min(data.dim(), indices.dim()):
        raise ValueError(f"batch_dims {b} must be below the ranks of data ({data.dim()}) and indices ({indices.dim()})")
    if data.shape[:b] != indices.shape[:b]:
        raise ValueError(f"the first {b} dims of data {list(data.shape)} and indices {list(indices.shape)} differ")
    k = indices.shape[-1]
    if b + k > data.dim():
        raise ValueError(f"index tuples of length {k} after {b} batch dims exceed data rank {data.dim()}")
    batch = math.prod(data.shape[:b])
    lead, rest = data.shape[b:b + k], data.shape[b + k:]
    n = math.prod(indices.shape[b:-1])
    offsets = _linear_index(indices.reshape(batch, n, k), lead)
    flat = data.reshape(batch, math.prod(lead), *rest)
    rows = torch.arange(batch, device=data.device).unsqueeze(1)
    return flat[rows, offsets].reshape(*indices.shape[:-1], *rest)


def _check_reduction(reduction: str, allowed: Sequence[str]) -> None:
    if reduction not in allowed:
        raise ValueError(f"reduction {reduction!r} is not one of {', '.join(allowed)}")


def _scatter_elements(data, indices, updates, axis: int, reduction: str):
    axis = axis_index(axis, data.dim())
    if indices.dim() != data.dim() or indices.shape != updates.shape:
        raise ValueError(f"indices {list(indices.shape)} and updates {list(updates.shape)} must have one shape, "
                         f"of the rank of data {list(data.shape)}")
    if updates.dtype != data.dtype:
        raise ValueError(f"updates are {updates.dtype}, data is {data.dtype}")
    index = _wrap(indices, data.shape[axis])
    _check_range(index, data.shape[axis])
    if reduction == "none":
        return data.scatter(axis, index, updates)
    return data.scatter_reduce(axis, index, updates, _REDUCE[reduction], include_self=True)


@op("Scatter", since=9)
def scatter_9(data, indices, updates, *, axis: int = 0):
    return _scatter_elements(data, indices, updates, axis, "none")


@op("ScatterElements", since=11)
def scatter_elements_11(data, indices, updates, *, axis: int = 0):
    return _scatter_elements(data, indices, updates, axis, "none")


@op("ScatterElements", since=16)
def scatter_elements_16(data, indices, updates, *, axis: int = 0, reduction: str = "none"):
    _check_reduction(reduction, ("none", "add", "mul"))
    return _scatter_elements(data, indices, updates, axis, reduction)


@op("ScatterElements", since=18)
def scatter_elements_18(data, indices, updates, *, axis: int = 0, reduction: str = "none"):
    _check_reduction(reduction, ("none", "add", "mul", "max", "min"))
    return _scatter_elements(data, indices, updates, axis, reduction)


def _scatter_nd(data, indices, updates, reduction: str):
    k = indices.shape[-1] if indices.dim() else 0
    if indices.dim() < 1 or k > data.dim():
        raise ValueError(f"indices {list(indices.shape)} do not index data of rank {data.dim()}")
    lead, rest = data.shape[:k], data.shape[k:]
    if updates.shape != indices.shape[:-1] + rest:
        raise ValueError(f"updates are {list(updates.shape)}, expected {list(indices.shape[:-1] + rest)}")
    if updates.dtype != data.dtype:
        raise ValueError(f"updates are {updates.dtype}, data is {data.dtype}")
    offsets = _linear_index(indices, lead).reshape(-1, *([1] * len(rest)))
    source = updates.reshape(-1, *rest)
    offsets = offsets.expand(source.shape)
    out = data.reshape(math.prod(lead), *rest).clone()
    if reduction == "none":
        out.scatter_(0, offsets, source)
    else:
        out.scatter_reduce_(0, offsets, source, _REDUCE[reduction], include_self=True)
    return out.reshape(data.shape)


@op("ScatterND", since=11)
def scatter_nd_11(data, indices, updates):
    return _scatter_nd(data, indices, updates, "none")


@op("ScatterND", since=16)
def scatter_nd_16(data, indices, updates, *, reduction: str = "none"):
    _check_reduction(reduction, ("none", "add", "mul"))
    return _scatter_nd(data, indices, updates, reduction)


@op("ScatterND", since=18)
def scatter_nd_18(data, indices, updates, *, reduction: str = "none"):
    _check_reduction(reduction, ("none", "add", "mul", "max", "min"))
    return _scatter_nd(data, indices, updates, reduction)


@op("ReverseSequence", since=10)
def reverse_sequence(x, sequence_lens, *, batch_axis: int = 1, time_axis: int = 0):
    if {batch_axis, time_axis} != {0, 1} or x.dim() < 2:
        raise ValueError(f"batch_axis and time_axis must be 0 and 1 in some order, for an input of rank >= 2 "
                         f"(got {batch_axis}, {time_axis} and shape {list(x.shape)})")
    steps, batch = x.shape[time_axis], x.shape[batch_axis]
    if sequence_lens.shape != (batch,):
        raise ValueError(f"sequence_lens has shape {list(sequence_lens.shape)}, expected [{batch}]")
    lens = sequence_lens.to(torch.int64).reshape(1, batch)
    if lens.device.type != "meta" and bool(((lens < 0) | (lens > steps)).any()):
        raise ValueError(f"sequence_lens {lens.reshape(-1).tolist()} must lie in [0, {steps}]")
    t = torch.arange(steps, device=x.device).unsqueeze(1)
    index = torch.where(t < lens, lens - 1 - t, t)
    if time_axis == 1:
        index = index.T
    index = index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand(x.shape)
    return torch.gather(x, time_axis, index)


@op("Compress", since=9, value_inputs=(1,))
def compress(x, condition, *, axis: int | None = None):
    if axis is None:
        x, axis = x.reshape(-1), 0
    else:
        axis = axis_index(axis, x.dim())
    keep = condition.reshape(-1).to(torch.bool)
    if keep.numel() > x.shape[axis]:
        if bool(keep[x.shape[axis]:].any()):
            raise ValueError(f"condition has {keep.numel()} entries, the axis only {x.shape[axis]}")
        keep = keep[:x.shape[axis]]
    return torch.index_select(x, axis, torch.nonzero(keep).reshape(-1).to(x.device))


def _infer_nonzero(node: Node, values) -> list[Inferred]:
    x = node.inputs[0]
    if values[0] is not None:
        out = nonzero.fn(values[0])
        return [Inferred(DType.int64, tuple(out.shape), out)]
    return [Inferred(DType.int64, (None if x.shape is None else max(len(x.shape), 1), None))]


@op("NonZero", since=9, infer=_infer_nonzero)
def nonzero(x):
    # NOTE: a scalar counts as a 1-element vector (one row of indices), as onnxruntime and numpy < 2 do.
    return torch.nonzero(x.reshape(-1) if x.dim() == 0 else x).T.contiguous()


def _infer_unique(node: Node, values) -> list[Inferred]:
    if values[0] is not None:
        outs = unique.fn(values[0], **node.attrs)
        return [Inferred(DType.from_torch(o.dtype), tuple(o.shape), o) for o in outs]
    x = node.inputs[0]
    axis = node.attrs["axis"]
    if axis is None or x.shape is None:
        y_shape, inverse = (None,), (x.numel if x.is_static else None,)
    else:
        axis = axis_index(axis, len(x.shape))
        y_shape, inverse = tuple(None if i == axis else d for i, d in enumerate(x.shape)), (x.shape[axis],)
    return [Inferred(x.dtype, y_shape), Inferred(DType.int64, (None,)), Inferred(DType.int64, inverse),
            Inferred(DType.int64, (None,))]


@op("Unique", since=11, infer=_infer_unique)
def unique(x, *, axis: int | None = None, sorted: int = 1):
    if axis is None:
        x, dim = x.reshape(-1), 0
    else:
        dim = axis_index(axis, x.dim())
    y, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True,
                                      dim=None if axis is None else dim)
    n = counts.numel()
    positions = torch.arange(inverse.numel(), device=x.device)
    first = torch.full((n,), inverse.numel(), dtype=torch.int64, device=x.device)
    first = first.scatter_reduce(0, inverse, positions, "amin")
    if not sorted:
        order = torch.argsort(first)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(n, device=x.device)
        y, first, counts, inverse = y.index_select(dim, order), first[order], counts[order], rank[inverse]
    return y, first, inverse, counts


OPS = [
    gather, gather_elements, gather_nd_11, gather_nd_12, scatter_9, scatter_elements_11, scatter_elements_16,
    scatter_elements_18, scatter_nd_11, scatter_nd_16, scatter_nd_18, reverse_sequence, compress,
    nonzero, unique,
]
