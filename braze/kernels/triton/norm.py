"""A Triton LayerNormalization over the trailing dimensions: each program normalizes ROWS rows held in
registers in one read and one write, statistics in float32, output in the input's dtype.

Rows are [rows, cols] of a contiguous tensor; scale (and bias) have `cols` elements. CONFIGS is the
tuning space the builder searches; MAX_COLS bounds the row a program keeps in registers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_COLS = 16384
CONFIGS = [
    {"ROWS": 1, "num_warps": 4},
    {"ROWS": 2, "num_warps": 4},
    {"ROWS": 4, "num_warps": 4},
    {"ROWS": 4, "num_warps": 8},
    {"ROWS": 8, "num_warps": 8},
]


@triton.jit
def _layer_norm_kernel(x_ptr, w_ptr, b_ptr, y_ptr, n_rows, n_cols, eps,
                       HAS_BIAS: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    in_cols = cols < n_cols
    mask = (rows < n_rows) & in_cols
    offsets = rows.to(tl.int64) * n_cols + cols
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / n_cols
    centered = tl.where(mask, x - mean[:, None], 0.0)
    var = tl.sum(centered * centered, axis=1) / n_cols
    y = centered * (1.0 / tl.sqrt(var + eps))[:, None]
    y = y * tl.load(w_ptr + cols, mask=in_cols, other=0.0).to(tl.float32)
    if HAS_BIAS:
        y += tl.load(b_ptr + cols, mask=in_cols, other=0.0).to(tl.float32)
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor, eps: float, *,
               ROWS: int = 1, num_warps: int = 4) -> torch.Tensor:
    """out = LayerNorm(x) over its last weight.numel() elements per row; x and out contiguous."""
    cols = weight.numel()
    rows = x.numel() // cols
    if rows == 0:
        return out
    _layer_norm_kernel[(triton.cdiv(rows, ROWS),)](
        x, weight, bias if bias is not None else weight, out, rows, cols, eps,
        HAS_BIAS=bias is not None, ROWS=ROWS, BLOCK=triton.next_power_of_2(cols), num_warps=num_warps)
    return out
