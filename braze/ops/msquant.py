"""onnxruntime's static quantized operators (domain com.microsoft), written by its quantizer in the QOperator format
(`quantize_static(..., quant_format=QuantFormat.QOperator)`), beside ONNX's QLinearConv and QLinearMatMul:

    QLinearAdd, QLinearMul           C = Q(DQ(A) op DQ(B))                  (broadcasting)
    QLinearSigmoid, QLinearLeakyRelu Y = Q(f(DQ(X)))
    QLinearGlobalAveragePool         Y = Q(mean of DQ(X) over the spatial dims)   (channels_last: NHWC)
    QLinearAveragePool               Y = Q(AveragePool(DQ(X)))             (channels_last: NHWC)
    QLinearConcat                    Y = Q(Concat(DQ(X_i)))   inputs: Y_scale, Y_zero_point, (X, scale, zero point)...
    QGemm                            Y = [Q](((A - a_zp) (B - b_zp) + C) * alpha * a_scale * b_scale)

DQ(x) = (x - zero_point) * scale and Q(y) = saturate(round_half_even(y / scale) + zero_point), in float32, with
per-tensor scales (float32; a lowered one is widened) and zero points of the operand's type. The references are
that composition, which is what onnxruntime's portable kernels compute; its vectorized ones (fixed point on ARM,
lookup tables for the activations, an integer sum for the pools) agree with it to within one step of the output.
QGemm is exact: the integer accumulator (C is int32) and its float32 requantization are onnxruntime's, as
QLinearConv's are in qconv.py. The optimizer rewrites these nodes into that composition (passes/qoperator.py), so
that they share the Q/DQ form's INT8 layers.
"""

from __future__ import annotations

import torch

from ..ir import DType
from .emulated import integer_range
from .opdef import op
from .pool import average_pool_19
from .quantize import dequantize, quantize

MS_DOMAIN = "com.microsoft"
_QUANTIZED = (torch.int8, torch.uint8)


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _per_tensor(scale: torch.Tensor, zero_point: torch.Tensor | None, x: torch.Tensor, what: str):
    """(scale, zero point) of a per-tensor quantized operand, checked: one value each, float32 scale, the zero point
    of x's type (int8 or uint8)."""
    if x.dtype not in _QUANTIZED:
        raise TypeError(f"{what} must be int8 or uint8, got {_name(x.dtype)}")
    if not scale.dtype.is_floating_point or scale.numel() != 1:
        raise ValueError(f"{what}'s scale must be one float value, got {_name(scale.dtype)} {list(scale.shape)}")
    if zero_point is not None:
        if zero_point.dtype != x.dtype:
            raise TypeError(f"{what}'s zero point is {_name(zero_point.dtype)}, {what} is {_name(x.dtype)}: they "
                            "must agree")
        if zero_point.numel() != 1:
            raise ValueError(f"{what}'s zero point must be one value, got shape {list(zero_point.shape)}")
        zero_point = zero_point.reshape(())
    return scale.reshape(()).float(), zero_point


def _dq(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, what: str) -> torch.Tensor:
    scale, zero_point = _per_tensor(scale, zero_point, x, what)
    return dequantize(x, scale, zero_point, torch.float32)


def _q(y: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """y quantized to the type of its zero point (else of `like`, the op's quantized input)."""
    target = like if zero_point is None else zero_point
    scale, zero_point = _per_tensor(scale, zero_point, target, "the output")
    return quantize(y, scale, zero_point, DType.from_torch(target.dtype))


@op("QLinearAdd", domain=MS_DOMAIN, scale_inputs=(1, 4, 6))
def qlinear_add(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point=None):
    if a.dtype != b.dtype:
        raise TypeError(f"A and B must have one type, got {_name(a.dtype)} and {_name(b.dtype)}")
    return _q(_dq(a, a_scale, a_zero_point, "A") + _dq(b, b_scale, b_zero_point, "B"), c_scale, c_zero_point, a)


@op("QLinearMul", domain=MS_DOMAIN, scale_inputs=(1, 4, 6))
def qlinear_mul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point=None):
    if a.dtype != b.dtype:
        raise TypeError(f"A and B must have one type, got {_name(a.dtype)} and {_name(b.dtype)}")
    return _q(_dq(a, a_scale, a_zero_point, "A") * _dq(b, b_scale, b_zero_point, "B"), c_scale, c_zero_point, a)


@op("QLinearSigmoid", domain=MS_DOMAIN, scale_inputs=(1, 3))
def qlinear_sigmoid(x, x_scale, x_zero_point, y_scale, y_zero_point=None):
    return _q(torch.sigmoid(_dq(x, x_scale, x_zero_point, "X")), y_scale, y_zero_point, x)


@op("QLinearLeakyRelu", domain=MS_DOMAIN, scale_inputs=(1, 3))
def qlinear_leaky_relu(x, x_scale, x_zero_point, y_scale, y_zero_point=None, *, alpha: float = 0.01):
    d = _dq(x, x_scale, x_zero_point, "X")
    return _q(torch.where(d >= 0, d, d * torch.tensor(alpha, dtype=torch.float32)), y_scale, y_zero_point, x)


