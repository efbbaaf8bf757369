"""Conversions into and out of the types braze emulates (DType.emulated: int4, uint4, int2, uint2,
float4_e2m1fn, float8_e8m0fnu), whose tensors hold one element a byte of their storage dtype.

`decode` gives the values a storage tensor holds, in a type torch computes with; `encode` turns any
tensor into the storage of an emulated type. braze implements these rules itself, so that its results
do not depend on the version of any supporting library (ml_dtypes, whose conversions ONNX's reference
evaluator uses, changed them between 0.6 and 0.7: out-of-range int4 values wrapped, then became 0):

  - integer types (ONNX's int4.md and int2.md: "rounding to the nearest-even integer and truncating"):
    floats round to the nearest integer, ties to even, then every value wraps around (keeps its low
    bits, two's complement for the signed types). NaN, infinities and values beyond int32's range,
    of which the spec says nothing, give 0;
  - float4_e2m1fn (0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives): round to nearest even, saturating
    at 6 (infinities too); NaN, which the type lacks, becomes a zero of the opposite sign, as ONNX's
    reference implementation gives (float4.md would saturate it to 6);
  - float8_e8m0fnu (2^-127 .. 2^127, NaN): onnx.numpy_helper.to_float8e8m0, on the float32 exponent,
    rounded as `round_mode` says (up: any fraction rounds up, down: truncates, nearest); with `saturate`
    the top exponent does not round up into NaN; NaN and infinities give NaN, zero and negative values
    use their magnitude's exponent.

NOTE: onnxruntime (1.32) rounds ties away from zero before wrapping (2.5 -> 3 where braze and the spec
give 2); the node suite's expected values for casts into these integer types are computed by ml_dtypes
when the suite is collected, so they follow whichever ml_dtypes is installed (docs/conformance.md).
"""

from __future__ import annotations

import torch

from ..ir import DType

_BITS = {DType.int4: 4, DType.uint4: 4, DType.int2: 2, DType.uint2: 2}
_SIGNED = (DType.int4, DType.int2)
_FLOAT4 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
# The midpoints between neighbouring float4 magnitudes; a tie goes to the even code of the two.
_FLOAT4_MIDPOINTS = [(a + b) / 2 for a, b in zip(_FLOAT4, _FLOAT4[1:])]
_E8M0_MIN_BITS = 0x00400000  # 2^-127 as float32 bits (a subnormal)


def integer_range(dtype: DType) -> tuple[int, int]:
    """The smallest and largest value of an integer type, emulated or not."""
    if dtype in _BITS:
        bits = _BITS[dtype]
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if dtype in _SIGNED else (0, (1 << bits) - 1)
    info = torch.iinfo(dtype.torch)
    return info.min, info.max


def decode(x: torch.Tensor, dtype: DType) -> torch.Tensor:
    """The values a tensor of `dtype` holds: itself for the integer types, float32 for the float types."""
    if dtype is DType.float4_e2m1fn:  # bits s.ee.m: 0.m (e = 0) or 1.m * 2^(e - 1)
        exponent, mantissa = ((x >> 1) & 3).to(torch.float32), (x & 1).to(torch.float32)
        magnitude = (mantissa / 2 + (exponent > 0)) * torch.exp2((exponent - 1).clamp(min=0))
        return torch.where((x & 8) != 0, -magnitude, magnitude)
    if dtype is DType.float8_e8m0fnu:
        exponent = x.to(torch.int32)
        bits = torch.where(exponent == 0, _E8M0_MIN_BITS, exponent << 23)
        return torch.where(exponent == 255, float("nan"), bits.view(torch.float32))
    return x


def encode(x: torch.Tensor, dtype: DType, saturate: bool = True, round_mode: str = "up") -> torch.Tensor:
    """`x` (of any torch dtype) as a new tensor of emulated `dtype`, stored in `dtype.torch`; see the module
    docstring for the rules. `saturate` and `round_mode` concern float8_e8m0fnu only."""
    if dtype is DType.float4_e2m1fn:
        return _to_float4(x)
    if dtype is DType.float8_e8m0fnu:
        return _to_e8m0(x, saturate, round_mode)
    return _wrap(_as_int64(x), dtype)


def _as_int64(x: torch.Tensor) -> torch.Tensor:
    if not x.dtype.is_floating_point:
        return x.to(torch.int64)
    x = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    # NOTE: NaN fails the test too; torch.round rounds ties to even
    return torch.where(x.abs() < 2**31, x, 0).round().to(torch.int64)


def _wrap(v: torch.Tensor, dtype: DType) -> torch.Tensor:
    bits = _BITS[dtype]
    v = v & ((1 << bits) - 1)
    if dtype in _SIGNED:  # two's complement: the top bit counts negative
        v = torch.where(v >= 1 << (bits - 1), v - (1 << bits), v)
    return v.to(dtype.torch)


def _to_float4(x: torch.Tensor) -> torch.Tensor:
    x = x.to(torch.float64 if x.dtype == torch.float64 or not x.dtype.is_floating_point else torch.float32)
    magnitude = x.abs()
    code = torch.zeros(x.shape, dtype=torch.uint8, device=x.device)
    for k, midpoint in enumerate(_FLOAT4_MIDPOINTS):  # k even: a tie stays at code k; odd: it goes to k + 1
        code += (magnitude > midpoint) if k % 2 == 0 else (magnitude >= midpoint)
    negative = torch.signbit(x) ^ torch.isnan(x)
    return code | (negative.to(torch.uint8) << 3)


def _to_e8m0(x: torch.Tensor, saturate: bool, round_mode: str) -> torch.Tensor:
    """onnx.numpy_helper.to_float8e8m0, on float32 bits."""
    bits = x.to(torch.float32).contiguous().view(torch.int32)
    exponent = (bits >> 23) & 0xFF
    if round_mode == "up":
        round_up = (bits & 0x7FFFFF) != 0
    elif round_mode == "nearest":
        guard, rest = (bits & 0x400000) != 0, (bits & 0x3FFFFF) != 0
        round_up = guard & (rest | (exponent > 0))
    elif round_mode == "down":
        round_up = torch.zeros_like(exponent, dtype=torch.bool)
    else:
        raise ValueError(f"round_mode must be 'up', 'down' or 'nearest', got {round_mode!r}")
    if saturate:
        round_up &= exponent != 0xFE
    exponent = torch.where(exponent == 0xFF, 0xFF, exponent + round_up.to(torch.int32))
    return exponent.to(torch.uint8)
