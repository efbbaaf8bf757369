"""Elementwise binary and variadic ops with NumPy-style broadcasting: arithmetic, comparison,
logic, selection and bit manipulation.

ONNX gives every input of these ops one element type and the output that type (bool for
comparisons), while torch promotes mixed types and implements little arithmetic for uint16/32/64.
So each op checks its input types first, and unsigned types are computed exactly through signed
ones: a same-size signed view where only the bits matter (add, mul, bitwise, select), int64
where the order matters (compare, divide), with explicit unsigned algorithms for uint64.
"""

from __future__ import annotations

import functools

import torch

from ..ir import DType, Node
from .opdef import op

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
SIGNED = (torch.int8, torch.int16, torch.int32, torch.int64)
UNSIGNED = (torch.uint8, torch.uint16, torch.uint32, torch.uint64)
INTEGERS = SIGNED + UNSIGNED
NUMERIC = FLOATS + INTEGERS
BOOL = (torch.bool,)

# torch lacks arithmetic for these; a view as the signed type of the same size carries the bits.
_BITS_AS = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def check_inputs(op_name: str, allowed: tuple[torch.dtype, ...], *xs: torch.Tensor) -> None:
    """Raise unless the inputs have one and the same dtype, in `allowed`, and shapes that broadcast."""
    dtypes = {x.dtype for x in xs}
    if len(dtypes) > 1:
        names = ", ".join(_name(x.dtype) for x in xs)
        raise TypeError(f"{op_name} needs inputs of one element type, got {names}")
    for x in xs:
        if x.dtype not in allowed:
            raise TypeError(f"{op_name} does not take {_name(x.dtype)} inputs "
                            f"(it takes {', '.join(_name(d) for d in allowed)})")
    check_broadcast(op_name, *xs)


def check_broadcast(op_name: str, *xs: torch.Tensor) -> None:
    try:
        torch.broadcast_shapes(*(x.shape for x in xs))
    except RuntimeError:
        shapes = ", ".join(str(list(x.shape)) for x in xs)
        raise ValueError(f"{op_name} cannot broadcast the input shapes {shapes} to one shape") from None


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def bool_output(node: Node) -> list[DType]:
    """dtype_rule of ops that answer bool (their output shape may be known only at run time)."""
    return [DType.bool]


def as_bits(x: torch.Tensor) -> torch.Tensor:
    """`x` as a tensor torch can compute on whose bits are the same (a view)."""
    return x.view(_BITS_AS[x.dtype]) if x.dtype in _BITS_AS else x


