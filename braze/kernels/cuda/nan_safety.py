"""Whether a CUDA library's fused epilogue propagates NaN and inf as braze's references do.

cuDNN's fused conv+bias(+add)+ReLU and cuBLASLt's ReLU/GELU epilogues are chosen by torch and the libraries,
and whether their max(x, 0) keeps a NaN is not documented (cuDNN's pointwise ReLU has a NaN-propagation mode
that torch does not set). So braze asks the library itself, once per device, dtype and path: it runs the fused
call on a small input with NaN, +inf and -inf planted and compares the non-finite pattern with the unfused
computation. A tactic offers (and, at load, compiles) a fused library path only where this holds; otherwise it
applies the activation with torch after the product (one more pass over the output).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ...ops.fused import activate


def _pattern(y: torch.Tensor) -> torch.Tensor:
    """0 finite, 1 NaN, 2 +inf, 3 -inf, per element."""
    y = y.float()
    return torch.isnan(y).byte() + 2 * torch.isposinf(y).byte() + 3 * torch.isneginf(y).byte()


def _planted(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    flat = x.view(-1)
    spots = torch.randperm(flat.numel(), generator=g)[:6]
    flat[spots[:2]], flat[spots[2:4]], flat[spots[4:]] = float("nan"), float("inf"), -float("inf")
    return x.to(device, dtype)


def _usable(device: torch.device) -> bool:
    """Probing launches kernels: never inside a CUDA graph capture (the caller then keeps the unfused path)."""
    return device.type == "cuda" and not torch.cuda.is_current_stream_capturing()


def cudnn_relu_propagates(device: torch.device, dtype: torch.dtype, nhwc: bool, residual: bool) -> bool:
    """cuDNN's fused conv+bias(+add)+ReLU (torch.cudnn_convolution_(add_)relu) keeps NaN and inf."""
    return _usable(device) and _cudnn_relu_propagates(device, dtype, nhwc, residual)


def cublaslt_epilogue_propagates(device: torch.device, dtype: torch.dtype, gelu: bool) -> bool:
    """cuBLASLt's bias+ReLU (or bias+GELU, tanh form) epilogue through torch._addmm_activation keeps NaN and inf."""
    return _usable(device) and _cublaslt_epilogue_propagates(device, dtype, gelu)


# NOTE: the probes are cached per process; _usable is checked outside them, so that a "no" given during a
# capture (when no probe can run) is not remembered
@functools.cache
def _cudnn_relu_propagates(device: torch.device, dtype: torch.dtype, nhwc: bool, residual: bool) -> bool:
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    x = _planted((2, 8, 9, 9), dtype, device, 0).contiguous(memory_format=fmt)
    w = (torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(1)) * 0.2).to(device, dtype)
    w = w.contiguous(memory_format=fmt)
    b = torch.randn(16, generator=torch.Generator().manual_seed(2)).to(device, dtype)
    y = F.conv2d(x, w, b, 1, 1)
    try:
        if residual:
            r = _planted(tuple(y.shape), dtype, device, 3).contiguous(memory_format=fmt)
            fused = torch.cudnn_convolution_add_relu(x, w, r, 1.0, b, [1, 1], [1, 1], [1, 1], 1)
            y = y + r
        else:
            fused = torch.cudnn_convolution_relu(x, w, b, [1, 1], [1, 1], [1, 1], 1)
    except RuntimeError:  # no fused engine for this dtype/layout: the tactic keeps the unfused path
        return False
    return torch.equal(_pattern(fused), _pattern(torch.relu(y)))


@functools.cache
def _cublaslt_epilogue_propagates(device: torch.device, dtype: torch.dtype, gelu: bool) -> bool:
    x = _planted((32, 24), dtype, device, 4)
    w = torch.randn(24, 40, generator=torch.Generator().manual_seed(5)).to(device, dtype)
    b = torch.randn(40, generator=torch.Generator().manual_seed(6)).to(device, dtype)
    expected = _pattern(activate(torch.addmm(b, x, w).float(), "gelu_tanh" if gelu else "relu", []))
    for weight in (w, w.t().contiguous().t()):  # both layouts CublasGemmTactic uses, into out= as it does
        fused = torch.empty(32, 40, dtype=dtype, device=device)
        torch._addmm_activation(b, x, weight, use_gelu=gelu, out=fused)
        if not torch.equal(_pattern(fused), expected):
            return False
    return True
