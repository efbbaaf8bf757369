"""Generators: ops that make tensors from attributes, shapes and scalars rather than from data.

Constant, ConstantOfShape, Range, EyeLike and OneHot are deterministic. RandomNormal,
RandomUniform, their *Like forms and Bernoulli are marked `random`: their outputs are never
folded or cached, and a `seed` makes one layer repeat the same draw on every run.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import UnsupportedError
from ..ir import DType, Node
from .infer import Inferred
from .opdef import made_on, op
from .shape import int_list

# ONNX TensorProto.DataType codes of the element types braze has.
_ONNX_DTYPES = {
    1: torch.float32, 2: torch.uint8, 3: torch.int8, 4: torch.uint16, 5: torch.int16, 6: torch.int32,
    7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64, 12: torch.uint32, 13: torch.uint64,
    16: torch.bfloat16, 17: torch.float8_e4m3fn, 18: torch.float8_e4m3fnuz, 19: torch.float8_e5m2,
    20: torch.float8_e5m2fnuz,
}


def onnx_dtype(code: int, floating: bool = False) -> torch.dtype:
    """The torch dtype of an ONNX element type code (the `dtype` attribute of several ops)."""
    dtype = _ONNX_DTYPES.get(code)
    if dtype is None:
        raise ValueError(f"dtype {code} is not an ONNX element type braze supports")
    if floating and not dtype.is_floating_point:
        raise ValueError(f"dtype {code} ({str(dtype).removeprefix('torch.')}) is not a floating-point type")
    return dtype


def _constant_value(value: torch.Tensor | None = None, value_float: float | None = None,
                    value_floats: list[float] | None = None, value_int: int | None = None,
                    value_ints: list[int] | None = None, value_string: str | None = None,
                    value_strings: list[str] | None = None, sparse_value: Any = None) -> torch.Tensor:
    given = {k: v for k, v in locals().items() if v is not None}
    if len(given) != 1:
        raise ValueError(f"Constant needs exactly one value attribute, got {sorted(given) or 'none'}")
    if value_string is not None or value_strings is not None:
        raise UnsupportedError("string constants (value_string, value_strings) are not supported: braze tensors "
                               "are numeric")
    if sparse_value is not None:
        raise UnsupportedError("sparse constants (sparse_value) are not supported; store the tensor dense")
    if value is not None:
        return value
    if value_float is not None:
        return torch.tensor(value_float, dtype=torch.float32)
    if value_floats is not None:
        return torch.tensor(value_floats, dtype=torch.float32)
    if value_int is not None:
        return torch.tensor(value_int, dtype=torch.int64)
    return torch.tensor(value_ints, dtype=torch.int64)


def _infer_constant(node: Node, values) -> list[Inferred]:
    try:
        value = _constant_value(**node.attrs)
    except UnsupportedError as e:
        raise UnsupportedError(f"node {node.name!r} (Constant): {e}") from None
    return [Inferred(DType.from_torch(value.dtype), tuple(value.shape), value)]


@op("Constant", infer=_infer_constant)
def constant_1(*, value: torch.Tensor | None = None, sparse_value: Any = None):
    return _constant_value(value, sparse_value=sparse_value)


@op("Constant", since=12, infer=_infer_constant)
def constant_12(*, value: torch.Tensor | None = None, value_float: float | None = None,
                value_floats: list[float] | None = None, value_int: int | None = None,
                value_ints: list[int] | None = None, value_string: str | None = None,
                value_strings: list[str] | None = None, sparse_value: Any = None):
    return _constant_value(value, value_float, value_floats, value_int, value_ints, value_string,
                           value_strings, sparse_value)


def _fill_dtype(node: Node) -> list[DType]:
    value = node.attrs.get("value")
    return [DType.float32 if value is None else DType.from_torch(value.dtype)]


@op("ConstantOfShape", since=9, value_inputs=(0,), dtype_rule=_fill_dtype)
def constant_of_shape(shape, *, value: torch.Tensor | None = None):
    dims = int_list(shape)
    if any(d < 0 for d in dims):
        raise ValueError(f"shape {dims} has a negative dim")
    fill = torch.zeros(1, dtype=torch.float32) if value is None else value
    if fill.numel() != 1:
        raise ValueError(f"value must hold one element, it has shape {list(fill.shape)}")
    return torch.full(dims, fill.reshape(()).item(), dtype=fill.dtype, device=made_on(shape.device))


def _range(start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor, compute: torch.dtype | None = None):
    dtype = start.dtype
    if limit.dtype != dtype or delta.dtype != dtype:
        raise ValueError(f"start, limit and delta differ in dtype: {start.dtype}, {limit.dtype}, {delta.dtype}")
    if start.numel() != 1 or limit.numel() != 1 or delta.numel() != 1:
        raise ValueError("start, limit and delta must be scalars")
    compute = compute or dtype
    first, last, step = (t.reshape(()).to(compute) for t in (start, limit, delta))
    if step.item() == 0:
        raise ValueError("delta is 0")
    if compute.is_floating_point:
        n = max(math.ceil((last - first).item() / step.item()), 0)
        values = first.item() + torch.arange(n, dtype=torch.float64, device=made_on(start.device)) * step.item()
    else:
        n = max(-((first.item() - last.item()) // step.item()), 0)
        values = first.item() + torch.arange(n, dtype=torch.int64, device=made_on(start.device)) * step.item()
    return values.to(dtype)


@op("Range", since=11, value_inputs=(0, 1, 2))
def range_11(start, limit, delta):
    return _range(start, limit, delta)


@op("Range", since=27, value_inputs=(0, 1, 2))
def range_27(start, limit, delta, *, stash_type: int = 1):
    low_precision = start.dtype in (torch.float16, torch.bfloat16)
    return _range(start, limit, delta, onnx_dtype(stash_type, floating=True) if low_precision else None)


@op("EyeLike", since=9)
def eye_like(x, *, dtype: int | None = None, k: int = 0):
    if x.dim() != 2:
        raise ValueError(f"the input must be 2-D, got shape {list(x.shape)}")
    out_dtype = x.dtype if dtype is None else onnx_dtype(dtype)
    rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
    cols = torch.arange(x.shape[1], device=x.device)
    return (cols - rows == k).to(out_dtype)


def _values_dtype(node: Node) -> list[DType]:
    return [node.inputs[2].dtype]


@op("OneHot", since=9, value_inputs=(1,), dtype_rule=_values_dtype)
def one_hot(indices, depth, values, *, axis: int = -1):
    if depth.numel() != 1 or values.numel() != 2:
        raise ValueError(f"depth must be a scalar and values a pair [off, on]; got shapes "
                         f"{list(depth.shape)} and {list(values.shape)}")
    size = int(depth.reshape(()).item())
    if size < 1:
        raise ValueError(f"depth must be positive, got {size}")
    rank = indices.dim()
    if not -rank - 1 <= axis <= rank:
        raise ValueError(f"axis {axis} is out of range [{-rank - 1}, {rank}]")
    axis %= rank + 1
    index = indices.to(torch.int64)
    index = torch.where(index < 0, index + size, index)
    classes = torch.arange(size, device=indices.device).reshape(size, *([1] * (rank - axis)))
    off, on = values.reshape(2)
    return torch.where(index.unsqueeze(axis) == classes, on, off)


def _generator(seed: float | None, device: torch.device) -> torch.Generator | None:
    if seed is None or device.type == "meta":
        return None
    return torch.Generator(device=device).manual_seed(int(seed))


def _draw_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype to draw random numbers in: float64 stays, narrower floats draw in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _like_dtype(node: Node) -> list[DType]:
    code = node.attrs.get("dtype")
    return [node.inputs[0].dtype if code is None else DType.from_torch(onnx_dtype(code))]


@op("RandomNormal", random=True)
def random_normal(*, shape: list[int], dtype: int = 1, mean: float = 0.0, scale: float = 1.0,
                  seed: float | None = None):
    out = onnx_dtype(dtype, floating=True)
    device = made_on(torch.device("cpu"))
    draw = torch.randn(shape, dtype=_draw_dtype(out), device=device, generator=_generator(seed, device))
    return (draw * scale + mean).to(out)


@op("RandomUniform", random=True)
def random_uniform(*, shape: list[int], dtype: int = 1, low: float = 0.0, high: float = 1.0,
                   seed: float | None = None):
    out = onnx_dtype(dtype, floating=True)
    device = made_on(torch.device("cpu"))
    draw = torch.rand(shape, dtype=_draw_dtype(out), device=device, generator=_generator(seed, device))
    return (draw * (high - low) + low).to(out)


def _like(x: torch.Tensor, dtype: int | None) -> torch.dtype:
    out = x.dtype if dtype is None else onnx_dtype(dtype, floating=True)
    if not out.is_floating_point:
        raise ValueError(f"the output would be {out}; give a floating-point dtype attribute")
    return out


@op("RandomNormalLike", random=True, dtype_rule=_like_dtype)
def random_normal_like(x, *, dtype: int | None = None, mean: float = 0.0, scale: float = 1.0,
                       seed: float | None = None):
    out = _like(x, dtype)
    draw = torch.randn(x.shape, dtype=_draw_dtype(out), device=x.device, generator=_generator(seed, x.device))
    return (draw * scale + mean).to(out)


@op("RandomUniformLike", random=True, dtype_rule=_like_dtype)
def random_uniform_like(x, *, dtype: int | None = None, low: float = 0.0, high: float = 1.0,
                        seed: float | None = None):
    out = _like(x, dtype)
    draw = torch.rand(x.shape, dtype=_draw_dtype(out), device=x.device, generator=_generator(seed, x.device))
    return (draw * (high - low) + low).to(out)


@op("Bernoulli", since=15, random=True, dtype_rule=_like_dtype)
def bernoulli(x, *, dtype: int | None = None, seed: float | None = None):
    if not x.dtype.is_floating_point:
        raise ValueError(f"the input holds probabilities and must be floating point, got {x.dtype}")
    out = x.dtype if dtype is None else onnx_dtype(dtype)
    draw = torch.rand(x.shape, dtype=_draw_dtype(x.dtype), device=x.device, generator=_generator(seed, x.device))
    return (draw < x).to(out)


OPS = [
    constant_1, constant_12, constant_of_shape, range_11, range_27, eye_like, one_hot, random_normal,
    random_uniform, random_normal_like, random_uniform_like, bernoulli,
]
