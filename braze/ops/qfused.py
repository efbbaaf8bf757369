"""braze's quantized fused kinds (domain "braze"), made by the Q/DQ fusion rules (passes/fuse_qdq.py).

  QConv   quantize?(activation(conv(dq(x_q), dq(w_q)) + bias [+ residual]))
  QGemm   quantize?(activation(dq(x_q) @ dq(w_q) + bias) [+ residual])

x_q is int8 or uint8 with a per-tensor scale and zero point (attributes); w_q is int8, symmetric, with one
float scale per output channel (an input: conv's axis 0, gemm's axis 1); the bias and a residual are in the
float type (a residual may instead be quantized, with its own scale and zero point: the quantized skip
branch of a residual block). With `out_scale` > 0 the output is requantized to `output_dtype` (int8 or uint8,
the next INT8 layer's input); otherwise it is dequantized to `output_dtype` (the engine's float type).

The references accumulate the integer products exactly (float64 holds every sum an int32 accumulator can),
then scale in float32, as the kernels do: a kernel matches its reference to within one step of its output.
"""

from __future__ import annotations

import torch

from . import conv as _conv
from .epilogue import activate
from .kinds import DOMAIN, Kind
from .opdef import op
from .quantize import dtype_of_code, integer_range


def _dequantized_input(x_q: torch.Tensor, zero_point: int) -> torch.Tensor:
    return x_q.to(torch.float64) - zero_point


def _epilogue(acc: torch.Tensor, scale: torch.Tensor, bias, residual, *, residual_scale: float,
              residual_zero_point: int, activation: str, act_params, out_scale: float, out_zero_point: int,
              output_dtype: int, residual_first: bool) -> torch.Tensor:
    y = acc.float() * scale
    if bias is not None:
        y = y + bias.float()
    r = None
    if residual is not None:
        r = residual.float() if residual_scale == 0 else (residual.to(torch.float64) - residual_zero_point).float() \
            * residual_scale
    if r is not None and residual_first:
        y = y + r
    y = activate(y, activation, act_params or [])
    if r is not None and not residual_first:
        y = y + r
    out = dtype_of_code(output_dtype, "output_dtype")
    if out_scale > 0:
        low, high = integer_range(out)
        return (torch.round(y.double() / out_scale) + out_zero_point).clamp(low, high).to(out.torch)
    return y.to(out.torch)


@op(Kind.QCONV, domain=DOMAIN, scale_inputs=(2,))
def qconv(x_q, w_q, w_scale, b=None, residual=None, *, x_scale: float, x_zero_point: int = 0,
          auto_pad: str = "NOTSET", dilations: list[int] | None = None, group: int = 1,
          kernel_shape: list[int] | None = None, pads: list[int] | None = None, strides: list[int] | None = None,
          activation: str = "none", act_params: list[float] | None = None, residual_scale: float = 0.0,
          residual_zero_point: int = 0, out_scale: float = 0.0, out_zero_point: int = 0, output_dtype: int = 1,
          layout: str = "nchw"):
    """`layout` is where the tensors live in memory (nchw, or nhwc: channels last); the values are the same.
    The bias is added to the conv's [N, M, ...] output along M; the residual before the activation (FusedConv's
    order)."""
    acc = _conv.conv.fn(_dequantized_input(x_q, x_zero_point), w_q.to(torch.float64), None, auto_pad=auto_pad,
                        dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads, strides=strides)
    scale = (w_scale.float() * x_scale).reshape([-1] + [1] * (acc.dim() - 2))
    if b is not None:
        b = b.reshape([-1] + [1] * (acc.dim() - 2))
    return _epilogue(acc, scale, b, residual, residual_scale=residual_scale, residual_zero_point=residual_zero_point,
                     activation=activation, act_params=act_params, out_scale=out_scale,
                     out_zero_point=out_zero_point, output_dtype=output_dtype, residual_first=True)


@op(Kind.QGEMM, domain=DOMAIN, scale_inputs=(2,))
def qgemm(x_q, w_q, w_scale, b=None, residual=None, *, x_scale: float, x_zero_point: int = 0,
          activation: str = "none", act_params: list[float] | None = None, residual_scale: float = 0.0,
          residual_zero_point: int = 0, out_scale: float = 0.0, out_zero_point: int = 0, output_dtype: int = 1):
    """x [..., K] @ w [K, N] with w's scale per N; the residual after the activation (FusedGemm's order)."""
    acc = torch.matmul(_dequantized_input(x_q, x_zero_point), w_q.to(torch.float64))
    return _epilogue(acc, w_scale.float() * x_scale, b, residual, residual_scale=residual_scale,
                     residual_zero_point=residual_zero_point, activation=activation, act_params=act_params,
                     out_scale=out_scale, out_zero_point=out_zero_point, output_dtype=output_dtype,
                     residual_first=False)


OPS = [qconv, qgemm]
