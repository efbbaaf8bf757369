"""Ops of no larger family: CumProd, Shrink, Det and BitCast.

CumProd multiplies integers exactly, wrapping around in the input's width as onnxruntime does.
Shrink on integers is exact too: the result is trunc(x -/+ bias), computed in int64 without a
detour through float. BitCast reinterprets the bits of each element as another type of the same
width.
"""

from __future__ import annotations

import math

import torch

from ..errors import BrazeError
from ..ir import DType, Node
from .cast import onnx_dtype
from .elementwise import FLOATS, NUMERIC, check_inputs
from .infer import Inferred, describe_node
from .opdef import op
from .shape import axis_index

_HALF = (torch.float16, torch.bfloat16)
_CUMPROD_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32, torch.int64,
                  torch.uint32, torch.uint64)


def _cumprod_axis(axis: torch.Tensor, rank: int) -> int:
    if axis.numel() != 1 or axis.dim() > 1:
        raise ValueError(f"axis must be a scalar, got shape {list(axis.shape)}")
    return axis_index(int(axis.reshape(-1)[0]), max(rank, 1))


def _infer_cumprod(node: Node, values) -> list[Inferred]:
    x, axis = node.inputs[0], node.inputs[1]
    if axis.dtype not in (DType.int32, DType.int64):
        raise ValueError(f"the axis input must be int32 or int64, not {axis.dtype}")
    if x.dtype.torch not in _CUMPROD_TYPES:
        raise TypeError(f"CumProd does not take {x.dtype} inputs")
    if values[0] is not None and values[1] is not None:
        y = cumprod(*values[:2], **node.attrs)
        return [Inferred(x.dtype, tuple(y.shape), y)]
    if values[1] is not None and x.shape is not None:
        _cumprod_axis(values[1], len(x.shape))
    return [Inferred(x.dtype, x.shape)]


@op("CumProd", since=26, infer=_infer_cumprod)
def cumprod(x, axis, *, exclusive: int = 0, reverse: int = 0):
    dim = _cumprod_axis(axis, x.dim())
    if x.dim() == 0:
        return torch.ones_like(x) if exclusive else x.clone()
    if x.dtype in _HALF:
        work = x.float()
    elif x.dtype is torch.uint64:
        work = x.view(torch.int64)  # products modulo 2**64 have the same bits signed or not
    else:
        work = x.to(torch.int64) if not x.dtype.is_floating_point else x
    if reverse:
        work = torch.flip(work, (dim,))
    if exclusive:
        ones = torch.ones_like(work.narrow(dim, 0, min(1, work.shape[dim])))
        work = torch.cat([ones, work.narrow(dim, 0, max(work.shape[dim] - 1, 0))], dim)
    total = torch.cumprod(work, dim)
    if reverse:
        total = torch.flip(total, (dim,))
    return total.view(torch.uint64) if x.dtype is torch.uint64 else total.to(x.dtype)


def _shift(x: torch.Tensor, big: torch.Tensor, by: float) -> torch.Tensor:
    """trunc(x + by) for integers x (int64; `big` marks uint64 values past int64's range)."""
    low, high = math.floor(by), math.ceil(by)
    return torch.where((x + low >= 0) | big, x + low, x + high)


@op("Shrink", since=9)
def shrink(x, *, bias: float = 0.0, lambd: float = 0.5):
    check_inputs("Shrink", NUMERIC, x)
    if x.dtype.is_floating_point:
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero))
    work = x.view(torch.int64) if x.dtype is torch.uint64 else x.to(torch.int64)
    big = work < 0 if x.dtype is torch.uint64 else torch.zeros_like(work, dtype=torch.bool)
    below = (work < math.ceil(-lambd)) & ~big  # x < -lambd, exactly
    above = (work > math.floor(lambd)) | big  # x > lambd
    y = torch.where(below, _shift(work, big, bias), torch.where(above, _shift(work, big, -bias), 0))
    return y.view(torch.uint64) if x.dtype is torch.uint64 else y.to(x.dtype)


@op("Det", since=11)
def det(x):
    check_inputs("Det", FLOATS, x)
    if x.dim() < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"X must be [..., M, M], got shape {list(x.shape)}")
    if x.dtype in _HALF:
        return torch.linalg.det(x.float()).to(x.dtype)
    return torch.linalg.det(x)


def _bitcast_type(node: Node) -> DType:
    where = describe_node(node)
    target = onnx_dtype(node.attrs["to"], where)
    source = node.inputs[0].dtype
    if source.torch.itemsize != target.torch.itemsize:
        raise BrazeError(f"{where}: BitCast needs types of one width; {source} has "
                         f"{8 * source.torch.itemsize} bits, {target} {8 * target.torch.itemsize}")
    return target


def _infer_bitcast(node: Node, values) -> list[Inferred]:
    target = _bitcast_type(node)
    if values[0] is not None:
        return [Inferred(target, tuple(values[0].shape), values[0].view(target.torch))]
    return [Inferred(target, node.inputs[0].shape)]


@op("BitCast", since=26, infer=_infer_bitcast)
def bitcast(x, *, to: int):
    return x.view(onnx_dtype(to, "BitCast").torch)


OPS = [cumprod, shrink, det, bitcast]
