"""Linear algebra: MatMul, Gemm, Einsum and the quantized MatMulInteger and QLinearMatMul.

Floating-point products go to torch.matmul / addmm / einsum. torch has no CPU kernels for
uint16/32/64 products, so those run in int64, whose wrap-around gives the same low bits; the
quantized ops accumulate in float64, which is exact for any realistic inner dimension.
"""

from __future__ import annotations

import torch

from .opdef import op

_UNSIGNED_WIDE = (torch.uint16, torch.uint32, torch.uint64)


def _as_supported(*xs: torch.Tensor) -> tuple[list[torch.Tensor], torch.dtype]:
    """Operands in a dtype torch multiplies, and the dtype to give the result back in."""
    dtype = xs[0].dtype
    if any(x.dtype != dtype for x in xs):
        raise ValueError(f"the inputs must share one dtype, got {', '.join(str(x.dtype) for x in xs)}")
    if dtype == torch.uint64:
        return [x.view(torch.int64) for x in xs], dtype
    if dtype in _UNSIGNED_WIDE:
        return [x.to(torch.int64) for x in xs], dtype
    return list(xs), dtype


def _back(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if y.dtype == dtype:
        return y
    return y.view(dtype) if dtype == torch.uint64 else y.to(dtype)


def _check_matmul(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError("MatMul operands must have rank 1 or more, got a scalar")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.dim() == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"inner dimensions differ: A {list(a.shape)} has {k_a} columns, "
                         f"B {list(b.shape)} has {k_b} rows")
    try:
        torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(f"batch dimensions of A {list(a.shape)} and B {list(b.shape)} do not broadcast") from None


@op("MatMul", since=1)
def matmul(a, b):
    _check_matmul(a, b)
    (a, b), dtype = _as_supported(a, b)
    return _back(torch.matmul(a, b), dtype)


def _gemm(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None, alpha: float, beta: float,
          trans_a: int, trans_b: int) -> torch.Tensor:
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"A and B must be matrices, got ranks {a.dim()} and {b.dim()}")
    if trans_a not in (0, 1) or trans_b not in (0, 1):
        raise ValueError(f"transA and transB are flags, 0 or 1; got {trans_a} and {trans_b}")
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"inner dimensions differ: op(A) is {list(a.shape)}, op(B) is {list(b.shape)}")
    m, n = a.shape[0], b.shape[1]
    if c is not None:
        if c.dim() > 2 or any(s not in (1, t) for s, t in zip(reversed(c.shape), (n, m))):
            raise ValueError(f"C of shape {list(c.shape)} does not broadcast to [{m}, {n}]")
        if beta == 0:
            c = None
    operands = [a, b] if c is None else [a, b, c]
    (a, b, *rest), dtype = _as_supported(*operands)
    if dtype.is_floating_point:
        if not rest:
            y = torch.mm(a, b)
            return y if alpha == 1 else y * alpha
        return torch.addmm(rest[0], a, b, beta=beta, alpha=alpha)
    # integers: exact where alpha and beta are whole numbers, otherwise through float64 as ONNX's reference does
    whole = float(alpha).is_integer() and float(beta).is_integer()
    y = torch.mm(a, b)
    y = y * int(alpha) if whole else y.to(torch.float64) * alpha
    if rest:
        y = y + (rest[0] * int(beta) if whole else rest[0].to(torch.float64) * beta)
    return _back(y if whole else y.to(torch.int64), dtype)


@op("Gemm", since=1)
def gemm_1(a, b, c, *, alpha: float = 1.0, beta: float = 1.0, broadcast: int = 0, transA: int = 0,
           transB: int = 0):
    return _gemm(a, b, c, alpha, beta, transA, transB)


@op("Gemm", since=7)
def gemm_7(a, b, c, *, alpha: float = 1.0, beta: float = 1.0, transA: int = 0, transB: int = 0):
    return _gemm(a, b, c, alpha, beta, transA, transB)


@op("Gemm", since=11)
def gemm_11(a, b, c=None, *, alpha: float = 1.0, beta: float = 1.0, transA: int = 0, transB: int = 0):
    return _gemm(a, b, c, alpha, beta, transA, transB)


@op("Einsum", since=12)
def einsum(*xs, equation: str):
    eq = equation.replace(" ", "")
    terms = eq.split("->")[0].split(",")
    if len(terms) != len(xs):
        raise ValueError(f"equation {equation!r} has {len(terms)} operand terms, the node gives {len(xs)} inputs")
    ops, dtype = _as_supported(*xs)
    return _back(torch.einsum(eq, *ops), dtype)


def _per_row(p: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """A quantization parameter of A: a scalar, or one value per row (a vector of M, or [..., M, 1])."""
    if p is not None and p.dim() == 1 and p.numel() > 1:
        return p.reshape(-1, 1)
    return p


def _shifted(x: torch.Tensor, zero_point: torch.Tensor | None) -> torch.Tensor:
    x = x.to(torch.float64)
    return x if zero_point is None else x - zero_point.to(torch.float64)


def _check_integer_operands(a: torch.Tensor, b: torch.Tensor) -> None:
    for t, name in ((a, "A"), (b, "B")):
        if t.dtype not in (torch.int8, torch.uint8):
            raise ValueError(f"{name} must be int8 or uint8, got {t.dtype}")
    _check_matmul(a, b)


@op("MatMulInteger", since=10)
def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
    _check_integer_operands(a, b)
    return torch.matmul(_shifted(a, _per_row(a_zero_point, a)), _shifted(b, b_zero_point)).to(torch.int32)


@op("QLinearMatMul", since=10, scale_inputs=(1, 4, 6))
def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    _check_integer_operands(a, b)
    acc = torch.matmul(_shifted(a, _per_row(a_zero_point, a)), _shifted(b, b_zero_point))
    # NOTE: onnxruntime requantizes in float32: acc * (a_scale * b_scale / y_scale), rounded half to even
    multiplier = (_per_row(a_scale, a).float() * b_scale.float()) / y_scale.float()
    y = torch.round(acc.float() * multiplier) + y_zero_point.float()
    info = torch.iinfo(y_zero_point.dtype)
    return y.clamp(info.min, info.max).to(y_zero_point.dtype)


OPS = [matmul, gemm_1, gemm_7, gemm_11, einsum, matmul_integer, qlinear_matmul]
