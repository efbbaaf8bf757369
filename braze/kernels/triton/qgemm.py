"""A Triton INT8 GEMM with the quantized epilogue fused, and that epilogue alone (after cuBLASLt's int8 GEMM).

    out = quantize?(act(acc * (x_scale * w_scale[n]) + bias[n] [+ residual]) [+ residual])

x is [M, K] int8, or uint8 with a zero point; w is prepared once as [N, K] int8 (K-major: what int8 tensor-core
MMA wants for both operands); `tl.dot` accumulates in int32. The zero point never enters the inner loop: a uint8
x is shifted to int8 in registers (x - 128, one xor), and the epilogue adds a per-column correction
(128 - zp) * sum_k w[k, n] computed at compile time (-zp * sum_k w[k, n] for an int8 x), so the accumulator holds
exactly sum_k (x - zp) * w. The epilogue then scales in float32, adds the bias, applies the activation, adds the
residual (float, or int8/uint8 with its own scale and zero point) before or after it, and stores float
(fp32/fp16/bf16) or requantizes (round half to even, saturate) to int8/uint8.

The epilogue computes what the reference computes, operation by operation in float32 (the kernels are launched
without fp fusion, so no multiply-add is contracted), and requantizes exactly as the reference's float64 division
does for a float32 out_scale, as the Q/DQ fusion makes it (`_requantize`): outside the transcendental activations,
a requantized output equals its reference.

The output rows may be the pixels of a 4-D tensor: row r is (n, oh, ow) = (r // (OH*OW), r // OW % OH, r % OW),
with one stride each, so the convolution kernels (qconv.py) and the 1x1 convolutions run through cuBLASLt share
this epilogue whatever their layout. CONFIGS is the tuning space; `heuristic` is level 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ...ops.epilogue import ACTIVATION_TABLE, subset

# The activations `activate` below has a branch for, by their codes in braze's activation table.
SUPPORTED_ACTIVATIONS = subset(("none", "relu", "clip", "leaky_relu", "sigmoid", "tanh", "hardswish", "hardsigmoid",
                                "silu", "gelu", "gelu_tanh", "elu"), "the Triton INT8 epilogue")
ACT_CODES = {a.name: a.code for a in ACTIVATION_TABLE.values() if a.name in SUPPORTED_ACTIVATIONS}
_RELU = tl.constexpr(ACT_CODES["relu"])
_CLIP = tl.constexpr(ACT_CODES["clip"])
_LEAKY_RELU = tl.constexpr(ACT_CODES["leaky_relu"])
_SIGMOID = tl.constexpr(ACT_CODES["sigmoid"])
_TANH = tl.constexpr(ACT_CODES["tanh"])
_HARDSWISH = tl.constexpr(ACT_CODES["hardswish"])
_HARDSIGMOID = tl.constexpr(ACT_CODES["hardsigmoid"])
_SILU = tl.constexpr(ACT_CODES["silu"])
_GELU = tl.constexpr(ACT_CODES["gelu"])
_GELU_TANH = tl.constexpr(ACT_CODES["gelu_tanh"])
_ELU = tl.constexpr(ACT_CODES["elu"])

CONFIGS = [
    {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 128, "num_warps": 8, "num_stages": 3},
    {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 128, "num_warps": 8, "num_stages": 3},
    {"BLOCK_M": 256, "BLOCK_N": 128, "BLOCK_K": 128, "num_warps": 8, "num_stages": 3},
    {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 4, "num_stages": 4},
    {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 128, "num_warps": 4, "num_stages": 4},
    {"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 128, "num_warps": 4, "num_stages": 4},
    {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "num_warps": 4, "num_stages": 4},
    {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 4, "num_stages": 5},
    {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 256, "num_warps": 4, "num_stages": 3},
    {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 256, "num_warps": 4, "num_stages": 3},
]


def heuristic(m: int, n: int, k: int) -> dict[str, int]:
    """Level 0: a block that fits the problem (K here is the reduction per step: C for a convolution)."""
    bm = 16 if m <= 16 else 32 if m <= 32 else 64 if m <= 1024 or n < 128 else 128
    bn = 64 if n <= 64 else 128
    bk = max(32, min(128, triton.next_power_of_2(k)))
    big = bm * bn >= 128 * 128
    return {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "num_warps": 8 if big else 4, "num_stages": 3 if big else 4}


def tuning_space(m: int, n: int, k: int, level: int) -> list[dict[str, int]]:
    """The heuristic config first; from level 1 the CONFIGS whose blocks are not far larger than the problem."""
    first = heuristic(m, n, k)
    if level == 0:
        return [first]
    fitting = [c for c in CONFIGS if c["BLOCK_M"] <= max(16, 2 * m) and c["BLOCK_N"] <= max(64, 2 * n)
               and c["BLOCK_K"] <= max(32, triton.next_power_of_2(k)) and c != first]
    return [first] + fitting[: 2 if level == 1 else len(fitting)]


@dataclass(frozen=True)
class Epilogue:
    """Everything the fused epilogue needs, prepared once at compile time on the kernel's device."""

    scale: torch.Tensor  # [N] float32: w_scale * x_scale, computed as the reference does
    correction: torch.Tensor | None  # [N] int32: (shift - x_zero_point) * sum_k w[k, n]; None when 0
    bias: torch.Tensor | None  # [N] float32
    flip: bool  # x is uint8: the kernel shifts it to int8 (x - 128)
    pad_value: int  # a padded input element: the zero point's byte, read as int8
    activation: int
    act_params: tuple[float, float]
    residual: int  # 0: none, 1: float, 2: int8/uint8 with residual_scale and residual_zero_point
    residual_first: bool  # added before the activation (QConv) or after it (QGemm)
    residual_scale: float
    residual_zero_point: int
    quantize: bool  # requantize the output; else store it in the output's float type
    inv_out_scale: float
    out_scale_hi: float  # out_scale as two float32s, hi + lo
    out_scale_lo: float
    out_zero_point: float
    out_low: float  # the saturation bounds, less the zero point
    out_high: float

    def args(self) -> tuple:
        p0, p1 = self.act_params
        return (p0, p1, self.residual_scale, self.residual_zero_point, self.inv_out_scale, self.out_scale_hi,
                self.out_scale_lo, self.out_zero_point, self.out_low, self.out_high)

    def constexprs(self) -> dict[str, int | bool]:
        return {"HAS_CORR": self.correction is not None, "HAS_BIAS": self.bias is not None, "RES": self.residual,
                "RES_FIRST": self.residual_first, "ACT": self.activation, "QUANT": self.quantize}