def _from_bits(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.view(dtype) if dtype in _BITS_AS else x


def _as_int64(x: torch.Tensor) -> torch.Tensor:
    """Integer values as int64 (uint64 values of 2**63 and more wrap around)."""
    return x.view(torch.int64) if x.dtype is torch.uint64 else x.to(torch.int64)


def _ordered(x: torch.Tensor) -> torch.Tensor:
    """A tensor whose signed order and equality are those of `x`'s values."""
    if x.dtype is torch.uint64:
        return x.view(torch.int64) ^ _INT64_MIN
    if x.dtype in _BITS_AS:
        return x.to(torch.int64)
    return x


def _modular(fn, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Add, Sub, Mul: wrap-around arithmetic gives the same bits signed or unsigned."""
    return _from_bits(fn(as_bits(a), as_bits(b)), a.dtype)


def _udivmod64(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unsigned 64-bit quotient and remainder of the uint64 values whose bits `a`, `b` (int64) hold."""
    b_high = b < 0  # b >= 2**63: the quotient is 0 or 1
    divisor = torch.where(b_high, torch.ones_like(b), b)
    half = (a >> 1) & _INT64_MAX
    q = torch.div(half, divisor, rounding_mode="floor") << 1
    r = a - q * divisor
    carry = (r ^ _INT64_MIN) >= (divisor ^ _INT64_MIN)
    q = q + carry.to(torch.int64)
    r = r - torch.where(carry, divisor, torch.zeros_like(divisor))
    a_ge_b = (a ^ _INT64_MIN) >= (b ^ _INT64_MIN)
    q = torch.where(b_high, a_ge_b.to(torch.int64), q)
    r = torch.where(b_high, torch.where(a_ge_b, a - b, a), r)
    return q, r


def _integer_divmod(a: torch.Tensor, b: torch.Tensor, rounding: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact integer quotient (rounded "trunc" or "floor") and the matching remainder, in a's dtype."""
    dtype = a.dtype
    if dtype is torch.uint64:
        q, r = _udivmod64(a.view(torch.int64), b.view(torch.int64))
        return q.view(dtype), r.view(dtype)
    wa, wb = (a.to(torch.int64), b.to(torch.int64)) if dtype in _BITS_AS else (a, b)
    if dtype in SIGNED:
        # NOTE: the CPU traps (SIGFPE) on INT_MIN / -1; dividing by -1 is a wrapping negation.
        minus_one = wb == -1
        q = torch.where(minus_one, -wa, torch.div(wa, torch.where(minus_one, 1, wb), rounding_mode=rounding))
    else:
        q = torch.div(wa, wb, rounding_mode=rounding)
    r = wa - q * wb
    return q.to(dtype), r.to(dtype)


@op("Add", since=7, elementwise=True)
def add(a, b):
    check_inputs("Add", NUMERIC, a, b)
    return _modular(torch.add, a, b)


@op("Sub", since=7, elementwise=True)
def sub(a, b):
    check_inputs("Sub", NUMERIC, a, b)
    return _modular(torch.sub, a, b)


@op("Mul", since=7, elementwise=True)
def mul(a, b):
    check_inputs("Mul", NUMERIC, a, b)
    return _modular(torch.mul, a, b)


@op("Div", since=7, elementwise=True)
def div(a, b):
    check_inputs("Div", NUMERIC, a, b)
    if a.dtype.is_floating_point:
        return a / b
    return _integer_divmod(a, b, "trunc")[0]


@op("Pow", since=7, elementwise=True)
def pow_(x, y):
    check_inputs("Pow", FLOATS + (torch.int32, torch.int64), x)
    check_inputs("Pow (exponent)", NUMERIC, y)
    check_broadcast("Pow", x, y)
    if x.dtype.is_floating_point:
        return torch.pow(x, y if y.dtype.is_floating_point else _as_int64(y)).to(x.dtype)
    if y.dtype.is_floating_point:  # the power in double, truncated back to the integer type
        return torch.pow(x.to(torch.float64), y.to(torch.float64)).to(x.dtype)
    base, exponent = _as_int64(x), _as_int64(y)
    powered = torch.pow(base, exponent.clamp(min=0))
    odd = (exponent & 1) == 1
    # A negative power of an integer truncates to 0, except for the bases 1 and -1.
    negative = torch.where(base == 1, torch.ones_like(base),
                           torch.where(base == -1, torch.where(odd, -torch.ones_like(base), torch.ones_like(base)),
                                       torch.zeros_like(base)))
    return torch.where(exponent < 0, negative, powered).to(x.dtype)


def _check_fmod(fmod: int) -> None:
    if fmod not in (0, 1):
        raise ValueError(f"Mod's fmod attribute must be 0 or 1, got {fmod}")


def _float_floor_mod(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a - floor(a / b) * b with the sign of b, zeros included (ONNX Mod-28, Python's %)."""
    r = torch.fmod(a, b)
    r = torch.where((r != 0) & ((r < 0) != (b < 0)), r + b, r)
    return torch.where(r == 0, torch.copysign(torch.zeros_like(r), b), r)


def _mod(a: torch.Tensor, b: torch.Tensor, fmod: int) -> torch.Tensor:
    if a.dtype.is_floating_point:
        return torch.fmod(a, b) if fmod else _float_floor_mod(a, b)
    return _integer_divmod(a, b, "trunc" if fmod else "floor")[1]


@op("Mod", since=10)
def mod_10(a, b, *, fmod: int = 0):
    check_inputs("Mod", NUMERIC, a, b)
    _check_fmod(fmod)
    if a.dtype.is_floating_point and not fmod:
        raise TypeError("Mod of floating-point inputs needs fmod=1 before opset 28")
    return _mod(a, b, fmod)


@op("Mod", since=28)
def mod_28(a, b, *, fmod: int = 0):
    check_inputs("Mod", NUMERIC, a, b)
    _check_fmod(fmod)
    return _mod(a, b, fmod)


def _select(cond: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _from_bits(torch.where(cond, as_bits(x), as_bits(y)), x.dtype)


def maximum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise maximum of one dtype: NaN propagates, integers (unsigned included) compare exactly."""
    if a.dtype.is_floating_point:
        return torch.maximum(a, b)
    return _select(_ordered(a) > _ordered(b), a, b)


def minimum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise minimum, as `maximum`."""
    if a.dtype.is_floating_point:
        return torch.minimum(a, b)
    return _select(_ordered(a) < _ordered(b), a, b)


def _fold(combine, xs):
    """combine(...combine(combine(x0, x1), x2)..., xn), broadcasting; a single input comes back as a copy."""
    return functools.reduce(combine, xs[1:], xs[0].clone())


@op("Max", since=8, elementwise=True)
def max_(*xs):
    check_inputs("Max", NUMERIC, *xs)
    return _fold(maximum, xs)


@op("Min", since=8, elementwise=True)
def min_(*xs):
    check_inputs("Min", NUMERIC, *xs)
    return _fold(minimum, xs)


@op("Sum", since=8, elementwise=True)
def sum_(*xs):
    check_inputs("Sum", FLOATS, *xs)
    return _fold(torch.add, xs)


@op("Mean", since=8)
def mean(*xs):
    check_inputs("Mean", FLOATS, *xs)
    wide = torch.float64 if xs[0].dtype is torch.float64 else torch.float32
    total = xs[0].to(wide)
    for x in xs[1:]:
        total = total + x.to(wide)
    return (total / len(xs)).to(xs[0].dtype)


def _compare(name: str, fn, a: torch.Tensor, b: torch.Tensor, allowed=NUMERIC) -> torch.Tensor:
    check_inputs(name, allowed, a, b)
    return fn(_ordered(a), _ordered(b))


@op("Equal", since=7, dtype_rule=bool_output, elementwise=True)
def equal(a, b):
    return _compare("Equal", torch.eq, a, b, NUMERIC + BOOL)


@op("Less", since=7, dtype_rule=bool_output, elementwise=True)
def less(a, b):
    return _compare("Less", torch.lt, a, b)


@op("LessOrEqual", since=12, dtype_rule=bool_output, elementwise=True)
def less_or_equal(a, b):
    return _compare("LessOrEqual", torch.le, a, b)


@op("Greater", since=7, dtype_rule=bool_output, elementwise=True)
def greater(a, b):
    return _compare("Greater", torch.gt, a, b)


@op("GreaterOrEqual", since=12, dtype_rule=bool_output, elementwise=True)
def greater_or_equal(a, b):
    return _compare("GreaterOrEqual", torch.ge, a, b)


@op("And", since=7, elementwise=True)
def and_(a, b):
    check_inputs("And", BOOL, a, b)
    return torch.logical_and(a, b)


@op("Or", since=7, elementwise=True)
def or_(a, b):
    check_inputs("Or", BOOL, a, b)
    return torch.logical_or(a, b)


@op("Xor", since=7, elementwise=True)
def xor(a, b):
    check_inputs("Xor", BOOL, a, b)
    return torch.logical_xor(a, b)


@op("Not", since=1, elementwise=True)
def not_(x):
    check_inputs("Not", BOOL, x)
    return torch.logical_not(x)


@op("Where", since=9, dtype_rule=lambda node: [node.inputs[1].dtype], elementwise=True)
def where(condition, x, y):
    if condition.dtype is not torch.bool:
        raise TypeError(f"Where's condition must be bool, got {_name(condition.dtype)}")
    check_inputs("Where", NUMERIC + BOOL, x, y)
    check_broadcast("Where", condition, x, y)
    return _select(condition, x, y)


@op("BitShift", since=11)
def bit_shift(x, y, *, direction: str):
    if direction not in ("LEFT", "RIGHT"):
        raise ValueError(f"BitShift's direction must be 'LEFT' or 'RIGHT', got {direction!r}")
    check_inputs("BitShift", INTEGERS, x, y)
    width = x.dtype.itemsize * 8
    if x.dtype is torch.uint64:
        value, amount = x.view(torch.int64), y.view(torch.int64)
    else:
        value, amount = x.to(torch.int64), y.to(torch.int64)
    # NOTE: a shift by a negative amount or by the width or more leaves only the sign fill.
    in_range = (amount >= 0) & (amount < width)
    amount = amount.clamp(0, width - 1)
    if direction == "LEFT":
        shifted = torch.where(in_range, value << amount, torch.zeros_like(value))
    elif x.dtype is torch.uint64:
        logical = ((value >> 1) & _INT64_MAX) >> (amount - 1).clamp(min=0)
        shifted = torch.where(amount == 0, value, logical)
        shifted = torch.where(in_range, shifted, torch.zeros_like(value))
    else:
        shifted = torch.where(in_range, value >> amount, torch.where(value < 0, -1, 0))
    return shifted.view(x.dtype) if x.dtype is torch.uint64 else shifted.to(x.dtype)


def _bitwise(name: str, fn, *xs: torch.Tensor) -> torch.Tensor:
    check_inputs(name, INTEGERS, *xs)
    return _from_bits(fn(*(as_bits(x) for x in xs)), xs[0].dtype)


@op("BitwiseAnd", since=18)
def bitwise_and(a, b):
    return _bitwise("BitwiseAnd", torch.bitwise_and, a, b)


@op("BitwiseOr", since=18)
def bitwise_or(a, b):
    return _bitwise("BitwiseOr", torch.bitwise_or, a, b)


@op("BitwiseXor", since=18)
def bitwise_xor(a, b):
    return _bitwise("BitwiseXor", torch.bitwise_xor, a, b)


@op("BitwiseNot", since=18)
def bitwise_not(x):
    return _bitwise("BitwiseNot", torch.bitwise_not, x)


OPS = [
    add, sub, mul, div, pow_, mod_10, mod_28, max_, min_, sum_, mean,
    equal, less, less_or_equal, greater, greater_or_equal, and_, or_, xor, not_, where,
    bit_shift, bitwise_and, bitwise_or, bitwise_xor, bitwise_not,
]
