"""A Triton INT8 2-D convolution as an implicit GEMM, with the quantized epilogue of qgemm.py fused.

Rows are output pixels (n, oh, ow), columns output channels, and the reduction runs over the taps (kh, kw) and,
innermost, the input channels: the weight is prepared once as [M, KH*KW*C] int8 (channels fastest, as in an
NHWC input). Each step of the loop loads, for one tap, a [BLOCK_M, BLOCK_K] block of input channels straight from
x (any strides; channels-last makes the loads contiguous) and a [BLOCK_K, BLOCK_N] block of the weight, and
accumulates their int8 product in int32. A padded input element reads as the zero point, so it adds nothing once
the per-column correction of the epilogue removes the zero point (qgemm.py): padding is zero in the dequantized
values, as in the reference. Strides, padding (also asymmetric) and dilation are free; groups are not (group 1).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...ops.spatial import Window
from .qgemm import Epilogue, epilogue_operands, epilogue


@triton.jit
def _qconv_kernel(x_ptr, w_ptr, corr_ptr, scale_ptr, bias_ptr, res_ptr, out_ptr, M, N, H, W, OH, OW,
                  s_xn, s_xc, s_xh, s_xw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, pad_value,
                  s_rn, s_rh, s_rw, s_rc, s_on, s_oh, s_ow, s_oc,
                  p0, p1, res_scale, res_zp, inv_out_scale, s_hi, s_lo, out_zp, out_low, out_high,
                  C: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, FLIP: tl.constexpr, EVEN_C: tl.constexpr,
                  HAS_CORR: tl.constexpr, HAS_BIAS: tl.constexpr, RES: tl.constexpr, RES_FIRST: tl.constexpr,
                  ACT: tl.constexpr, QUANT: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    pid = tl.program_id(0)
    grid_m = tl.cdiv(M, BLOCK_M)
    grid_n = tl.cdiv(N, BLOCK_N)
    group = pid // (GROUP_M * grid_n)
    first_m = group * GROUP_M
    rows_in_group = tl.minimum(grid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % rows_in_group)
    pid_n = (pid % (GROUP_M * grid_n)) // rows_in_group

    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    ohw = OH * OW
    p = rm % ohw
    ih0 = (p // OW) * stride_h - pad_h
    iw0 = (p % OW) * stride_w - pad_w
    x_rows = x_ptr + (rm // ohw).to(tl.int64) * s_xn
    row_ok = rm < M
    rbn = rn % N  # NOTE: columns past the end wrap around to valid ones; their results are never stored
    w_cols = w_ptr + rbn[None, :].to(tl.int64) * (KH * KW * C)
    CB: tl.constexpr = (C + BLOCK_K - 1) // BLOCK_K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for t in range(0, KH * KW * CB):
        tap = t // CB
        c = (t % CB) * BLOCK_K + rk
        ih = ih0 + (tap // KW) * dil_h
        iw = iw0 + (tap % KW) * dil_w
        inside = row_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a_ptrs = x_rows[:, None] + (ih * s_xh + iw * s_xw)[:, None] + c[None, :] * s_xc
        w_ptrs = w_cols + (tap * C + c)[:, None]
        if EVEN_C:
            a = tl.load(a_ptrs, mask=inside[:, None], other=pad_value)
            b = tl.load(w_ptrs)
        else:
            a = tl.load(a_ptrs, mask=inside[:, None] & (c[None, :] < C), other=pad_value)
            b = tl.load(w_ptrs, mask=c[:, None] < C, other=0)
        if FLIP:
            a = (a ^ -128).to(tl.int8)
        acc = tl.dot(a, b, acc, out_dtype=tl.int32)
    epilogue(acc, rm, rn, M, N, OH, OW, corr_ptr, scale_ptr, bias_ptr, res_ptr, s_rn, s_rh, s_rw, s_rc,
             out_ptr, s_on, s_oh, s_ow, s_oc, p0, p1, res_scale, res_zp, inv_out_scale, s_hi, s_lo, out_zp, out_low,
             out_high, HAS_CORR, HAS_BIAS, RES, RES_FIRST, ACT, QUANT)


def prepare_weight(w_q: torch.Tensor) -> torch.Tensor:
    """[M, C, KH, KW] int8 -> [M, KH*KW*C] int8, channels fastest (the kernel's reduction order)."""
    return w_q.permute(0, 2, 3, 1).reshape(w_q.shape[0], -1).contiguous()


def qconv(x: torch.Tensor, w_mk: torch.Tensor, out: torch.Tensor, epi: Epilogue, win: Window,
          residual: torch.Tensor | None = None, *, BLOCK_M: int = 64, BLOCK_N: int = 64, BLOCK_K: int = 64,
          num_warps: int = 4, num_stages: int = 3, GROUP_M: int = 8) -> torch.Tensor:
    """out [N, M, OH, OW] = epilogue(conv(x [N, C, H, W], w)) with w_mk from prepare_weight; any strides for x, out
    and the residual (out's shape); `win` the resolved window (kernel, strides, dilations, padding before)."""
    n_img, c, h, w = x.shape
    kh, kw = win.kernel
    m_out = w_mk.shape[0]
    oh, ow = out.shape[2], out.shape[3]
    rows = n_img * oh * ow
    (corr, scale, bias, res), _, strides = epilogue_operands(epi, out, residual)
    xi = x.view(torch.int8)
    grid = (triton.cdiv(rows, BLOCK_M) * triton.cdiv(m_out, BLOCK_N),)
    _qconv_kernel[grid](xi, w_mk, corr, scale, bias, res, out, rows, m_out, h, w, oh, ow,
                        xi.stride(0), xi.stride(1), xi.stride(2), xi.stride(3), win.strides[0], win.strides[1],
                        win.begin[0], win.begin[1], win.dilations[0], win.dilations[1], epi.pad_value, *strides,
                        *epi.args(), C=c, KH=kh, KW=kw, FLIP=epi.flip, EVEN_C=c % BLOCK_K == 0, **epi.constexprs(),
                        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, GROUP_M=GROUP_M,
                        num_warps=num_warps, num_stages=num_stages, enable_fp_fusion=False)
    return out