def prepare_epilogue(attrs: dict, w_nk: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None, *,
                     x_dtype: torch.dtype, out_dtype: torch.dtype, residual: bool, residual_first: bool,
                     device: torch.device) -> Epilogue:
    """The epilogue of a QGemm/QConv node (its attributes, its [N, K] int8 weight, scales and bias); a residual
    is quantized where the node's residual_scale is set, as in the reference."""
    zp = int(attrs.get("x_zero_point", 0))
    shift = 128 if x_dtype == torch.uint8 else 0
    # NOTE: exact: every column sum of an int8 weight times a difference of two bytes fits int32
    correction = (shift - zp) * w_nk.to(torch.int64).sum(1)
    n = w_nk.shape[0]
    scale = w_scale.float() * float(attrs["x_scale"])  # NOTE: the reference's own float32 product
    params = [float(p) for p in attrs.get("act_params") or []] + [0.0, 0.0]
    out_scale = float(attrs.get("out_scale", 0.0))
    quantize = out_scale > 0
    info = torch.iinfo(out_dtype) if quantize else None
    out_zp = int(attrs.get("out_zero_point", 0))
    residual_scale = float(attrs.get("residual_scale", 0.0))
    hi = float(torch.tensor(out_scale, dtype=torch.float32))
    return Epilogue(
        scale=scale.reshape(-1).expand(n).contiguous().to(device),  # one per column, also where one for all
        correction=correction.to(device, torch.int32) if shift != zp else None,
        bias=None if bias is None else bias.to(device, torch.float32).reshape(-1).expand(n).contiguous(),
        flip=shift != 0,
        pad_value=(zp + 128) % 256 - 128, activation=ACT_CODES[attrs.get("activation", "none")],
        act_params=(params[0], params[1]),
        residual=0 if not residual else 2 if residual_scale > 0 else 1, residual_first=residual_first,
        residual_scale=residual_scale,
        residual_zero_point=int(attrs.get("residual_zero_point", 0)), quantize=quantize,
        inv_out_scale=1.0 / out_scale if quantize else 1.0, out_scale_hi=hi, out_scale_lo=out_scale - hi,
        out_zero_point=float(out_zp),
        out_low=float(info.min - out_zp) if info else 0.0, out_high=float(info.max - out_zp) if info else 0.0)


