"""Reductions: the Reduce* family, ArgMax/ArgMin, TopK and CumSum.

The Reduce* ops take their axes as an attribute until ReduceSum-13 and the others' opset 18, then
as an optional input, with `noop_with_empty_axes`. Reducing over no axes at all (that flag set and
no axes given) still applies the per-element part: ReduceSumSquare squares, ReduceL1 takes
absolute values, as onnxruntime and the ONNX reference do. A reduction over an empty set gives the
reduction's identity (0 for sums, 1 for products, -inf or the dtype's minimum for ReduceMax, ...)
and ReduceMean gives 0, as onnxruntime does.

Half-precision inputs accumulate in float32; integer sums and products accumulate in int64 and
wrap back to the input's type; integer means truncate toward zero, as onnxruntime does.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..ir import DType
from .infer import Inferred
from .opdef import OpDef, op

_HALF = (torch.float16, torch.bfloat16)
_WIDEN = (torch.uint16, torch.uint32)  # unsigned types torch cannot compare
_SIGN_BIT = torch.iinfo(torch.int64).min
_SIGNED_VIEW = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}

Reducer = Callable[[torch.Tensor, tuple[int, ...], bool], torch.Tensor]


def _axis(axis: int, rank: int) -> int:
    if not -max(rank, 1) <= axis <= max(rank - 1, 0):
        raise ValueError(f"axis {axis} is out of range for an input of rank {rank}")
    return axis % max(rank, 1)


def _axes(axes: Sequence[int], rank: int) -> tuple[int, ...]:
    dims = tuple(_axis(a, rank) for a in axes)
    if len(set(dims)) != len(dims):
        raise ValueError(f"axes {list(axes)} name a dimension twice")
    return dims


def _comparable(x: torch.Tensor) -> torch.Tensor:
    """`x` in a dtype torch can order on the CPU, with the same order."""
    if x.dtype in _WIDEN:
        return x.to(torch.int64)
    if x.dtype == torch.uint64:  # flipping the sign bit maps uint64's order onto int64's
        return x.view(torch.int64) ^ _SIGN_BIT
    return x


def _uncomparable(key: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The inverse of `_comparable`."""
    return (key ^ _SIGN_BIT).view(torch.uint64) if dtype == torch.uint64 else key.to(dtype)


def _float(x: torch.Tensor) -> torch.Tensor:
    """`x` in a floating type to compute a non-integer result in (float64 for integers)."""
    return x if x.is_floating_point() else x.to(torch.float64)


def _sum(x, dims, keep):
    return torch.sum(x, dims, keepdim=keep)


def _sum_square(x, dims, keep):
    return torch.sum(x * x, dims, keepdim=keep)


def _l1(x, dims, keep):
    return torch.sum(x.abs() if x.is_signed() else x, dims, keepdim=keep)


def _l2(x, dims, keep):
    return torch.sqrt(_float(torch.sum(x * x, dims, keepdim=keep)))


def _log_sum(x, dims, keep):
    return torch.log(_float(torch.sum(x, dims, keepdim=keep)))


def _log_sum_exp(x, dims, keep):
    return torch.logsumexp(_float(x), dims, keepdim=keep)


def _mean(x, dims, keep):
    if x.is_floating_point():
        return torch.mean(x, dims, keepdim=keep)
    count = 1
    for d in dims:
        count *= x.shape[d]
    return torch.div(torch.sum(x, dims, keepdim=keep), count, rounding_mode="trunc")


def _prod(x, dims, keep):
    for d in sorted(dims, reverse=True):
        x = torch.prod(x, d, keepdim=keep)
    return x


def _max(x, dims, keep):
    return _uncomparable(torch.amax(_comparable(x), dims, keepdim=keep), x.dtype)


def _min(x, dims, keep):
    return _uncomparable(torch.amin(_comparable(x), dims, keepdim=keep), x.dtype)


def _zero(dtype: torch.dtype) -> int:
    return 0


