"""Cast and CastLike: element type conversion, with ONNX's float8 rules.

Between ordinary types a cast is torch's conversion: floats truncate toward zero into integers,
integers wrap around when narrowed, anything nonzero is True. Into float8 ONNX asks (from opset
19) for `saturate`: out-of-range values and infinities become the type's largest finite value;
without it they become NaN, or infinity for E5M2. The types braze emulates (int4, uint4, int2,
uint2, float4_e2m1fn, float8_e8m0fnu) convert through `emulated.py`, where `round_mode` (opset 24)
applies to float8_e8m0fnu. Strings and complex numbers are refused.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import BrazeError, UnsupportedError
from ..ir import DType, Node
from .emulated import decode, encode
from .infer import Inferred, describe_node
from .opdef import op

# TensorProto.DataType codes: the braze dtype, or the ONNX name of a type braze does not have.
_ONNX_TYPES: dict[int, DType | str] = {
    1: DType.float32, 2: DType.uint8, 3: DType.int8, 4: DType.uint16, 5: DType.int16, 6: DType.int32,
    7: DType.int64, 8: "STRING", 9: DType.bool, 10: DType.float16, 11: DType.float64, 12: DType.uint32,
    13: DType.uint64, 14: "COMPLEX64", 15: "COMPLEX128", 16: DType.bfloat16, 17: DType.float8_e4m3fn,
    18: DType.float8_e4m3fnuz, 19: DType.float8_e5m2, 20: DType.float8_e5m2fnuz, 21: DType.uint4, 22: DType.int4,
    23: DType.float4_e2m1fn, 24: DType.float8_e8m0fnu, 25: DType.uint2, 26: DType.int2, 27: "FLOAT6E2M3",
    28: "FLOAT6E3M2",
}
_FLOAT8 = (torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz)
# torch saturates into E4M3FN; past the midpoint between its max (448) and the next step (480)
# a value rounds out of range, and ONNX wants NaN there when not saturating.
_E4M3FN_OVERFLOW = 464.0
_ROUND_MODES = ("up", "down", "nearest")


def onnx_dtype(code: int, where: str) -> DType:
    """The braze dtype of an ONNX TensorProto.DataType code; `where` names the node in errors."""
    found = _ONNX_TYPES.get(code)
    if found is None:
        raise BrazeError(f"{where}: {code} is not an ONNX element type code")
    if isinstance(found, str):
        raise UnsupportedError(f"{where}: casting to {found} is not supported (braze has no {found} tensors)")
    return found


def convert(x: torch.Tensor, to: DType, saturate: bool = True, source: DType | None = None,
            round_mode: str = "up") -> torch.Tensor:
    """`x`, a tensor of `source` (default: its own dtype; an emulated type must be named), as a new tensor of
    `to`, by ONNX's rules (see the module docstring)."""
    source = source or DType.from_torch(x.dtype)
    if source == to:
        return x.clone()
    if source.emulated:
        x = decode(x, source)
    if to.emulated:
        return encode(x, to, saturate, round_mode)
    dtype = to.torch
    if dtype not in _FLOAT8:
        return x.to(dtype)
    if not x.dtype.is_floating_point or x.dtype in _FLOAT8:
        x = x.to(torch.float32)
    if saturate:
        top = torch.finfo(dtype).max
        x = x.clamp(-top, top)  # NaN stays NaN
    elif dtype is torch.float8_e4m3fn:
        x = torch.where(x.abs() > _E4M3FN_OVERFLOW, torch.full_like(x, float("nan")), x)
    return x.to(dtype)


def _check_round_mode(round_mode: str) -> None:
    if round_mode not in _ROUND_MODES:
        raise ValueError(f"round_mode must be one of {', '.join(map(repr, _ROUND_MODES))}, got {round_mode!r}")


def _infer(target):
    """Cast's output type comes from its `to` attribute, CastLike's from its second input; checked here, where
    the node is known. An input known at build time is converted (shape computations flow on)."""
    def infer(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
        where = describe_node(node)
        dtype = target(node, where)
        round_mode = node.attrs.get("round_mode", "up")
        try:
            _check_round_mode(round_mode)
        except ValueError as e:
            raise BrazeError(f"{where}: {e}") from None
        x = node.inputs[0]
        if values[0] is None:
            return [Inferred(dtype, x.shape)]
        value = convert(values[0], dtype, bool(node.attrs.get("saturate", 1)), x.dtype, round_mode)
        return [Inferred(dtype, tuple(value.shape), value)]
    return infer


_infer_cast = _infer(lambda node, where: onnx_dtype(node.attrs["to"], where))
_infer_cast_like = _infer(lambda node, where: node.inputs[1].dtype)


def _cast(x: torch.Tensor, to: int, saturate: int, round_mode: str, dtypes: tuple) -> torch.Tensor:
    return convert(x, onnx_dtype(to, "Cast"), bool(saturate), dtypes[0], round_mode)


@op("Cast", since=6, infer=_infer_cast, elementwise=True)
def cast_6(x, *, to: int, _dtypes: tuple = ()):
    return _cast(x, to, 1, "up", _dtypes)


@op("Cast", since=19, infer=_infer_cast, elementwise=True)
def cast_19(x, *, to: int, saturate: int = 1, _dtypes: tuple = ()):
    return _cast(x, to, saturate, "up", _dtypes)


@op("Cast", since=24, infer=_infer_cast, elementwise=True)
def cast_24(x, *, to: int, saturate: int = 1, round_mode: str = "up", _dtypes: tuple = ()):
    _check_round_mode(round_mode)
    return _cast(x, to, saturate, round_mode, _dtypes)


@op("CastLike", since=15, infer=_infer_cast_like)
def cast_like_15(x, like, *, _dtypes: tuple = ()):
    return convert(x, _dtypes[1], source=_dtypes[0])


@op("CastLike", since=19, infer=_infer_cast_like)
def cast_like_19(x, like, *, saturate: int = 1, _dtypes: tuple = ()):
    return convert(x, _dtypes[1], bool(saturate), _dtypes[0])


@op("CastLike", since=24, infer=_infer_cast_like)
def cast_like_24(x, like, *, saturate: int = 1, round_mode: str = "up", _dtypes: tuple = ()):
    _check_round_mode(round_mode)
    return convert(x, _dtypes[1], bool(saturate), _dtypes[0], round_mode)


OPS = [cast_6, cast_19, cast_24, cast_like_15, cast_like_19, cast_like_24]