@triton.jit
def _sigmoid(v):
    return 1.0 / (1.0 + tl.exp(-v))


@triton.jit
def _tanh(v):
    e = tl.exp(-2.0 * tl.abs(v))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(v < 0, -t, t)


@triton.jit
def _unit_clamp(v):
    return tl.where(v < 0.0, 0.0, tl.where(v > 1.0, 1.0, v))  # NOTE: keeps NaN, as torch.clamp does


@triton.jit
def activate(y, ACT: tl.constexpr, p0, p1):
    """fused.activate in float32, NaN and inf kept as it keeps them (p0, p1: act_params)."""
    if ACT == _RELU:
        y = tl.maximum(y, 0.0, propagate_nan=tl.PropagateNan.ALL)
    elif ACT == _CLIP:
        y = tl.where(y < p0, p0, y)
        y = tl.where(y > p1, p1, y)
    elif ACT == _LEAKY_RELU:
        y = tl.where(y < 0, y * p0, y)
    elif ACT == _SIGMOID:
        y = _sigmoid(y)
    elif ACT == _TANH:
        y = _tanh(y)
    elif ACT == _HARDSWISH:
        y = y * _unit_clamp(y * 0.16666666666666666 + 0.5)
    elif ACT == _HARDSIGMOID:
        y = _unit_clamp(y * p0 + p1)
    elif ACT == _SILU:
        y = y * _sigmoid(y)
    elif ACT == _GELU:
        y = 0.5 * y * (1.0 + tl.erf(y * 0.7071067811865476))
    elif ACT == _GELU_TANH:
        y = 0.5 * y * (1.0 + _tanh(0.7978845608028654 * (y + 0.044715 * y * y * y)))
    elif ACT == _ELU:
        y = tl.where(y < 0, p0 * (tl.exp(y) - 1.0), y)
    return y


@triton.jit
def _requantize(y, inv, s_hi, s_lo, low, high):
    """round_half_even(y / s) saturated to [low, high], s = s_hi + s_lo > 0, as the float64 division y / s rounds:
    the estimate y * (1/s) finds the half-integer t next to y / s, and the sign of y - t*s, exact through fma
    (when s is a float32; nearly so otherwise), says on which side of t the quotient lies; at t itself, the even
    neighbour. NaN requantizes to 0 (the reference's cast of NaN to an integer is undefined)."""
    v = y * inv
    v = tl.where(v != v, 0.0, v)
    v = tl.minimum(tl.maximum(v, low - 1.0), high + 1.0)
    f = tl.floor(v)
    t = f + 0.5
    r = tl.fma(-t, s_lo, tl.fma(-t, s_hi, y))
    odd = (f - 2.0 * tl.floor(f * 0.5)) == 1.0
    n = tl.where((r > 0.0) | ((r == 0.0) & odd), f + 1.0, f)
    return tl.minimum(tl.maximum(n, low), high)


