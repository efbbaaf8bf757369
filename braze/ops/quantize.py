"""Linear quantization: QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear.

    QuantizeLinear:   y = saturate(round_half_even(x / scale) + zero_point)
    DequantizeLinear: y = (x - zero_point) * scale

The scale and zero point are one value (per tensor), a vector along `axis` (per axis, from
opset 13), or a tensor of x's rank whose `axis` dim counts blocks of `block_size` elements
(blocked, from opset 21). The quantized type is the zero point's, else `output_dtype` (opset 21),
else uint8: 8- and 16-bit integers, float8, and the types braze emulates (DType.emulated): int4 and
uint4 (opset 21), float4_e2m1fn (23), int2 and uint2 (25). Integer targets saturate to their range;
float8 targets round to nearest even and saturate unless `saturate=0` (opset 19); float4_e2m1fn
always saturates. From opset 24 a scale may be float8_e8m0fnu (a power of two, as in the MX
formats). The 6-bit float types are refused with an UnsupportedError naming the node.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import UnsupportedError
from ..ir import DType, Node
from .cast import convert
from .emulated import decode, integer_range
from .infer import Inferred, describe_node, meta_like
from .opdef import input_dtypes, op
from .shape import axis_index

_FLOAT8 = (DType.float8_e4m3fn, DType.float8_e4m3fnuz, DType.float8_e5m2, DType.float8_e5m2fnuz)
_INTEGER_Q = (DType.uint8, DType.int8, DType.uint16, DType.int16)
_FLOATS = (DType.float32, DType.float16, DType.bfloat16)
# The quantized types of each opset (int32 is also a DequantizeLinear input from opset 10), and the scales'.
_Q_TYPES = {10: (DType.uint8, DType.int8), 19: (DType.uint8, DType.int8, *_FLOAT8),
            21: (*_INTEGER_Q, *_FLOAT8, DType.uint4, DType.int4),
            23: (*_INTEGER_Q, *_FLOAT8, DType.uint4, DType.int4, DType.float4_e2m1fn),
            25: (*_INTEGER_Q, *_FLOAT8, DType.uint4, DType.int4, DType.float4_e2m1fn, DType.uint2, DType.int2)}
_DQ_TYPES = {v: (*types, DType.int32) for v, types in _Q_TYPES.items()}
_Q_SCALES = {10: (*_FLOATS, DType.int32), 24: (*_FLOATS, DType.int32, DType.float8_e8m0fnu)}
_DQ_SCALES = {10: (DType.float32,), 19: _FLOATS, 24: (*_FLOATS, DType.float8_e8m0fnu)}
# TensorProto.DataType codes of the types `output_dtype` and `precision` may name.
_CODES = {1: DType.float32, 2: DType.uint8, 3: DType.int8, 4: DType.uint16, 5: DType.int16, 6: DType.int32,
          10: DType.float16, 16: DType.bfloat16, 17: DType.float8_e4m3fn, 18: DType.float8_e4m3fnuz,
          19: DType.float8_e5m2, 20: DType.float8_e5m2fnuz, 21: DType.uint4, 22: DType.int4,
          23: DType.float4_e2m1fn, 25: DType.uint2, 26: DType.int2}
_UNSUPPORTED = {27: "FLOAT6E2M3", 28: "FLOAT6E3M2"}


def dtype_of_code(code: int, attr: str) -> DType:
    """The DType an attribute's TensorProto.DataType code names (UnsupportedError for the 6-bit floats)."""
    if code in _UNSUPPORTED:
        raise UnsupportedError(f"{attr}={code} ({_UNSUPPORTED[code]}) is not supported: braze has no "
                               f"{_UNSUPPORTED[code]} tensors")
    if code not in _CODES:
        raise ValueError(f"{attr}={code} is not a type this op can produce")
    return _CODES[code]


def _since(version: int, table: dict[int, tuple[DType, ...]]) -> tuple[DType, ...]:
    return table[max(v for v in table if v <= version)]


def _names(dtypes: Sequence[DType]) -> str:
    return ", ".join(map(str, dtypes))


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


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, dtype: DType,
             saturate: bool = True, precision: torch.dtype | None = None) -> torch.Tensor:
    """saturate(round(x / scale) + zero_point) as a tensor of `dtype`; scale and zero point broadcastable, and
    the zero point's values decoded (emulated.decode). The division runs in `precision`, else in the wider of
    x's and the scale's types (as ONNX's reference)."""
    work = precision or torch.promote_types(x.dtype, scale.dtype)
    if not work.is_floating_point:
        work = torch.float64
    y = x.to(work) / scale.to(work)
    if dtype.is_floating:
        y = y.float()
        if zero_point is not None:
            y = y + zero_point.float()
        return convert(y, dtype, saturate)
    y = torch.round(y.to(torch.float64))
    if zero_point is not None:
        y = y + zero_point.to(torch.float64)
    low, high = integer_range(dtype)
    return y.clamp(low, high).to(dtype.torch)


def dequantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
               dtype: torch.dtype) -> torch.Tensor:
    """(x - zero_point) * scale as `dtype`; x and the zero point decoded, scale and zero point broadcastable."""
    if x.is_floating_point():
        d = x.float() if zero_point is None else x.float() - zero_point.float()
    else:
        d = x.to(torch.int64) if zero_point is None else x.to(torch.int64) - zero_point.to(torch.int64)
        d = d.float()
    return (d * scale.float()).to(dtype)


def _types(dtypes: Sequence[DType | None]) -> tuple[DType | None, ...]:
    """x's, the scale's and the zero point's dtypes (None for an omitted zero point)."""
    return (*dtypes, None)[:3]


def _infer_same_shape(node: Node, values: Sequence[torch.Tensor | None], run, dtype: DType) -> list[Inferred]:
    """The output of an op shaped like its first input, of `dtype`: the real value when every input is known,
    else a run on meta tensors when the shapes are static (which checks them), else x's shape."""
    inputs = [t for t in node.inputs if t is not None]
    dtypes = input_dtypes(node)
    if all(v is not None for t, v in zip(node.inputs, values) if t is not None):
        y = run(*values, **node.attrs, dtypes=dtypes)
        return [Inferred(dtype, tuple(y.shape), y)]
    if all(t.is_static for t in inputs):
        y = run(*[None if t is None else meta_like(t) for t in node.inputs], **node.attrs, dtypes=dtypes)
        return [Inferred(dtype, tuple(y.shape))]
    return [Inferred(dtype, node.inputs[0].shape)]


