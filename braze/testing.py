"""Comparison of outputs against a reference, with the tolerances braze holds itself to per dtype.

This is the one place tolerances live: per-op tests, model tests, `braze compare` and the demo
all ask `tolerance(dtype)` and `check_close`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .ir import DType


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    rel_l2: float  # whole-model relative L2 error bound


_TOLERANCES = {
    DType.float64: Tolerance(1e-7, 1e-9, 1e-9),
    DType.float32: Tolerance(1e-4, 1e-5, 1e-4),
    DType.float16: Tolerance(1e-2, 1e-3, 1e-2),
    DType.bfloat16: Tolerance(2e-2, 1e-2, 1e-2),
    DType.float8_e4m3fn: Tolerance(1.25e-1, 1e-2, 1e-1),
    DType.float8_e4m3fnuz: Tolerance(1.25e-1, 1e-2, 1e-1),
    DType.float8_e5m2: Tolerance(2.5e-1, 1e-2, 2e-1),
    DType.float8_e5m2fnuz: Tolerance(2.5e-1, 1e-2, 2e-1),
}
_EXACT = Tolerance(0.0, 0.0, 0.0)

QUANTIZED_STEPS = 1
"""How far a requantized (int8/uint8) output of an INT8 kernel may be from its reference, in quantization steps:
the kernel scales in float32 where the reference divides in float64, so a value at a tie may round either way
(and two INT8 kernels may differ by as much)."""


INT8_MODEL = Tolerance(1e-1, 1e-1, 1e-1)
"""Whole-model bound for an engine with INT8 layers against its float reference: quantization error adds up
along the layers, so the bound is per model, not per kernel (a classifier's INT8 accuracy is judged by top-1
agreement; this rel-L2 bound is what `braze compare` passes an INT8 engine on)."""


def tolerance(dtype: DType | str | torch.dtype | np.dtype) -> Tolerance:
    """Tolerance for outputs of this dtype (integers and bool must match exactly)."""
    return _TOLERANCES.get(DType.parse(dtype), _EXACT)


def quantized_tolerance(dtype: DType | str | torch.dtype | np.dtype, step: float = 0.0) -> Tolerance:
    """Tolerance for an INT8 layer's output (QConv, QGemm) against its reference in braze/ops/qfused.py: one
    quantization step of the output. The integer sums are exact in every INT8 kernel; only the float scaling
    that follows may run in another order. A requantized output (int8, uint8) may then be QUANTIZED_STEPS off,
    where value / out_scale lies within a rounding error of .5. A float output may be off by one step of its
    accumulator, `step` = x_scale * max(w_scale) (one unit of the int32 sum; float32 reorderings of the scale
    and bias move it by a few ulps, far less), plus the float type's own rtol for the cast to float16/bfloat16
    and for a float residual's rounding."""
    dtype = DType.parse(dtype)
    if not dtype.is_floating:
        return Tolerance(0.0, float(QUANTIZED_STEPS), 1e-2)  # rel_l2: a few elements one off among tens of steps
    if step <= 0:
        raise ValueError(f"a {dtype} output of an INT8 layer needs step = x_scale * max(w_scale) > 0")
    return Tolerance(tolerance(dtype).rtol, step, tolerance(dtype).rel_l2)


def as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, *_FLOAT8):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def rel_l2(actual: np.ndarray | torch.Tensor, expected: np.ndarray | torch.Tensor) -> float:
    """‖actual − expected‖₂ / ‖expected‖₂, in float64 (NaN anywhere gives NaN)."""
    a = as_numpy(actual).astype(np.float64)
    e = as_numpy(expected).astype(np.float64)
    denom = np.linalg.norm(e)
    diff = np.linalg.norm(a - e)
    return float(diff / denom) if denom > 0 else float(diff)


def max_abs_diff(actual: np.ndarray | torch.Tensor, expected: np.ndarray | torch.Tensor) -> float:
    a = as_numpy(actual).astype(np.float64)
    e = as_numpy(expected).astype(np.float64)
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(e)
    same_inf = np.isinf(a) & (a == e)
    with np.errstate(invalid="ignore"):  # inf - inf where the infinities differ: NaN, counted as inf below
        diff = np.where(both_nan | same_inf, 0.0, np.abs(a - e))
    return float(np.nan_to_num(diff, nan=np.inf).max())


def mismatch(actual, expected, rtol: float, atol: float) -> str | None:
    """None when `actual` matches `expected` elementwise within atol + rtol·|expected|
    (NaN matches NaN, inf matches the same inf); otherwise a one-line description."""
    a, e = _widen_ml_float(as_numpy(actual)), _widen_ml_float(as_numpy(expected))
    if a.shape != e.shape:
        return f"shape {a.shape} != expected {e.shape}"
    if a.dtype != e.dtype and not (a.dtype.kind == e.dtype.kind == "f"):
        return f"dtype {a.dtype} != expected {e.dtype}"
    if a.dtype.kind in "fc":
        a64, e64 = a.astype(np.float64), e.astype(np.float64)
        ok = np.isclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True)
    else:
        ok = a == e
    if ok.all():
        return None
    bad = int((~ok).sum())
    idx = np.unravel_index(int(np.argmin(ok)), ok.shape) if ok.ndim else ()
    return (f"{bad} of {ok.size} elements differ (max abs diff {max_abs_diff(a, e):.3g}; "
            f"first at {tuple(int(i) for i in idx)}: {a[idx]!r} vs {e[idx]!r}, rtol={rtol}, atol={atol})")


def nonfinite_mismatch(actual, expected) -> str | None:
    """None when `actual` has NaN, +inf and -inf exactly where `expected` has them (whatever the finite values)."""
    a = _widen_ml_float(as_numpy(actual)).astype(np.float64)
    e = _widen_ml_float(as_numpy(expected)).astype(np.float64)
    if a.shape != e.shape:
        return f"shape {a.shape} != expected {e.shape}"
    for what, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        differ = test(a) != test(e)
        if differ.any():
            idx = tuple(int(i) for i in np.argwhere(differ)[0])
            return (f"{what} at {int(test(a).sum())} elements, expected at {int(test(e).sum())} "
                    f"({int(differ.sum())} differ; first at {idx}: {a[idx]!r} vs {e[idx]!r})")
    return None


def assert_close(actual, expected, dtype=None, *, rtol: float | None = None, atol: float | None = None,
                 name: str = "output") -> None:
    """Raise AssertionError unless `actual` matches `expected` within the dtype's tolerance."""
    tol = tolerance(dtype if dtype is not None else as_numpy(expected).dtype)
    problem = mismatch(actual, expected, tol.rtol if rtol is None else rtol, tol.atol if atol is None else atol)
    if problem:
        raise AssertionError(f"{name}: {problem}")


def _widen_ml_float(x: np.ndarray) -> np.ndarray:
    """ml_dtypes' float arrays (numpy kind 'V': bfloat16, float8, float4) as float32, so NaN and tolerances apply."""
    return x.astype(np.float32) if x.dtype.name in _ML_FLOAT_NAMES else x


_ML_FLOAT_NAMES = {"bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
                   "float4_e2m1fn"}
_FLOAT8 = (torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz)