@triton.jit
def row_offsets(rm, OH, OW, s_n, s_h, s_w):
    """Element offsets of rows r = (n, oh, ow) of an [*, OH, OW]-row tensor (a plain matrix: OH = OW = 1)."""
    hw = OH * OW
    p = rm % hw
    return (rm // hw).to(tl.int64) * s_n + (p // OW) * s_h + (p % OW) * s_w


@triton.jit
def epilogue(acc, rm, rn, M, N, OH, OW, corr_ptr, scale_ptr, bias_ptr,
             res_ptr, s_rn, s_rh, s_rw, s_rc, out_ptr, s_on, s_oh, s_ow, s_oc,
             p0, p1, res_scale, res_zp, inv_out_scale, s_hi, s_lo, out_zp, out_low, out_high,
             HAS_CORR: tl.constexpr, HAS_BIAS: tl.constexpr, RES: tl.constexpr, RES_FIRST: tl.constexpr,
             ACT: tl.constexpr, QUANT: tl.constexpr):
    """Scale, bias, activation, residual and requantization of an int32 tile; stores it into out."""
    mask_n = rn < N
    mask = (rm < M)[:, None] & mask_n[None, :]
    if HAS_CORR:
        acc += tl.load(corr_ptr + rn, mask=mask_n, other=0)[None, :]
    y = acc.to(tl.float32) * tl.load(scale_ptr + rn, mask=mask_n, other=0.0)[None, :]
    if HAS_BIAS:
        y += tl.load(bias_ptr + rn, mask=mask_n, other=0.0)[None, :]
    if RES != 0:
        r_rows = row_offsets(rm, OH, OW, s_rn, s_rh, s_rw)
        r = tl.load(res_ptr + r_rows[:, None] + rn[None, :] * s_rc, mask=mask, other=0)
        if RES == 2:
            r = (r.to(tl.int32) - res_zp).to(tl.float32) * res_scale
        else:
            r = r.to(tl.float32)
        if RES_FIRST:
            y += r
    y = activate(y, ACT, p0, p1)
    if RES != 0:
        if not RES_FIRST:
            y += r
    o_rows = row_offsets(rm, OH, OW, s_on, s_oh, s_ow)
    o_ptrs = out_ptr + o_rows[:, None] + rn[None, :] * s_oc
    if QUANT:
        q = (_requantize(y, inv_out_scale, s_hi, s_lo, out_low, out_high) + out_zp).to(tl.int32)
        tl.store(o_ptrs, q.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(o_ptrs, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _qgemm_kernel(x_ptr, w_ptr, corr_ptr, scale_ptr, bias_ptr, res_ptr, out_ptr, M, N, K, s_xm, s_xk, OH, OW,
                  s_rn, s_rh, s_rw, s_rc, s_on, s_oh, s_ow, s_oc,
                  p0, p1, res_scale, res_zp, inv_out_scale, s_hi, s_lo, out_zp, out_low, out_high,
                  FLIP: tl.constexpr, EVEN_K: tl.constexpr, HAS_CORR: tl.constexpr, HAS_BIAS: tl.constexpr,
                  RES: tl.constexpr, RES_FIRST: tl.constexpr, ACT: tl.constexpr, QUANT: tl.constexpr,
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
    # NOTE: rows and columns past the end wrap around to valid ones; their results are never stored
    ram = rm % M
    rbn = rn % N
    x_ptrs = x_ptr + ram[:, None].to(tl.int64) * s_xm + rk[None, :] * s_xk
    w_ptrs = w_ptr + rbn[None, :].to(tl.int64) * K + rk[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            a = tl.load(x_ptrs)
            b = tl.load(w_ptrs)
        else:
            k_left = K - k * BLOCK_K
            a = tl.load(x_ptrs, mask=rk[None, :] < k_left, other=0)
            b = tl.load(w_ptrs, mask=rk[:, None] < k_left, other=0)
        if FLIP:
            a = (a ^ -128).to(tl.int8)
        acc = tl.dot(a, b, acc, out_dtype=tl.int32)
        x_ptrs += BLOCK_K * s_xk
        w_ptrs += BLOCK_K
    epilogue(acc, rm, rn, M, N, OH, OW, corr_ptr, scale_ptr, bias_ptr, res_ptr, s_rn, s_rh, s_rw, s_rc,
             out_ptr, s_on, s_oh, s_ow, s_oc, p0, p1, res_scale, res_zp, inv_out_scale, s_hi, s_lo, out_zp, out_low,
             out_high, HAS_CORR, HAS_BIAS, RES, RES_FIRST, ACT, QUANT)


@triton.jit
def _epilogue_kernel(acc_ptr, s_am, s_an, corr_ptr, scale_ptr, bias_ptr, res_ptr, out_ptr, M, N, OH, OW,
                     s_rn, s_rh, s_rw, s_rc, s_on, s_oh, s_ow, s_oc,
                     p0, p1, res_scale, res_zp, inv_out_scale, s_hi, s_lo, out_zp, out_low, out_high,
                     HAS_CORR: tl.constexpr, HAS_BIAS: tl.constexpr, RES: tl.constexpr, RES_FIRST: tl.constexpr,
                     ACT: tl.constexpr, QUANT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rm < M)[:, None] & (rn < N)[None, :]
    acc = tl.load(acc_ptr + rm[:, None].to(tl.int64) * s_am + rn[None, :] * s_an, mask=mask, other=0)
    epilogue(acc, rm, rn, M, N, OH, OW, corr_ptr, scale_ptr, bias_ptr, res_ptr, s_rn, s_rh, s_rw, s_rc,
             out_ptr, s_on, s_oh, s_ow, s_oc, p0, p1, res_scale, res_zp, inv_out_scale, s_hi, s_lo, out_zp, out_low,
             out_high, HAS_CORR, HAS_BIAS, RES, RES_FIRST, ACT, QUANT)


def rows_view(t: torch.Tensor) -> tuple[int, int, int, int, int, int]:
    """(OH, OW, s_n, s_h, s_w, s_c) of a matrix [M, N] (rows, columns) or of a conv tensor [N, C, OH, OW]."""
    if t.dim() == 2:
        return 1, 1, t.stride(0), 0, 0, t.stride(1)
    return t.shape[2], t.shape[3], t.stride(0), t.stride(2), t.stride(3), t.stride(1)


def epilogue_operands(epi: Epilogue, out: torch.Tensor, residual: torch.Tensor | None) -> tuple:
    oh, ow, s_on, s_oh, s_ow, s_oc = rows_view(out)
    res = residual if residual is not None else out
    _, _, s_rn, s_rh, s_rw, s_rc = rows_view(res)
    corr = epi.correction if epi.correction is not None else epi.scale
    bias = epi.bias if epi.bias is not None else epi.scale
    return (corr, epi.scale, bias, res), (oh, ow), (s_rn, s_rh, s_rw, s_rc, s_on, s_oh, s_ow, s_oc)


def qgemm(x: torch.Tensor, w_nk: torch.Tensor, out: torch.Tensor, epi: Epilogue, residual: torch.Tensor | None = None,
          *, BLOCK_M: int = 64, BLOCK_N: int = 64, BLOCK_K: int = 64, num_warps: int = 4, num_stages: int = 3,
          GROUP_M: int = 8) -> torch.Tensor:
    """out = epilogue(x[M, K] @ w_nk[N, K]^T): x int8 or uint8 (as `epi` was prepared for), out [M, N] or the
    [N, C, OH, OW] output of a 1x1 convolution whose rows are x's rows; a residual has out's shape."""
    m, k = x.shape
    n = w_nk.shape[0]
    (corr, scale, bias, res), (oh, ow), strides = epilogue_operands(epi, out, residual)
    grid = (triton.cdiv(m, BLOCK_M) * triton.cdiv(n, BLOCK_N),)
    xi = x.view(torch.int8)
    _qgemm_kernel[grid](xi, w_nk, corr, scale, bias, res, out, m, n, k, xi.stride(0), xi.stride(1), oh, ow, *strides,
                        *epi.args(), FLIP=epi.flip, EVEN_K=k % BLOCK_K == 0, **epi.constexprs(),
                        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, GROUP_M=GROUP_M,
                        num_warps=num_warps, num_stages=num_stages, enable_fp_fusion=False)
    return out


def int32_epilogue(acc: torch.Tensor, out: torch.Tensor, epi: Epilogue, residual: torch.Tensor | None = None, *,
                   BLOCK_M: int = 64, BLOCK_N: int = 64, num_warps: int = 4) -> torch.Tensor:
    """out = epilogue(acc) for an int32 accumulator [M, N] made elsewhere (torch._int_mm), rows as in qgemm."""
    m, n = acc.shape
    (corr, scale, bias, res), (oh, ow), strides = epilogue_operands(epi, out, residual)
    grid = (triton.cdiv(m, BLOCK_M), triton.cdiv(n, BLOCK_N))
    _epilogue_kernel[grid](acc, acc.stride(0), acc.stride(1), corr, scale, bias, res, out, m, n, oh, ow, *strides,
                           *epi.args(), **epi.constexprs(), BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, num_warps=num_warps,
                           enable_fp_fusion=False)
    return out
