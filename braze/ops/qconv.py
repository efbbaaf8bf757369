"""Quantized convolutions: ConvInteger and QLinearConv.

Both subtract the zero points (x's per tensor, W's per tensor or per output channel) and convolve
the shifted integers with Conv's reference in float64, which holds every sum of 8-bit products
exactly; padding therefore pads with the zero point, as onnxruntime does. ConvInteger returns the
int32 accumulator; QLinearConv adds its int32 bias and requantizes as QLinearMatMul does.
"""

from __future__ import annotations

import torch

from .conv import conv
from .opdef import op

_QUANTIZED = (torch.int8, torch.uint8)


def _scalar(p: torch.Tensor, what: str) -> torch.Tensor:
    if p.numel() != 1:
        raise ValueError(f"{what} must be a scalar (per-tensor), got shape {list(p.shape)}")
    return p.reshape(())


def _per_channel(p: torch.Tensor, channels: int, rank: int, what: str) -> torch.Tensor:
    """A scalar, or one value per output channel shaped to broadcast over M x C x k1 x ... ."""
    if p.numel() == 1:
        return p.reshape(())
    if p.dim() != 1 or p.shape[0] != channels:
        raise ValueError(f"{what} must be a scalar or a vector of {channels} (one per output channel), "
                         f"got shape {list(p.shape)}")
    return p.reshape(channels, *([1] * (rank - 1)))


def _check_operands(x: torch.Tensor, w: torch.Tensor, x_zero_point: torch.Tensor | None,
                    w_zero_point: torch.Tensor | None) -> None:
    for t, name in ((x, "x"), (w, "w")):
        if t.dtype not in _QUANTIZED:
            raise TypeError(f"{name} must be int8 or uint8, got {str(t.dtype).removeprefix('torch.')}")
    for zp, t, name in ((x_zero_point, x, "x"), (w_zero_point, w, "w")):
        if zp is not None and zp.dtype != t.dtype:
            raise TypeError(f"{name}_zero_point must have {name}'s type {str(t.dtype).removeprefix('torch.')}")
    if w.dim() < 3:
        raise ValueError(f"w must be M x C/group x k1 x ... (rank 3 or more), got rank {w.dim()}")


def _accumulate(x: torch.Tensor, w: torch.Tensor, x_zero_point: torch.Tensor | None,
                w_zero_point: torch.Tensor | None, bias: torch.Tensor | None, attrs: dict) -> torch.Tensor:
    """The exact integer convolution of the zero-point-shifted operands, in float64."""
    xs = x.to(torch.float64)
    if x_zero_point is not None:
        xs = xs - _scalar(x_zero_point, "x_zero_point").to(torch.float64)
    ws = w.to(torch.float64)
    if w_zero_point is not None:
        ws = ws - _per_channel(w_zero_point, w.shape[0], w.dim(), "w_zero_point").to(torch.float64)
    b = None if bias is None else bias.to(torch.float64)
    return conv.fn(xs, ws, b, **attrs)


@op("ConvInteger", since=10)
def conv_integer(x, w, x_zero_point=None, w_zero_point=None, *, auto_pad: str = "NOTSET",
                 dilations: list[int] | None = None, group: int = 1, kernel_shape: list[int] | None = None,
                 pads: list[int] | None = None, strides: list[int] | None = None):
    _check_operands(x, w, x_zero_point, w_zero_point)
    acc = _accumulate(x, w, x_zero_point, w_zero_point, None, dict(
        auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads, strides=strides))
    return acc.to(torch.int32)


@op("QLinearConv", since=10, scale_inputs=(1, 4, 6))
def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, b=None, *,
                 auto_pad: str = "NOTSET", dilations: list[int] | None = None, group: int = 1,
                 kernel_shape: list[int] | None = None, pads: list[int] | None = None,
                 strides: list[int] | None = None):
    _check_operands(x, w, x_zero_point, w_zero_point)
    if y_zero_point.dtype not in _QUANTIZED:
        raise TypeError(f"y_zero_point must be int8 or uint8, got {str(y_zero_point.dtype).removeprefix('torch.')}")
    for s, name in ((x_scale, "x_scale"), (w_scale, "w_scale"), (y_scale, "y_scale")):
        if s.dtype != torch.float32:
            raise TypeError(f"{name} must be float32, got {str(s.dtype).removeprefix('torch.')}")
    if b is not None and (b.dtype != torch.int32 or b.dim() != 1):
        raise TypeError(f"the bias must be an int32 vector, got {str(b.dtype).removeprefix('torch.')} "
                        f"of shape {list(b.shape)}")
    acc = _accumulate(x, w, x_zero_point, w_zero_point, b, dict(
        auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads, strides=strides))
    # NOTE: onnxruntime requantizes in float32: acc * (x_scale * w_scale / y_scale), rounded half to even
    w_scale = _per_channel(w_scale, w.shape[0], acc.dim() - 1, "w_scale")
    multiplier = _scalar(x_scale, "x_scale") * w_scale / _scalar(y_scale, "y_scale")
    zero_point = _scalar(y_zero_point, "y_zero_point")
    y = torch.round(acc.float() * multiplier) + zero_point.float()
    info = torch.iinfo(zero_point.dtype)
    return y.clamp(info.min, info.max).to(zero_point.dtype)


OPS = [conv_integer, qlinear_conv]