def _lowest(dtype: torch.dtype) -> float | int | bool:
    if dtype == torch.bool:
        return False
    return -torch.inf if dtype.is_floating_point else torch.iinfo(dtype).min


def _highest(dtype: torch.dtype) -> float | int | bool:
    if dtype == torch.bool:
        return True
    return torch.inf if dtype.is_floating_point else torch.iinfo(dtype).max


# name: (reduction, opset from which `axes` is an input, value over an empty set when torch has none)
REDUCTIONS: dict[str, tuple[Reducer, int, Callable[[torch.dtype], float | int | bool] | None]] = {
    "ReduceSum": (_sum, 13, None),
    "ReduceSumSquare": (_sum_square, 18, None),
    "ReduceMean": (_mean, 18, _zero),
    "ReduceProd": (_prod, 18, None),
    "ReduceMax": (_max, 18, _lowest),
    "ReduceMin": (_min, 18, _highest),
    "ReduceL1": (_l1, 18, None),
    "ReduceL2": (_l2, 18, None),
    "ReduceLogSum": (_log_sum, 18, None),
    "ReduceLogSumExp": (_log_sum_exp, 18, None),
}


def _reduce(name: str, x: torch.Tensor, axes: Sequence[int] | None, keepdims: int, noop: bool) -> torch.Tensor:
    fn, _, empty_value = REDUCTIONS[name]
    work = x.float() if x.dtype in _HALF else x
    keep = bool(keepdims)
    if not axes and noop:
        work, dims, keep = work.unsqueeze(-1), (x.dim(),), False
    elif not axes:
        dims = tuple(range(x.dim()))
    else:
        dims = _axes(axes, x.dim())
    if empty_value is not None and any(work.shape[d] == 0 for d in dims):
        shape = [1 if d in dims else n for d, n in enumerate(work.shape) if keep or d not in dims]
        return torch.full(shape, empty_value(x.dtype), dtype=x.dtype, device=x.device)
    return fn(work, dims, keep).to(x.dtype)


def _with_attr_axes(name: str) -> OpDef:
    def reduce(data, *, axes: list[int] | None = None, keepdims: int = 1):
        return _reduce(name, data, axes, keepdims, noop=False)

    reduce.__name__ = reduce.__qualname__ = f"{name}_1"
    return op(name, since=1)(reduce)


def _with_input_axes(name: str, since: int) -> OpDef:
    def reduce(data, axes=None, *, keepdims: int = 1, noop_with_empty_axes: int = 0):
        listed = None if axes is None else [int(a) for a in axes.reshape(-1).tolist()]
        return _reduce(name, data, listed, keepdims, noop=bool(noop_with_empty_axes))

    reduce.__name__ = reduce.__qualname__ = f"{name}_{since}"
    return op(name, since=since, value_inputs=(1,))(reduce)


def _arg(x: torch.Tensor, axis: int, keepdims: int, select_last_index: int, largest: bool) -> torch.Tensor:
    what = "ArgMax" if largest else "ArgMin"
    if x.dtype == torch.bool:
        raise ValueError(f"{what} does not take bool inputs")
    x = _comparable(x)
    axis = _axis(axis, x.dim())
    if x.dim() == 0:
        return torch.zeros((), dtype=torch.int64, device=x.device)
    if x.shape[axis] == 0:
        raise ValueError(f"{what} along axis {axis} of an input of shape {list(x.shape)}: the axis is empty")
    pick = torch.argmax if largest else torch.argmin
    if select_last_index:
        last = x.shape[axis] - 1
        return last - pick(torch.flip(x, (axis,)), dim=axis, keepdim=bool(keepdims))
    return pick(x, dim=axis, keepdim=bool(keepdims))  # NOTE: torch picks the first extremum


@op("ArgMax", since=1)
def argmax_1(data, *, axis: int = 0, keepdims: int = 1):
    return _arg(data, axis, keepdims, 0, largest=True)