def _channels_first(x: torch.Tensor, channels_last: int) -> torch.Tensor:
    if x.dim() < 3:
        raise ValueError(f"X must be N x C x D1 x ... (rank 3 or more), got rank {x.dim()}")
    return x.movedim(-1, 1) if channels_last else x


@op("QLinearGlobalAveragePool", domain=MS_DOMAIN, scale_inputs=(1, 3))
def qlinear_global_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point, *, channels_last: int = 0):
    d = _channels_first(_dq(x, x_scale, x_zero_point, "X"), channels_last)
    y = _q(d.mean(dim=tuple(range(2, d.dim())), keepdim=True), y_scale, y_zero_point, x)
    return y.movedim(1, -1) if channels_last else y


@op("QLinearAveragePool", domain=MS_DOMAIN, scale_inputs=(1, 3))
def qlinear_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point=None, *, auto_pad: str = "NOTSET",
                         ceil_mode: int = 0, channels_last: int = 0, count_include_pad: int = 0,
                         kernel_shape: list[int], pads: list[int] | None = None, strides: list[int] | None = None):
    d = _channels_first(_dq(x, x_scale, x_zero_point, "X"), channels_last)
    pooled = average_pool_19.fn(d, auto_pad=auto_pad, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                                kernel_shape=kernel_shape, pads=pads, strides=strides)
    y = _q(pooled, y_scale, y_zero_point, x)
    return y.movedim(1, -1) if channels_last else y


@op("QLinearConcat", domain=MS_DOMAIN, scale_inputs=(0,))
def qlinear_concat(y_scale, y_zero_point, *inputs, axis: int):
    if len(inputs) % 3 or not inputs:
        raise ValueError(f"QLinearConcat takes Y_scale, Y_zero_point and then (X, X_scale, X_zero_point) for each "
                         f"input: got {len(inputs) + 2} inputs")
    parts = []
    for i in range(0, len(inputs), 3):
        x, scale, zero_point = inputs[i:i + 3]
        if x.dtype != y_zero_point.dtype:
            raise TypeError(f"input {i // 3} is {_name(x.dtype)}, Y_zero_point {_name(y_zero_point.dtype)}: they "
                            "must agree")
        parts.append(_dq(x, scale, zero_point, f"input {i // 3}"))
    return _q(torch.cat(parts, dim=axis), y_scale, y_zero_point, y_zero_point)


def _column_params(p: torch.Tensor | None, n: int, what: str) -> torch.Tensor | None:
    """A scalar, or one value per column of the [K, N] operand."""
    if p is None or p.numel() == 1:
        return None if p is None else p.reshape(())
    if p.dim() != 1 or p.shape[0] != n:
        raise ValueError(f"{what} must be a scalar or a vector of {n} (one per column of B), got shape "
                         f"{list(p.shape)}")
    return p


@op("QGemm", domain=MS_DOMAIN, scale_inputs=(1, 4, 7))
def qgemm(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c=None, y_scale=None, y_zero_point=None, *,
          alpha: float = 1.0, transA: int = 0, transB: int = 0):
    """onnxruntime's arithmetic: the int32 accumulator (with C, int32) times alpha * a_scale * b_scale [/ y_scale]
    in float32, rounded half to even and saturated when the output is quantized."""
    float_type = a_scale.dtype  # a float output's type: float32, or a lowered engine's float type
    a_scale, a_zero_point = _per_tensor(a_scale, a_zero_point, a, "A")
    if b.dtype not in _QUANTIZED or b_zero_point.dtype != b.dtype:
        raise TypeError(f"B and its zero point must be int8 or uint8 of one type, got {_name(b.dtype)} and "
                        f"{_name(b_zero_point.dtype)}")
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"A and B must be matrices, got shapes {list(a.shape)} and {list(b.shape)}")
    if (y_scale is None) != (y_zero_point is None):
        raise ValueError("y_scale and y_zero_point come together (a quantized output) or not at all (float32)")
    a = a.T if transA else a
    b = b.T if transB else b
    n = b.shape[1]
    b_scale = _column_params(b_scale, n, "b_scale")
    b_zero_point = _column_params(b_zero_point, n, "b_zero_point")
    if c is not None and c.dtype != torch.int32:
        raise TypeError(f"C must be int32, got {_name(c.dtype)}")
    acc = torch.matmul(a.to(torch.float64) - a_zero_point.to(torch.float64),
                       b.to(torch.float64) - b_zero_point.to(torch.float64))
    if c is not None:
        acc = acc + c.to(torch.float64)
    # NOTE: onnxruntime's order: alpha * a_scale * b_scale, then / y_scale, each in float32
    scale = torch.tensor(alpha, dtype=torch.float32, device=acc.device) * a_scale * b_scale.float()
    if y_scale is None:
        return (acc.float() * scale).to(float_type)
    scale = scale / y_scale.reshape(()).float()
    zero_point = y_zero_point.reshape(())
    low, high = integer_range(DType.from_torch(zero_point.dtype))
    y = torch.round(acc.float() * scale) + zero_point.float()
    return y.clamp(low, high).to(zero_point.dtype)


OPS = [qlinear_add, qlinear_mul, qlinear_sigmoid, qlinear_leaky_relu, qlinear_global_average_pool,
       qlinear_average_pool, qlinear_concat, qgemm]
