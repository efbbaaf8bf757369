"""Softmax, LogSoftmax and Hardmax.

Before opset 13 these ops coerce the input to 2-D, [prod(shape[:axis]), prod(shape[axis:])], and
normalize each row (default axis 1); from opset 13 they act along the single dimension `axis`
(default -1). Half-precision inputs are computed in float32 and cast back.
"""

from __future__ import annotations

from typing import Callable

import torch

from .opdef import op

_HALF = (torch.float16, torch.bfloat16)


def _axis(axis: int, rank: int) -> int:
    if not -max(rank, 1) <= axis <= max(rank - 1, 0):
        raise ValueError(f"axis {axis} is out of range for an input of rank {rank}")
    return axis % max(rank, 1)


def _along(fn: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor, axis: int) -> torch.Tensor:
    """`fn` applied along `axis` of `x`, computed in float32 for half types."""
    work = x.float() if x.dtype in _HALF else x
    if x.dim() == 0:
        return fn(work.reshape(1), 0).reshape(()).to(x.dtype)
    return fn(work, axis).to(x.dtype)


def _coerced(fn: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor, axis: int) -> torch.Tensor:
    """`fn` applied to the rows of `x` flattened to 2-D at `axis` (the pre-13 semantics)."""
    axis = _axis(axis, x.dim())
    rows = 1
    for d in x.shape[:axis]:
        rows *= d
    cols = 1
    for d in x.shape[axis:]:
        cols *= d
    return _along(fn, x.reshape(rows, cols), 1).reshape(x.shape)


def _hardmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    if x.numel() == 0:
        return torch.zeros_like(x)
    first_max = torch.argmax(x, dim=axis, keepdim=True)  # NOTE: argmax returns the first maximum
    return torch.zeros_like(x).scatter_(axis, first_max, 1)


def _softmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    return torch.softmax(x, axis)


def _log_softmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    return torch.log_softmax(x, axis)


@op("Softmax", since=1)
def softmax_1(x, *, axis: int = 1):
    return _coerced(_softmax, x, axis)


@op("Softmax", since=13)
def softmax_13(x, *, axis: int = -1):
    return _along(_softmax, x, _axis(axis, x.dim()))


@op("LogSoftmax", since=1)
def log_softmax_1(x, *, axis: int = 1):
    return _coerced(_log_softmax, x, axis)


@op("LogSoftmax", since=13)
def log_softmax_13(x, *, axis: int = -1):
    return _along(_log_softmax, x, _axis(axis, x.dim()))


@op("Hardmax", since=1)
def hardmax_1(x, *, axis: int = 1):
    return _coerced(_hardmax, x, axis)


@op("Hardmax", since=13)
def hardmax_13(x, *, axis: int = -1):
    return _along(_hardmax, x, _axis(axis, x.dim()))


OPS = [softmax_1, softmax_13, log_softmax_1, log_softmax_13, hardmax_1, hardmax_13]