@op("ArgMax", since=12)
def argmax_12(data, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0):
    return _arg(data, axis, keepdims, select_last_index, largest=True)


@op("ArgMin", since=1)
def argmin_1(data, *, axis: int = 0, keepdims: int = 1):
    return _arg(data, axis, keepdims, 0, largest=False)


@op("ArgMin", since=12)
def argmin_12(data, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0):
    return _arg(data, axis, keepdims, select_last_index, largest=False)


def _top_k(x: torch.Tensor, k: int, axis: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest (or smallest) along `axis`, sorted; equal values keep their index order."""
    if x.dtype == torch.bool or x.dim() == 0:
        raise ValueError("TopK takes numeric inputs of rank 1 or more")
    axis = _axis(axis, x.dim())
    n = x.shape[axis]
    if not 0 <= k <= n:
        raise ValueError(f"k = {k} is out of range for axis {axis} of length {n}")
    key = _comparable(x)
    work = key.float() if key.dtype in _HALF else key
    order = torch.sort(work, dim=axis, descending=largest, stable=True).indices.narrow(axis, 0, k)
    signed = _SIGNED_VIEW.get(x.dtype, x.dtype)  # torch cannot gather wide unsigned types
    return torch.gather(x.view(signed), axis, order).view(x.dtype), order


def _k_value(k: torch.Tensor) -> int:
    if k.numel() != 1:
        raise ValueError(f"k must hold one value, it has shape {list(k.shape)}")
    return int(k.reshape(-1)[0])


def _topk_dtypes(node) -> list[DType]:
    return [node.inputs[0].dtype, DType.int64]


@op("TopK", since=1)
def topk_1(x, *, k: int, axis: int = -1):
    return _top_k(x, k, axis, largest=True)


@op("TopK", since=10, value_inputs=(1,), dtype_rule=_topk_dtypes)
def topk_10(x, k, *, axis: int = -1):
    return _top_k(x, _k_value(k), axis, largest=True)


@op("TopK", since=11, value_inputs=(1,), dtype_rule=_topk_dtypes)
def topk_11(x, k, *, axis: int = -1, largest: int = 1, sorted: int = 1):
    return _top_k(x, _k_value(k), axis, largest=bool(largest))


def _cumsum_infer(node, values) -> list[Inferred]:
    x, axis = node.inputs[0], values[1]
    if axis is not None and x.shape is not None:
        _cumsum_axis(axis, len(x.shape))
    if node.inputs[1].dtype not in (DType.int32, DType.int64):
        raise ValueError(f"the axis input must be int32 or int64, not {node.inputs[1].dtype}")
    return [Inferred(x.dtype, x.shape)]


def _cumsum_axis(axis: torch.Tensor, rank: int) -> int:
    if axis.numel() != 1:
        raise ValueError(f"axis must hold one value, it has shape {list(axis.shape)}")
    return _axis(int(axis.reshape(-1)[0]), rank)


@op("CumSum", since=11, infer=_cumsum_infer)
def cumsum(x, axis, *, exclusive: int = 0, reverse: int = 0):
    dim = _cumsum_axis(axis, x.dim())
    if x.dim() == 0:
        return torch.zeros_like(x) if exclusive else x.clone()
    work = x.float() if x.dtype in _HALF else x
    if reverse:
        work = torch.flip(work, (dim,))
    total = torch.cumsum(work, dim)
    if exclusive:
        zeros = torch.zeros_like(total.narrow(dim, 0, min(1, total.shape[dim])))
        total = torch.cat([zeros, total.narrow(dim, 0, max(total.shape[dim] - 1, 0))], dim)
    if reverse:
        total = torch.flip(total, (dim,))
    return total.to(x.dtype)


OPS = [
    *(_with_attr_axes(name) for name in REDUCTIONS),
    *(_with_input_axes(name, since) for name, (_, since, _) in REDUCTIONS.items()),
    argmax_1, argmax_12, argmin_1, argmin_12, topk_1, topk_10, topk_11, cumsum,
]
