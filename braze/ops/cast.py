"""Cast and CastLike: element type conversion, with ONNX's float8 rules.

Between ordinary types a cast is torch's conversion: floats truncate toward zero into integers,
integers wrap around when narrowed, anything nonzero is True. Into float8 ONNX asks (from opset
19) for `saturate`: out-of-range values and infinities become the type's largest finite value;
without it they become NaN, or infinity for E5M2. `round_mode` (opset 24) only concerns
FLOAT8E8M0, a type braze does not have; like strings, casts to it are refused.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import BrazeError, UnsupportedError
from ..ir import DType, Node
from .infer import Inferred, describe_node
from .opdef import op

# TensorProto.DataType codes: the braze dtype, or the ONNX name of a type braze does not have.
_ONNX_TYPES: dict[int, DType | str] = {
    1: DType.float32, 2: DType.uint8, 3: DType.int8, 4: DType.uint16, 5: DType.int16, 6: DType.int32,
    7: DType.int64, 8: "STRING", 9: DType.bool, 10: DType.float16, 11: DType.float64, 12: DType.uint32,
    13: DType.uint64, 14: "COMPLEX64", 15: "COMPLEX128", 16: DType.bfloat16, 17: DType.float8_e4m3fn,
    18: DType.float8_e4m3fnuz, 19: DType.float8_e5m2, 20: DType.float8_e5m2fnuz, 21: "UINT4", 22: "INT4",
    23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2", 27: "FLOAT6E2M3", 28: "FLOAT6E3M2",
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


def convert(x: torch.Tensor, dtype: torch.dtype, saturate: bool = True) -> torch.Tensor:
    """`x` as `dtype`, by ONNX's rules (see the module docstring); always a new tensor."""
    if x.dtype == dtype:
        return x.clone()
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


def _infer_cast(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
    """Cast's output type comes from its `to` attribute, checked here where the node is known."""
    where = describe_node(node)
    dtype = onnx_dtype(node.attrs["to"], where)
    if "round_mode" in node.attrs:
        try:
            _check_round_mode(node.attrs["round_mode"])
        except ValueError as e:
            raise BrazeError(f"{where}: {e}") from None
    source = values[0]
    if source is None:
        return [Inferred(dtype, node.inputs[0].shape)]
    value = convert(source, dtype.torch, bool(node.attrs.get("saturate", 1)))
    return [Inferred(dtype, tuple(value.shape), value)]


def _like_dtype(node: Node) -> list[DType]:
    return [node.inputs[1].dtype]


def _cast(x: torch.Tensor, to: int, saturate: int = 1) -> torch.Tensor:
    return convert(x, onnx_dtype(to, "Cast").torch, bool(saturate))


@op("Cast", since=6, infer=_infer_cast)
def cast_6(x, *, to: int):
    return _cast(x, to)


@op("Cast", since=19, infer=_infer_cast)
def cast_19(x, *, to: int, saturate: int = 1):
    return _cast(x, to, saturate)


@op("Cast", since=24, infer=_infer_cast)
def cast_24(x, *, to: int, saturate: int = 1, round_mode: str = "up"):
    return _cast(x, to, saturate)


@op("CastLike", since=15, dtype_rule=_like_dtype)
def cast_like_15(x, like):
    return convert(x, like.dtype)


@op("CastLike", since=19, dtype_rule=_like_dtype)
def cast_like_19(x, like, *, saturate: int = 1):
    return convert(x, like.dtype, bool(saturate))


@op("CastLike", since=24, dtype_rule=_like_dtype)
def cast_like_24(x, like, *, saturate: int = 1, round_mode: str = "up"):
    _check_round_mode(round_mode)
    return convert(x, like.dtype, bool(saturate))


OPS = [cast_6, cast_19, cast_24, cast_like_15, cast_like_19, cast_like_24]
