"""Normalizations: BatchNormalization (inference and training mode), LayerNormalization,
InstanceNormalization, GroupNormalization, LRN, LpNormalization, MeanVarianceNormalization.

Statistics of float16/bfloat16 inputs are taken in float32 (what ONNX's stash_type defaults to).
torch's fused calls serve wherever the parameters have the shapes they expect.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .opdef import op


def _wide(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics are computed in."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _check_float(x: torch.Tensor) -> None:
    if not x.dtype.is_floating_point:
        raise ValueError(f"the input must be floating point, got {x.dtype}")


def _channel_param(p: torch.Tensor, name: str, x: torch.Tensor) -> torch.Tensor:
    """A per-channel parameter, shaped to broadcast against N x C x D1 x ... (per-activation kept as is)."""
    c = x.shape[1]
    if p.dim() == 1 and p.shape[0] == c:
        return p.reshape(c, *([1] * (x.dim() - 2)))
    if tuple(p.shape) == tuple(x.shape[1:]):
        return p
    raise ValueError(f"{name} has shape {list(p.shape)}, expected [{c}] (one value per channel)")


def _batch_norm(x, scale, b, mean, var, epsilon: float):
    _check_float(x)
    if x.dim() < 2:
        raise ValueError(f"X must be N x C x ..., got rank {x.dim()}")
    wide = _wide(x.dtype)
    c = x.shape[1]
    if all(tuple(p.shape) == (c,) for p in (scale, b, mean, var)):
        return F.batch_norm(x, mean.to(wide), var.to(wide), scale.to(wide), b.to(wide), False, 0.0, epsilon)
    s, bias, m, v = (_channel_param(p, name, x).to(wide)
                     for p, name in ((scale, "scale"), (b, "B"), (mean, "mean"), (var, "var")))
    return ((x.to(wide) - m) * (s * torch.rsqrt(v + epsilon)) + bias).to(x.dtype)


@op("BatchNormalization", since=1)
def batch_norm_1(x, scale, b, mean, var, *, consumed_inputs: list[int] | None = None, epsilon: float = 1e-5,
                 is_test: int = 0, momentum: float = 0.9, spatial: int = 1):
    return _batch_norm(x, scale, b, mean, var, epsilon)


@op("BatchNormalization", since=6)
def batch_norm_6(x, scale, b, mean, var, *, epsilon: float = 1e-5, is_test: int = 0, momentum: float = 0.9,
                 spatial: int = 1):
    return _batch_norm(x, scale, b, mean, var, epsilon)


@op("BatchNormalization", since=7)
def batch_norm_7(x, scale, b, mean, var, *, epsilon: float = 1e-5, momentum: float = 0.9, spatial: int = 1):
    return _batch_norm(x, scale, b, mean, var, epsilon)


@op("BatchNormalization", since=9)
def batch_norm_9(x, scale, b, mean, var, *, epsilon: float = 1e-5, momentum: float = 0.9):
    return _batch_norm(x, scale, b, mean, var, epsilon)


@op("BatchNormalization", since=14)
def batch_norm_14(x, scale, b, input_mean, input_var, *, epsilon: float = 1e-5, momentum: float = 0.9,
                  training_mode: int = 0):
    if not training_mode:
        return _batch_norm(x, scale, b, input_mean, input_var, epsilon)
    _check_float(x)
    axes = [0, *range(2, x.dim())]
    var, mean = torch.var_mean(x.to(_wide(x.dtype)), dim=axes, correction=0)
    y = _batch_norm(x, scale, b, mean, var, epsilon)
    running_mean = input_mean * momentum + mean * (1 - momentum)
    running_var = input_var * momentum + var * (1 - momentum)
    return y, running_mean.to(input_mean.dtype), running_var.to(input_var.dtype)


def _broadcasts_to(shape: Sequence[int], target: Sequence[int]) -> bool:
    return len(shape) <= len(target) and all(a in (1, n) for a, n in zip(reversed(shape), reversed(target)))


_STASH = {1: torch.float32, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


def _stash(stash_type: int) -> torch.dtype:
    if stash_type not in _STASH:
        raise ValueError(f"stash_type {stash_type} is not a floating-point ONNX type")
    return _STASH[stash_type]


@op("LayerNormalization", since=17)
def layer_norm(x, scale, b=None, *, axis: int = -1, epsilon: float = 1e-5, stash_type: int = 1, _outputs: int = 1):
    _check_float(x)
    stash = _stash(stash_type)
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis {axis} is out of range for rank {x.dim()}")
    axis %= x.dim()
    shape = tuple(x.shape[axis:])
    for p, name in ((scale, "Scale"), (b, "B")):
        if p is not None and not _broadcasts_to(p.shape, shape):
            raise ValueError(f"{name} of shape {list(p.shape)} does not broadcast to the normalized shape "
                             f"{list(shape)}")
    fits = tuple(scale.shape) == shape and (b is None or tuple(b.shape) == shape)
    if _outputs == 1 and fits and scale.dtype == x.dtype and (b is None or b.dtype == x.dtype):
        return F.layer_norm(x, shape, scale, b, epsilon)
    wide = torch.promote_types(_wide(x.dtype), stash)
    var, mean = torch.var_mean(x.to(wide), dim=tuple(range(axis, x.dim())), keepdim=True, correction=0)
    inv_std = torch.rsqrt(var + epsilon)
    y = (x.to(wide) - mean) * inv_std * scale.to(wide)
    if b is not None:
        y = y + b.to(wide)
    return y.to(x.dtype), mean.to(stash), inv_std.to(stash)


def _instance_norm(x, scale, b, epsilon: float):
    _check_float(x)
    if x.dim() < 3:
        raise ValueError(f"X must be N x C x D1 x ... (rank 3 or more), got rank {x.dim()}")
    for p, name in ((scale, "scale"), (b, "B")):
        if tuple(p.shape) != (x.shape[1],):
            raise ValueError(f"{name} has shape {list(p.shape)}, expected [{x.shape[1]}] (one value per channel)")
    wide = _wide(x.dtype)
    return F.instance_norm(x, weight=scale.to(wide), bias=b.to(wide), eps=epsilon)


@op("InstanceNormalization", since=1)
def instance_norm_1(x, scale, b, *, consumed_inputs: list[int] | None = None, epsilon: float = 1e-5):
    return _instance_norm(x, scale, b, epsilon)


@op("InstanceNormalization", since=6)
def instance_norm_6(x, scale, b, *, epsilon: float = 1e-5):
    return _instance_norm(x, scale, b, epsilon)


def _group_norm(x, scale, b, num_groups: int, epsilon: float, per_group: bool, stash: torch.dtype):
    _check_float(x)
    if x.dim() < 2:
        raise ValueError(f"X must be N x C x ..., got rank {x.dim()}")
    c = x.shape[1]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide the {c} channels")
    expected = num_groups if per_group else c
    for p, name in ((scale, "scale"), (b, "bias")):
        if tuple(p.shape) != (expected,):
            raise ValueError(f"{name} has shape {list(p.shape)}, expected [{expected}]")
    if per_group:
        scale, b = scale.repeat_interleave(c // num_groups), b.repeat_interleave(c // num_groups)
    wide = torch.promote_types(_wide(x.dtype), stash)
    if wide == _wide(x.dtype):  # torch's kernel already keeps its statistics in _wide(x.dtype)
        return F.group_norm(x, num_groups, scale.to(x.dtype), b.to(x.dtype), epsilon)
    return F.group_norm(x.to(wide), num_groups, scale.to(wide), b.to(wide), epsilon).to(x.dtype)


@op("GroupNormalization", since=18)
def group_norm_18(x, scale, b, *, epsilon: float = 1e-5, num_groups: int):
    return _group_norm(x, scale, b, num_groups, epsilon, per_group=True, stash=torch.float32)


@op("GroupNormalization", since=21)
def group_norm_21(x, scale, b, *, epsilon: float = 1e-5, num_groups: int, stash_type: int = 1):
    return _group_norm(x, scale, b, num_groups, epsilon, per_group=False, stash=_stash(stash_type))


@op("LRN", since=1)
def lrn(x, *, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0, size: int):
    _check_float(x)
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if x.dim() < 3:
        raise ValueError(f"X must be N x C x D1 x ... (rank 3 or more), got rank {x.dim()}")
    wide = _wide(x.dtype)
    if size % 2 == 1:
        return F.local_response_norm(x.to(wide), size, alpha, beta, bias).to(x.dtype)
    # an even window reaches one channel further up than down, which torch's call cannot express
    sq = x.to(wide).square()
    lo = (size - 1) // 2
    sq = F.pad(sq.movedim(1, -1), (lo, size - 1 - lo))
    sums = sq.unfold(-1, size, 1).sum(-1).movedim(-1, 1)
    return (x.to(wide) / (bias + alpha / size * sums).pow(beta)).to(x.dtype)


@op("LpNormalization", since=1)
def lp_normalization(x, *, axis: int = -1, p: int = 2):
    _check_float(x)
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis {axis} is out of range for rank {x.dim()}")
    norm = torch.linalg.vector_norm(x.to(_wide(x.dtype)), ord=p, dim=axis, keepdim=True)
    return (x / torch.where(norm == 0, 1, norm)).to(x.dtype)  # a zero vector stays zero


@op("MeanVarianceNormalization", since=9)
def mean_variance_normalization(x, *, axes: list[int] | None = None):
    _check_float(x)
    axes_: Sequence[int] = [0, 2, 3] if axes is None else axes
    if any(not -x.dim() <= a < x.dim() for a in axes_):
        raise ValueError(f"axes {list(axes_)} are out of range for rank {x.dim()}")
    wide = x.to(_wide(x.dtype))
    var, mean = torch.var_mean(wide, dim=tuple(axes_), keepdim=True, correction=0)
    return ((wide - mean) / (var.sqrt() + 1e-9)).to(x.dtype)


OPS = [
    batch_norm_1, batch_norm_6, batch_norm_7, batch_norm_9, batch_norm_14, layer_norm, instance_norm_1,
    instance_norm_6, group_norm_18, group_norm_21, lrn, lp_normalization, mean_variance_normalization,
]
