"""The error metrics `braze compare` reports for one tensor against a reference, and the tolerance an engine is
held to.

A `Diff` holds max abs error, max rel error, rel-L2, cosine similarity, top-1/top-k agreement (tensors with a
class axis) and where NaN/inf differ. Pass/fail: integers and booleans must be equal; floats must have NaN and
±inf in the same places and a rel-L2 (over the elements finite in both) within the tolerance's `rel_l2`, the
whole-model bound of `braze.testing`. An engine is held to the tolerance of the least precise float type it
stores (an FP16 engine's float32 outputs carry FP16's error), TF32 counted as FP16 (the same mantissa).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..engine import Engine
from ..ir import DType
from ..ops.kinds import Kind, is_kind
from ..testing import INT8_MODEL, Tolerance, as_numpy, max_abs_diff, nonfinite_mismatch, rel_l2, tolerance


@dataclass
class Diff:
    """One tensor of braze against the same tensor of a reference (the worst of several samples, when merged)."""

    shape: list[int]
    max_abs: float
    max_rel: float  # |a - e| / |e| over the elements whose expected |e| > the tolerance's atol
    rel_l2: float  # ‖a - e‖ / ‖e‖ over the elements finite in both
    cosine: float
    bound: float  # the rel-L2 a float tensor may reach (0: must be equal)
    passed: bool
    top1: float | None = None  # fraction of rows (last axis: classes) whose argmax agrees
    topk: float | None = None  # mean overlap of the rows' top-k sets, where the class axis is longer than k
    k: int | None = None
    nonfinite: str | None = None  # where NaN/inf differ, if they do
    problem: str | None = None  # why the tensors cannot be compared (shape), if so
    sample: int = 0  # the sample this diff (or the worst part of a merged one) comes from

    @property
    def error(self) -> float:
        """One number for how far off this tensor is: its rel-L2, infinite where NaN/inf or the shape differ."""
        return float("inf") if self.problem or self.nonfinite else self.rel_l2


def diff(actual: Any, expected: Any, tol: Tolerance, top_k: int = 5, sample: int = 0) -> Diff:
    """Compare `actual` (braze) with `expected` (the reference); the arrays may differ in float type."""
    a, e = _array(actual), _array(expected)
    if a.shape != e.shape:
        inf = float("inf")
        return Diff(list(a.shape), inf, inf, inf, 0.0, tol.rel_l2, False, sample=sample,
                    problem=f"shape {tuple(a.shape)}, the reference's is {tuple(e.shape)}")
    exact = e.dtype.kind in "iub" and a.dtype.kind in "iub"
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    finite = np.isfinite(a64) & np.isfinite(e64)
    fa, fe = a64[finite], e64[finite]
    err = rel_l2(fa, fe) if fa.size else 0.0
    bound = 0.0 if exact else tol.rel_l2
    nonfinite = None if exact else nonfinite_mismatch(a64, e64)
    passed = bool(np.array_equal(a64, e64)) if exact else nonfinite is None and err <= bound
    result = Diff(list(a.shape), max_abs_diff(fa, fe) if fa.size else 0.0, _max_rel(fa, fe, tol.atol), err,
                  _cosine(fa, fe), bound, passed, nonfinite=nonfinite, sample=sample)
    if not exact and a.ndim >= 2 and a.shape[-1] > 1 and a.size:
        result.top1, result.topk, result.k = _agreement(a64, e64, top_k)
    return result


def merge(diffs: Sequence[Diff]) -> Diff:
    """Several samples' diffs of one tensor as one: the worst of each metric, agreement averaged, passed if all
    passed; `sample` names the worst sample (the first that failed, else the one with the largest error)."""
    if len(diffs) == 1:
        return diffs[0]
    failed = [d for d in diffs if not d.passed]
    worst = failed[0] if failed else max(diffs, key=lambda d: d.error)
    tops = [d.top1 for d in diffs if d.top1 is not None]
    topks = [d.topk for d in diffs if d.topk is not None]
    return Diff(worst.shape, max(d.max_abs for d in diffs), max(d.max_rel for d in diffs),
                max(d.rel_l2 for d in diffs), min(d.cosine for d in diffs), worst.bound, not failed,
                float(np.mean(tops)) if tops else None, float(np.mean(topks)) if topks else None, worst.k,
                next((f"sample {d.sample}: {d.nonfinite}" for d in diffs if d.nonfinite), None),
                next((f"sample {d.sample}: {d.problem}" for d in diffs if d.problem), None), worst.sample)


def engine_tolerance(engine: Engine) -> tuple[str, Tolerance]:
    """The tolerance an engine's outputs are held to, and the type it is named after: INT8_MODEL for an engine
    with INT8 layers, else that of the least precise float type among the engine's tensors (float32, float16
    with TF32)."""
    if any(is_kind(n, Kind.QCONV, Kind.QGEMM) for n in engine.graph.nodes):
        return "int8", INT8_MODEL
    found = {t.dtype for n in engine.graph.nodes for t in [*n.inputs, *n.outputs]
             if t is not None and t.dtype is not None and t.dtype.is_floating}
    if engine.tf32:
        found.add(DType.float16)
    loosest = max(found or {DType.float32}, key=lambda d: (tolerance(d).rel_l2, d.value))
    return str(loosest), tolerance(loosest)


def _array(x: Any) -> np.ndarray:
    a = as_numpy(x)
    return a.astype(np.float32) if a.dtype.kind == "V" else a  # NOTE: ml_dtypes' floats (bfloat16, float8)


def _max_rel(a: np.ndarray, e: np.ndarray, atol: float) -> float:
    big = np.abs(e) > atol
    if not big.any():
        return 0.0
    return float((np.abs(a[big] - e[big]) / np.abs(e[big])).max())


def _cosine(a: np.ndarray, e: np.ndarray) -> float:
    na, ne = float(np.linalg.norm(a)), float(np.linalg.norm(e))
    if na == 0.0 or ne == 0.0:
        return 1.0 if na == ne else 0.0
    return float(np.clip(np.dot(a, e) / (na * ne), -1.0, 1.0))


def _agreement(a: np.ndarray, e: np.ndarray, top_k: int) -> tuple[float, float | None, int | None]:
    """Top-1 agreement and the mean top-k overlap over the rows of the last axis (NaN ranks lowest)."""
    classes = a.shape[-1]
    ra = np.nan_to_num(a.reshape(-1, classes), nan=-np.inf)
    re = np.nan_to_num(e.reshape(-1, classes), nan=-np.inf)
    top1 = float(np.mean(ra.argmax(axis=1) == re.argmax(axis=1)))
    if classes <= top_k:
        return top1, None, None
    ka = np.argpartition(-ra, top_k - 1, axis=1)[:, :top_k]
    ke = np.argpartition(-re, top_k - 1, axis=1)[:, :top_k]
    overlap = (ka[:, :, None] == ke[:, None, :]).any(axis=2).sum(axis=1) / top_k
    return top1, float(overlap.mean()), top_k
