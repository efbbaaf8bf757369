"""A Triton GEMM with braze's fused epilogue: C = act(A @ B + bias) + residual, in one pass.

A is [M, K], B is [K, N] (any strides), bias [N], residual [M, N]; accumulation is in float32 and
the result is stored in C's dtype. CONFIGS is the tuning space the builder searches. The epilogue takes the
activations of `ACTIVATIONS`, as the codes of braze's activation table (braze/ops/epilogue.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...ops.epilogue import ACTIVATION_TABLE, subset

_EPILOGUES = subset(("none", "relu", "gelu", "gelu_tanh", "sigmoid", "silu"), "the Triton GEMM")
ACTIVATIONS = {a.name: a.code for a in ACTIVATION_TABLE.values() if a.name in _EPILOGUES}
_RELU = tl.constexpr(ACTIVATIONS["relu"])
_GELU = tl.constexpr(ACTIVATIONS["gelu"])
_GELU_TANH = tl.constexpr(ACTIVATIONS["gelu_tanh"])
_SIGMOID = tl.constexpr(ACTIVATIONS["sigmoid"])
_SILU = tl.constexpr(ACTIVATIONS["silu"])

CONFIGS = [
    {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3},
    {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 4, "num_stages": 4},
    {"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 64, "num_warps": 4, "num_stages": 4},
    {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "num_warps": 4, "num_stages": 4},
    {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3},
    {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 128, "num_warps": 4, "num_stages": 4},
    {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 128, "num_warps": 4, "num_stages": 3},
]


@triton.jit
def _gemm_kernel(a_ptr, b_ptr, bias_ptr, res_ptr, c_ptr, M, N, K,
                 stride_am, stride_ak, stride_bk, stride_bn, stride_rm, stride_rn, stride_cm, stride_cn,
                 HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, ACT: tl.constexpr, TF32: tl.constexpr,
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
    a_ptrs = a_ptr + rm[:, None] * stride_am + rk[None, :] * stride_ak
    b_ptrs = b_ptr + rk[:, None] * stride_bk + rn[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=(rm[:, None] < M) & (rk[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(rk[:, None] < k_left) & (rn[None, :] < N), other=0.0)
        if TF32:
            acc += tl.dot(a, b)
        else:
            acc += tl.dot(a, b, input_precision="ieee")
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    if ACT == _RELU:
        acc = tl.maximum(acc, 0.0, propagate_nan=tl.PropagateNan.ALL)  # NOTE: relu(NaN) is NaN, as the reference
    elif ACT == _GELU:
        acc = 0.5 * acc * (1.0 + tl.erf(acc * 0.7071067811865476))
    elif ACT == _GELU_TANH:
        inner = 0.7978845608028654 * (acc + 0.044715 * acc * acc * acc)
        acc = 0.5 * acc * (1.0 + (2.0 / (1.0 + tl.exp(-2.0 * inner)) - 1.0))
    elif ACT == _SIGMOID:
        acc = 1.0 / (1.0 + tl.exp(-acc))
    elif ACT == _SILU:
        acc = acc / (1.0 + tl.exp(-acc))
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    if HAS_RES:
        acc += tl.load(res_ptr + rm[:, None] * stride_rm + rn[None, :] * stride_rn, mask=mask, other=0.0).to(tl.float32)
    tl.store(c_ptr + rm[:, None] * stride_cm + rn[None, :] * stride_cn, acc.to(c_ptr.dtype.element_ty), mask=mask)


def gemm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, *, bias: torch.Tensor | None = None,
         residual: torch.Tensor | None = None, activation: str = "none", allow_tf32: bool = False,
         BLOCK_M: int = 64, BLOCK_N: int = 64, BLOCK_K: int = 64, num_warps: int = 4, num_stages: int = 3,
         GROUP_M: int = 8) -> torch.Tensor:
    """out[M, N] = act(a[M, K] @ b[K, N] + bias) + residual; float32 operands use TF32 only if allowed."""
    m, k = a.shape
    n = b.shape[1]
    grid = (triton.cdiv(m, BLOCK_M) * triton.cdiv(n, BLOCK_N),)
    res = residual if residual is not None else out
    _gemm_kernel[grid](
        a, b, bias if bias is not None else out, res, out, m, n, k,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), res.stride(0), res.stride(1), out.stride(0), out.stride(1),
        HAS_BIAS=bias is not None, HAS_RES=residual is not None, ACT=ACTIVATIONS[activation],
        TF32=allow_tf32 or a.dtype != torch.float32,
        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, GROUP_M=GROUP_M, num_warps=num_warps, num_stages=num_stages)
    return out
