"""Unary math: roots, exponentials, rounding, sign, trigonometric and hyperbolic functions,
and the NaN/infinity tests.

Most of these take floating-point tensors only (torch would silently promote an integer input
to float, which ONNX does not allow); Neg, Abs and Sign also take integers and keep their type.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .elementwise import FLOATS, INTEGERS, SIGNED, as_bits, bool_output, check_inputs
from .opdef import OpDef, op


def _floating(name: str, since: int, fn: Callable[[torch.Tensor], torch.Tensor], **options: Any) -> OpDef:
    """The OpDef of a unary op on floating-point tensors that `fn` computes."""

    def reference(x):
        check_inputs(name, FLOATS, x)
        return fn(x)

    reference.__name__ = reference.__qualname__ = name.lower()
    return op(name, since=since, elementwise=True, **options)(reference)


SQRT = _floating("Sqrt", 6, torch.sqrt)
EXP = _floating("Exp", 6, torch.exp)
LOG = _floating("Log", 6, torch.log)
RECIPROCAL = _floating("Reciprocal", 6, torch.reciprocal)
ERF = _floating("Erf", 9, torch.erf)
FLOOR = _floating("Floor", 6, torch.floor)
CEIL = _floating("Ceil", 6, torch.ceil)
ROUND = _floating("Round", 11, torch.round)  # torch rounds halves to even, as ONNX asks
SIN = _floating("Sin", 7, torch.sin)
COS = _floating("Cos", 7, torch.cos)
TAN = _floating("Tan", 7, torch.tan)
ASIN = _floating("Asin", 7, torch.asin)
ACOS = _floating("Acos", 7, torch.acos)
ATAN = _floating("Atan", 7, torch.atan)
SINH = _floating("Sinh", 9, torch.sinh)
COSH = _floating("Cosh", 9, torch.cosh)
ASINH = _floating("Asinh", 9, torch.asinh)
ACOSH = _floating("Acosh", 9, torch.acosh)
ATANH = _floating("Atanh", 9, torch.atanh)
ISNAN = _floating("IsNaN", 9, torch.isnan, dtype_rule=bool_output)


@op("Neg", since=6, elementwise=True)
def neg(x):
    check_inputs("Neg", FLOATS + SIGNED, x)
    return torch.neg(x)


@op("Abs", since=6, elementwise=True)
def abs_(x):
    check_inputs("Abs", FLOATS + INTEGERS, x)
    if not x.dtype.is_signed:
        return x.clone()
    return torch.abs(x)


@op("Sign", since=9, elementwise=True)
def sign(x):
    check_inputs("Sign", FLOATS + INTEGERS, x)
    if not x.dtype.is_signed:
        return (as_bits(x) != 0).to(x.dtype)
    return torch.sign(x)


@op("IsInf", since=10, dtype_rule=bool_output, elementwise=True)
def is_inf(x, *, detect_negative: int = 1, detect_positive: int = 1):
    check_inputs("IsInf", FLOATS, x)
    found = torch.zeros_like(x, dtype=torch.bool)
    if detect_positive:
        found = found | torch.isposinf(x)
    if detect_negative:
        found = found | torch.isneginf(x)
    return found


OPS = [
    SQRT, EXP, LOG, RECIPROCAL, ERF, FLOOR, CEIL, ROUND, SIN, COS, TAN, ASIN, ACOS, ATAN,
    SINH, COSH, ASINH, ACOSH, ATANH, ISNAN, neg, abs_, sign, is_inf,
]