def _named(rule):
    """Give an UnsupportedError raised while inferring a node the node's name."""
    def infer(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
        try:
            return rule(node, values)
        except UnsupportedError as e:
            raise UnsupportedError(f"{describe_node(node)}: {e}") from None
    return infer


# -- QuantizeLinear ----------------------------------------------------------------------------

def _q_dtype(version: int, zero_point_dtype: DType | None, output_dtype: int) -> DType:
    dtype = dtype_of_code(output_dtype, "output_dtype") if output_dtype else None
    if zero_point_dtype is not None:
        if dtype is not None and dtype != zero_point_dtype:
            raise ValueError(f"output_dtype is {dtype} but the zero point is {zero_point_dtype}")
        dtype = zero_point_dtype
    dtype = dtype or DType.uint8
    allowed = _since(version, _Q_TYPES)
    if dtype not in allowed:
        raise ValueError(f"QuantizeLinear-{version} cannot quantize to {dtype} (it takes {_names(allowed)})")
    return dtype


def _quantize_linear(version: int, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None,
                     axis: int = 1, saturate: int = 1, block_size: int = 0, output_dtype: int = 0,
                     precision: int = 0, *, dtypes: Sequence[DType | None]) -> torch.Tensor:
    x_dtype, scale_dtype, zero_point_dtype = _types(dtypes)
    allowed_x = (DType.float32, DType.int32) if version < 19 else (*_FLOATS, DType.int32)
    if x_dtype not in allowed_x or scale_dtype not in _since(version, _Q_SCALES):
        raise TypeError(f"QuantizeLinear-{version} does not take x of {x_dtype} with a scale of {scale_dtype}")
    dtype = _q_dtype(version, None if zero_point is None else zero_point_dtype, output_dtype)
    work = dtype_of_code(precision, "precision") if precision else None
    if work is not None and work not in _FLOATS:
        raise ValueError(f"precision must name a floating-point type, got {work}")
    scale, zero_point = _params(x, decode(scale, scale_dtype), zero_point, axis, block_size, version)
    zero_point = None if zero_point is None else decode(zero_point, dtype)
    return quantize(x, scale, zero_point, dtype, bool(saturate), None if work is None else work.torch)


def _quantize_rule(version: int):
    def rule(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
        zp = node.input(2)
        dtype = _q_dtype(version, None if zp is None else zp.dtype, node.attrs.get("output_dtype", 0))
        return _infer_same_shape(node, values, lambda *xs, **attrs: _quantize_linear(version, *xs, **attrs), dtype)
    return _named(rule)


@op("QuantizeLinear", since=10, infer=_quantize_rule(10), keeps_layout=True, scale_inputs=(1,))
def quantize_linear_10(x, y_scale, y_zero_point=None, *, _dtypes: tuple = ()):
    return _quantize_linear(10, x, y_scale, y_zero_point, dtypes=_dtypes)


@op("QuantizeLinear", since=13, infer=_quantize_rule(13), keeps_layout=True, scale_inputs=(1,))
def quantize_linear_13(x, y_scale, y_zero_point=None, *, axis: int = 1, _dtypes: tuple = ()):
    return _quantize_linear(13, x, y_scale, y_zero_point, axis, dtypes=_dtypes)


@op("QuantizeLinear", since=19, infer=_quantize_rule(19), keeps_layout=True, scale_inputs=(1,))
def quantize_linear_19(x, y_scale, y_zero_point=None, *, axis: int = 1, saturate: int = 1, _dtypes: tuple = ()):
    return _quantize_linear(19, x, y_scale, y_zero_point, axis, saturate, dtypes=_dtypes)


@op("QuantizeLinear", since=21, infer=_quantize_rule(21), keeps_layout=True, scale_inputs=(1,))
def quantize_linear_21(x, y_scale, y_zero_point=None, *, axis: int = 1, saturate: int = 1, block_size: int = 0,
                       output_dtype: int = 0, _dtypes: tuple = ()):
    return _quantize_linear(21, x, y_scale, y_zero_point, axis, saturate, block_size, output_dtype, dtypes=_dtypes)


@op("QuantizeLinear", since=23, infer=_quantize_rule(23), keeps_layout=True, scale_inputs=(1,))
def quantize_linear_23(x, y_scale, y_zero_point=None, *, axis: int = 1, saturate: int = 1, block_size: int = 0,
                       output_dtype: int = 0, precision: int = 0, _dtypes: tuple = ()):
    return _quantize_linear(23, x, y_scale, y_zero_point, axis, saturate, block_size, output_dtype, precision,
                            dtypes=_dtypes)


@op("QuantizeLinear", since=24, infer=_quantize_rule(24), keeps_layout=True, scale_inputs=(1,))
def quantize_linear_24(x, y_scale, y_zero_point=None, *, axis: int = 1, saturate: int = 1, block_size: int = 0,
                       output_dtype: int = 0, precision: int = 0, _dtypes: tuple = ()):
    return _quantize_linear(24, x, y_scale, y_zero_point, axis, saturate, block_size, output_dtype, precision,
                            dtypes=_dtypes)


@op("QuantizeLinear", since=25, infer=_quantize_rule(25), keeps_layout=True, scale_inputs=(1,))
def quantize_linear_25(x, y_scale, y_zero_point=None, *, axis: int = 1, saturate: int = 1, block_size: int = 0,
                       output_dtype: int = 0, precision: int = 0, _dtypes: tuple = ()):
    return _quantize_linear(25, x, y_scale, y_zero_point, axis, saturate, block_size, output_dtype, precision,
                            dtypes=_dtypes)


# -- DequantizeLinear --------------------------------------------------------------------------

def _dq_dtype(version: int, scale_dtype: DType, output_dtype: int) -> DType:
    allowed = _since(version, _DQ_SCALES)
    if scale_dtype not in allowed:
        raise TypeError(f"DequantizeLinear-{version} takes a scale of {_names(allowed)}, got {scale_dtype}")
    if not output_dtype:
        if scale_dtype not in _FLOATS:
            raise ValueError(f"a scale of {scale_dtype} needs output_dtype (float32, float16 or bfloat16)")
        return scale_dtype
    dtype = dtype_of_code(output_dtype, "output_dtype")
    if dtype not in _FLOATS:
        raise ValueError(f"output_dtype must be float32, float16 or bfloat16, got {dtype}")
    return dtype


def _dequantize_linear(version: int, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None,
                       axis: int = 1, block_size: int = 0, output_dtype: int = 0, *,
                       dtypes: Sequence[DType | None]) -> torch.Tensor:
    x_dtype, scale_dtype, zero_point_dtype = _types(dtypes)
    allowed = _since(version, _DQ_TYPES)
    if x_dtype not in allowed:
        raise TypeError(f"DequantizeLinear-{version} does not take x of {x_dtype} (it takes {_names(allowed)})")
    if zero_point is not None and zero_point_dtype != x_dtype:
        raise TypeError(f"the zero point is {zero_point_dtype}, x is {x_dtype}: they must agree")
    dtype = _dq_dtype(version, scale_dtype, output_dtype)
    scale, zero_point = _params(x, decode(scale, scale_dtype), zero_point, axis, block_size, version)
    zero_point = None if zero_point is None else decode(zero_point, x_dtype)
    return dequantize(decode(x, x_dtype), scale, zero_point, dtype.torch)


def _dequantize_rule(version: int):
    def rule(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
        dtype = _dq_dtype(version, node.inputs[1].dtype, node.attrs.get("output_dtype", 0))
        return _infer_same_shape(node, values, lambda *xs, **attrs: _dequantize_linear(version, *xs, **attrs), dtype)
    return _named(rule)


@op("DequantizeLinear", since=10, infer=_dequantize_rule(10), keeps_layout=True, scale_inputs=(1,))
def dequantize_linear_10(x, x_scale, x_zero_point=None, *, _dtypes: tuple = ()):
    return _dequantize_linear(10, x, x_scale, x_zero_point, dtypes=_dtypes)


@op("DequantizeLinear", since=13, infer=_dequantize_rule(13), keeps_layout=True, scale_inputs=(1,))
def dequantize_linear_13(x, x_scale, x_zero_point=None, *, axis: int = 1, _dtypes: tuple = ()):
    return _dequantize_linear(13, x, x_scale, x_zero_point, axis, dtypes=_dtypes)


@op("DequantizeLinear", since=19, infer=_dequantize_rule(19), keeps_layout=True, scale_inputs=(1,))
def dequantize_linear_19(x, x_scale, x_zero_point=None, *, axis: int = 1, _dtypes: tuple = ()):
    return _dequantize_linear(19, x, x_scale, x_zero_point, axis, dtypes=_dtypes)


@op("DequantizeLinear", since=21, infer=_dequantize_rule(21), keeps_layout=True, scale_inputs=(1,))
def dequantize_linear_21(x, x_scale, x_zero_point=None, *, axis: int = 1, block_size: int = 0,
                         _dtypes: tuple = ()):
    return _dequantize_linear(21, x, x_scale, x_zero_point, axis, block_size, dtypes=_dtypes)


@op("DequantizeLinear", since=23, infer=_dequantize_rule(23), keeps_layout=True, scale_inputs=(1,))
def dequantize_linear_23(x, x_scale, x_zero_point=None, *, axis: int = 1, block_size: int = 0,
                         output_dtype: int = 0, _dtypes: tuple = ()):
    return _dequantize_linear(23, x, x_scale, x_zero_point, axis, block_size, output_dtype, dtypes=_dtypes)


@op("DequantizeLinear", since=24, infer=_dequantize_rule(24), keeps_layout=True, scale_inputs=(1,))
def dequantize_linear_24(x, x_scale, x_zero_point=None, *, axis: int = 1, block_size: int = 0,
                         output_dtype: int = 0, _dtypes: tuple = ()):
    return _dequantize_linear(24, x, x_scale, x_zero_point, axis, block_size, output_dtype, dtypes=_dtypes)


@op("DequantizeLinear", since=25, infer=_dequantize_rule(25), keeps_layout=True, scale_inputs=(1,))
def dequantize_linear_25(x, x_scale, x_zero_point=None, *, axis: int = 1, block_size: int = 0,
                         output_dtype: int = 0, _dtypes: tuple = ()):
    return _dequantize_linear(25, x, x_scale, x_zero_point, axis, block_size, output_dtype, dtypes=_dtypes)


# -- DynamicQuantizeLinear ---------------------------------------------------------------------

@op("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(x):
    """uint8 quantization of x over its range widened to include 0 (the range [0, 255] maps onto it)."""
    if x.dtype != torch.float32:
        raise TypeError(f"DynamicQuantizeLinear takes float32, got {DType.from_torch(x.dtype)}")
    if x.numel() == 0:
        raise ValueError("DynamicQuantizeLinear needs a non-empty input")
    zero = x.new_zeros(())
    x_min, x_max = torch.minimum(x.min(), zero), torch.maximum(x.max(), zero)
    # NOTE: an all-zero x has an empty range; onnxruntime then takes scale 1 (ONNX's reference 1/255)
    scale = torch.where(x_max == x_min, torch.ones_like(x_max), (x_max - x_min) / 255)
    zero_point = torch.round((0 - x_min / scale).clamp(0, 255))
    y = quantize(x, scale, zero_point, DType.uint8)
    return y, scale, zero_point.to(torch.uint8)


OPS = [quantize_linear_10, quantize_linear_13, quantize_linear_19, quantize_linear_21, quantize_linear_23,
       quantize_linear_24, quantize_linear_25, dequantize_linear_10, dequantize_linear_13, dequantize_linear_19,
       dequantize_linear_21, dequantize_linear_23, dequantize_linear_24, dequantize_linear_25,
       dynamic_quantize_linear]
