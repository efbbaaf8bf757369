"""Linear quantization: QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear.

    QuantizeLinear:   y = saturate(round_half_even(x / scale) + zero_point)
    DequantizeLinear: y = (x - zero_point) * scale

The scale and zero point are one value (per tensor), a vector along `axis` (per axis, from
opset 13), or a tensor of x's rank whose `axis` dim counts blocks of `block_size` elements
(blocked, from opset 21). The quantized type is the zero point's, else `output_dtype` (opset 21),
else uint8; float8 targets round to nearest even and saturate unless `saturate=0` (opset 19).
torch has no 4-, 2- or 6-bit tensors: those types are refused with an UnsupportedError naming the
node (graph inputs and initializers of those types are already refused by the frontend).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import UnsupportedError
from ..ir import DType, Node
from .cast import convert
from .infer import Inferred, describe_node, meta_like
from .opdef import op
from .shape import axis_index

_FLOAT8 = (torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz)
_INTEGER_Q = (torch.uint8, torch.int8, torch.uint16, torch.int16)
# The quantized types of each opset (int32 is also a DequantizeLinear input from opset 10).
_Q_TYPES = {10: (torch.uint8, torch.int8), 19: (torch.uint8, torch.int8, *_FLOAT8),
            21: (*_INTEGER_Q, *_FLOAT8)}
_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
# TensorProto.DataType codes of the types `output_dtype` and `precision` may name.
_CODES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 4: torch.uint16, 5: torch.int16, 6: torch.int32,
          10: torch.float16, 16: torch.bfloat16, 17: torch.float8_e4m3fn, 18: torch.float8_e4m3fnuz,
          19: torch.float8_e5m2, 20: torch.float8_e5m2fnuz}
_NARROW = {21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2",
           27: "FLOAT6E2M3", 28: "FLOAT6E3M2"}


def dtype_of_code(code: int, attr: str) -> torch.dtype:
    """The torch dtype an attribute's TensorProto.DataType code names (UnsupportedError for 4-bit and
    narrower types, which torch does not have)."""
    if code in _NARROW:
        raise UnsupportedError(f"{attr}={code} ({_NARROW[code]}) is not supported: torch has no {_NARROW[code]} "
                               "tensors")
    if code not in _CODES:
        raise ValueError(f"{attr}={code} is not a type this op can produce")
    return _CODES[code]


def _since(version: int, table: dict[int, tuple[torch.dtype, ...]]) -> tuple[torch.dtype, ...]:
    return table[max(v for v in table if v <= version)]


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def expand_param(p: torch.Tensor, shape: Sequence[int], axis: int, block_size: int, what: str) -> torch.Tensor:
    """A scale or zero point, broadcastable to `shape`: a scalar (or a 1-element tensor), a vector along
    `axis`, or with `block_size` a tensor of x's rank whose `axis` dim counts the blocks."""
    if p.dim() == 0 or (p.numel() == 1 and not block_size):
        return p.reshape(())
    rank = len(shape)
    axis = axis_index(axis, rank)
    if not block_size:
        if p.dim() != 1 or p.shape[0] != shape[axis]:
            raise ValueError(f"{what} of shape {list(p.shape)} must be a scalar or a vector of {shape[axis]} "
                             f"(x's dim {axis}), or give block_size for blocked quantization")
        return p.reshape([-1 if i == axis else 1 for i in range(rank)])
    if block_size < 0 or p.dim() != rank:
        raise ValueError(f"blocked quantization needs a positive block_size and a {what} of x's rank {rank}, "
                         f"got block_size {block_size} and shape {list(p.shape)}")
    n = shape[axis]
    expected = [-(-n // block_size) if i == axis else d for i, d in enumerate(shape)]
    if list(p.shape) != expected:
        raise ValueError(f"{what} of shape {list(p.shape)} does not fit x of shape {list(shape)} in blocks of "
                         f"{block_size} along axis {axis} (expected {expected})")
    return p.repeat_interleave(block_size, dim=axis).narrow(axis, 0, n)


def _params(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, axis: int,
            block_size: int, version: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    if version < 13 and scale.numel() != 1:
        raise ValueError(f"the scale must be a scalar before opset 13, got shape {list(scale.shape)}")
    if version < 21 and scale.dim() > 1:
        raise ValueError(f"the scale must be a scalar or a vector before opset 21, got shape {list(scale.shape)}")
    if zero_point is not None and zero_point.shape != scale.shape and not zero_point.numel() == scale.numel() == 1:
        raise ValueError(f"the zero point's shape {list(zero_point.shape)} differs from the scale's "
                         f"{list(scale.shape)}")
    if x.dim() == 0 and scale.numel() > 1:
        raise ValueError("a scalar x takes a scalar scale")
    scale = expand_param(scale, x.shape, axis, block_size, "the scale")
    if zero_point is not None:
        zero_point = expand_param(zero_point, x.shape, axis, block_size, "the zero point")
    return scale, zero_point


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, dtype: torch.dtype,
             saturate: bool = True, precision: torch.dtype | None = None) -> torch.Tensor:
    """saturate(round(x / scale) + zero_point) as `dtype`; scale and zero point already broadcastable.
    The division runs in `precision`, else in the wider of x's and the scale's types (as ONNX's reference)."""
    work = precision or torch.promote_types(x.dtype, scale.dtype)
    if not work.is_floating_point:
        work = torch.float64
    y = x.to(work) / scale.to(work)
    if dtype in _FLOAT8:
        y = y.float()
        if zero_point is not None:
            y = y + zero_point.float()
        return convert(y, dtype, saturate)
    y = torch.round(y.to(torch.float64))
    if zero_point is not None:
        y = y + zero_point.to(torch.float64)
    info = torch.iinfo(dtype)
    return y.clamp(info.min, info.max).to(dtype)


def dequantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
               dtype: torch.dtype) -> torch.Tensor:
    """(x - zero_point) * scale as `dtype`; scale and zero point already broadcastable."""
    if x.dtype in _FLOAT8:
        d = x.float() if zero_point is None else x.float() - zero_point.float()
    else:
        d = x.to(torch.int64) if zero_point is None else x.to(torch.int64) - zero_point.to(torch.int64)
        d = d.float()
    return (d * scale.float()).to(dtype)


# -- QuantizeLinear ----------------------------------------------------------------------------

def _q_dtype(version: int, zero_point_dtype: DType | torch.dtype | None, output_dtype: int) -> torch.dtype:
    dtype = dtype_of_code(output_dtype, "output_dtype") if output_dtype else None
    if zero_point_dtype is not None:
        zp = zero_point_dtype.torch if isinstance(zero_point_dtype, DType) else zero_point_dtype
        if dtype is not None and dtype != zp:
            raise ValueError(f"output_dtype is {_name(dtype)} but the zero point is {_name(zp)}")
        dtype = zp
    dtype = dtype or torch.uint8
    allowed = _since(version, _Q_TYPES)
    if dtype not in allowed:
        raise ValueError(f"QuantizeLinear-{version} cannot quantize to {_name(dtype)} "
                         f"(it takes {', '.join(map(_name, allowed))})")
    return dtype


def _quantize_linear(version: int, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None,
                     axis: int = 1, saturate: int = 1, block_size: int = 0, output_dtype: int = 0,
                     precision: int = 0) -> torch.Tensor:
    allowed_x = (torch.float32, torch.int32) if version < 19 else (*_FLOATS, torch.int32)
    if x.dtype not in allowed_x or scale.dtype not in (*_FLOATS, torch.int32):
        raise TypeError(f"QuantizeLinear-{version} does not take x of {_name(x.dtype)} with a scale of "
                        f"{_name(scale.dtype)}")
    dtype = _q_dtype(version, None if zero_point is None else zero_point.dtype, output_dtype)
    work = dtype_of_code(precision, "precision") if precision else None
    if work is not None and work not in _FLOATS:
        raise ValueError(f"precision must name a floating-point type, got {_name(work)}")
    scale, zero_point = _params(x, scale, zero_point, axis, block_size, version)
    return quantize(x, scale, zero_point, dtype, bool(saturate), work)


def _infer_same_shape(node: Node, values: Sequence[torch.Tensor | None], run, dtype: torch.dtype) -> list[Inferred]:
    """The output of an op shaped like its first input: the real value when every input is known,
    else a run on meta tensors when the shapes are static (which checks them), else x's shape."""
    inputs = [t for t in node.inputs if t is not None]
    if all(v is not None for t, v in zip(node.inputs, values) if t is not None):
        y = run(*values, **node.attrs)
        return [Inferred(DType.from_torch(y.dtype), tuple(y.shape), y)]
    if all(t.is_static for t in inputs):
        y = run(*[None if t is None else meta_like(t) for t in node.inputs], **node.attrs)
        return [Inferred(DType.from_torch(y.dtype), tuple(y.shape))]
    return [Inferred(DType.from_torch(dtype), node.inputs[0].shape)]


def _named(rule):
    """Give an UnsupportedError raised while inferring a node the node's name."""
    def infer(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
        try:
            return rule(node, values)
        except UnsupportedError as e:
            raise UnsupportedError(f"{describe_node(node)}: {e}") from None
    return infer


def _quantize_rule(version: int):
    def rule(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
        zp = node.input(2)
        dtype = _q_dtype(version, None if zp is None else zp.dtype, node.attrs.get("output_dtype", 0))
        return _infer_same_shape(node, values, lambda *xs, **attrs: _quantize_linear(version, *xs, **attrs), dtype)
    return _named(rule)


@op("QuantizeLinear", since=10, infer=_quantize_rule(10))
def quantize_linear_10(x, y_scale, y_zero_point=None):
    return _quantize_linear(10, x, y_scale, y_zero_point)


@op("QuantizeLinear", since=13, infer=_quantize_rule(13))
def quantize_linear_13(x, y_scale, y_zero_point=None, *, axis: int = 1):
    return _quantize_linear(13, x, y_scale, y_zero_point, axis)


@op("QuantizeLinear", since=19, infer=_quantize_rule(19))
def quantize_linear_19(x, y_scale, y_zero_point=None, *, axis: int = 1, saturate: int = 1):
    return _quantize_linear(19, x, y_scale, y_zero_point, axis, saturate)


@op("QuantizeLinear", since=21, infer=_quantize_rule(21))
def quantize_linear_21(x, y_scale, y_zero_point=None, *, axis: int = 1, saturate: int = 1, block_size: int = 0,
                       output_dtype: int = 0):
    return _quantize_linear(21, x, y_scale, y_zero_point, axis, saturate, block_size, output_dtype)


@op("QuantizeLinear", since=23, infer=_quantize_rule(23))
def quantize_linear_23(x, y_scale, y_zero_point=None, *, axis: int = 1, saturate: int = 1, block_size: int = 0,
                       output_dtype: int = 0, precision: int = 0):
    return _quantize_linear(23, x, y_scale, y_zero_point, axis, saturate, block_size, output_dtype, precision)


# -- DequantizeLinear --------------------------------------------------------------------------

_DQ_TYPES = {10: (torch.uint8, torch.int8, torch.int32), 19: (torch.uint8, torch.int8, torch.int32, *_FLOAT8),
             21: (*_INTEGER_Q, torch.int32, *_FLOAT8)}


def _dq_dtype(version: int, scale_dtype: DType | torch.dtype, output_dtype: int) -> torch.dtype:
    scale = scale_dtype.torch if isinstance(scale_dtype, DType) else scale_dtype
    allowed = (torch.float32,) if version < 19 else _FLOATS
    if scale not in allowed:
        raise TypeError(f"DequantizeLinear-{version} takes a scale of {', '.join(map(_name, allowed))}, "
                        f"got {_name(scale)}")
    if not output_dtype:
        return scale
    dtype = dtype_of_code(output_dtype, "output_dtype")
    if dtype not in _FLOATS:
        raise ValueError(f"output_dtype must be float32, float16 or bfloat16, got {_name(dtype)}")
    return dtype


def _dequantize_linear(version: int, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None,
                       axis: int = 1, block_size: int = 0, output_dtype: int = 0) -> torch.Tensor:
    allowed = _since(version, _DQ_TYPES)
    if x.dtype not in allowed:
        raise TypeError(f"DequantizeLinear-{version} does not take x of {_name(x.dtype)} "
                        f"(it takes {', '.join(map(_name, allowed))})")
    if zero_point is not None and zero_point.dtype != x.dtype:
        raise TypeError(f"the zero point is {_name(zero_point.dtype)}, x is {_name(x.dtype)}: they must agree")
    dtype = _dq_dtype(version, scale.dtype, output_dtype)
    scale, zero_point = _params(x, scale, zero_point, axis, block_size, version)
    return dequantize(x, scale, zero_point, dtype)


def _dequantize_rule(version: int):
    def rule(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
        dtype = _dq_dtype(version, node.inputs[1].dtype, node.attrs.get("output_dtype", 0))
        return _infer_same_shape(node, values, lambda *xs, **attrs: _dequantize_linear(version, *xs, **attrs), dtype)
    return _named(rule)


@op("DequantizeLinear", since=10, infer=_dequantize_rule(10))
def dequantize_linear_10(x, x_scale, x_zero_point=None):
    return _dequantize_linear(10, x, x_scale, x_zero_point)


@op("DequantizeLinear", since=13, infer=_dequantize_rule(13))
def dequantize_linear_13(x, x_scale, x_zero_point=None, *, axis: int = 1):
    return _dequantize_linear(13, x, x_scale, x_zero_point, axis)


@op("DequantizeLinear", since=19, infer=_dequantize_rule(19))
def dequantize_linear_19(x, x_scale, x_zero_point=None, *, axis: int = 1):
    return _dequantize_linear(19, x, x_scale, x_zero_point, axis)


@op("DequantizeLinear", since=21, infer=_dequantize_rule(21))
def dequantize_linear_21(x, x_scale, x_zero_point=None, *, axis: int = 1, block_size: int = 0):
    return _dequantize_linear(21, x, x_scale, x_zero_point, axis, block_size)


@op("DequantizeLinear", since=23, infer=_dequantize_rule(23))
def dequantize_linear_23(x, x_scale, x_zero_point=None, *, axis: int = 1, block_size: int = 0,
                         output_dtype: int = 0):
    return _dequantize_linear(23, x, x_scale, x_zero_point, axis, block_size, output_dtype)


# -- DynamicQuantizeLinear ---------------------------------------------------------------------

@op("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(x):
    """uint8 quantization of x over its range widened to include 0 (the range [0, 255] maps onto it)."""
    if x.dtype != torch.float32:
        raise TypeError(f"DynamicQuantizeLinear takes float32, got {_name(x.dtype)}")
    if x.numel() == 0:
        raise ValueError("DynamicQuantizeLinear needs a non-empty input")
    zero = x.new_zeros(())
    x_min, x_max = torch.minimum(x.min(), zero), torch.maximum(x.max(), zero)
    # NOTE: an all-zero x has an empty range; onnxruntime then takes scale 1 (ONNX's reference 1/255)
    scale = torch.where(x_max == x_min, torch.ones_like(x_max), (x_max - x_min) / 255)
    zero_point = torch.round((0 - x_min / scale).clamp(0, 255))
    y = quantize(x, scale, zero_point, torch.uint8)
    return y, scale, zero_point.to(torch.uint8)


OPS = [quantize_linear_10, quantize_linear_13, quantize_linear_19, quantize_linear_21, quantize_linear_23,
       dequantize_linear_10, dequantize_linear_13, dequantize_linear_19, dequantize_linear_21,
       dequantize_linear_23, dynamic_quantize_linear]
