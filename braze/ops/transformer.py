"""Transformer building blocks: RMSNormalization, RotaryEmbedding, Swish, SwiGLU and the KV-cache
update TensorScatter.

RMSNormalization takes its statistics in `stash_type` (float32 by default, or the input's type if
that is wider) and rounds the normalized values to X's type before the scale, as its ONNX function
does. RotaryEmbedding and the gates compute in their inputs' own precision, step by step as the
ONNX definitions do. TensorScatter moves bits only, so it serves every element type.
"""

from __future__ import annotations

import torch

from .elementwise import FLOATS, check_inputs
from .opdef import op
from .shape import axis_index

_STASH = {1: torch.float32, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}
_ROPE_FLOATS = (torch.float16, torch.bfloat16, torch.float32)
_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_SCATTER_MODES = ("linear", "circular")


def _broadcasts_to(shape, target) -> bool:
    return len(shape) <= len(target) and all(a in (1, n) for a, n in zip(reversed(shape), reversed(target)))


@op("RMSNormalization", since=23)
def rms_normalization(x, scale, *, axis: int = -1, epsilon: float = 1e-5, stash_type: int = 1):
    for t, name in ((x, "X"), (scale, "scale")):
        if t.dtype not in FLOATS:
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
    if stash_type not in _STASH:
        raise ValueError(f"stash_type {stash_type} is not a floating-point ONNX type")
    axis = axis_index(axis, x.dim())
    if not _broadcasts_to(scale.shape, x.shape):
        raise ValueError(f"scale of shape {list(scale.shape)} does not broadcast to X's {list(x.shape)}")
    wide = torch.promote_types(x.dtype, _STASH[stash_type])
    xw = x.to(wide)
    mean_square = xw.square().mean(dim=tuple(range(axis, x.dim())), keepdim=True)
    normalized = (xw / torch.sqrt(mean_square + epsilon)).to(x.dtype)
    return normalized.to(scale.dtype) * scale


def _rope_caches(cos, sin, position_ids, batch: int, seq: int, half: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin for every (batch, position): (batch, seq, 1, half)."""
    if position_ids is not None:
        if position_ids.dtype != torch.int64 or tuple(position_ids.shape) != (batch, seq):
            raise ValueError(f"position_ids must be int64 of shape [{batch}, {seq}], "
                             f"got {position_ids.dtype} {list(position_ids.shape)}")
        if cos.dim() != 2 or cos.shape != sin.shape:
            raise ValueError(f"with position_ids, cos_cache and sin_cache must be (max_position, {half}), "
                             f"got {list(cos.shape)} and {list(sin.shape)}")
        if position_ids.device.type != "meta" and bool(((position_ids < 0) | (position_ids >= cos.shape[0])).any()):
            raise IndexError(f"position_ids must lie in [0, {cos.shape[0]}), the caches' length")
        index = position_ids.reshape(-1)
        cos = cos.index_select(0, index).reshape(batch, seq, -1)
        sin = sin.index_select(0, index).reshape(batch, seq, -1)
    elif tuple(cos.shape[:2]) != (batch, seq) or cos.dim() != 3 or cos.shape != sin.shape:
        raise ValueError(f"without position_ids, cos_cache and sin_cache must be ({batch}, {seq}, {half}), "
                         f"got {list(cos.shape)} and {list(sin.shape)}")
    if cos.shape[-1] != half:
        raise ValueError(f"the caches' last dimension {cos.shape[-1]} is not half the rotary dimension ({half})")
    return cos.unsqueeze(2), sin.unsqueeze(2)


@op("RotaryEmbedding", since=23)
def rotary_embedding(x, cos_cache, sin_cache, position_ids=None, *, interleaved: int = 0,
                     num_heads: int | None = None, rotary_embedding_dim: int = 0):
    for t, name in ((x, "X"), (cos_cache, "cos_cache"), (sin_cache, "sin_cache")):
        if t.dtype != x.dtype or t.dtype not in _ROPE_FLOATS:
            raise TypeError(f"X, cos_cache and sin_cache must share one of float32, float16, bfloat16; "
                            f"{name} is {t.dtype}")
    if x.dim() == 4:  # (batch, heads, seq, head) -> (batch, seq, heads, head)
        work = x.transpose(1, 2)
    elif x.dim() == 3:
        if not num_heads or num_heads < 1 or x.shape[2] % num_heads:
            raise ValueError(f"a 3-D input needs num_heads dividing its hidden size {x.shape[2]}, got {num_heads}")
        work = x.reshape(x.shape[0], x.shape[1], num_heads, x.shape[2] // num_heads)
    else:
        raise ValueError(f"X must be 3-D or 4-D, got rank {x.dim()}")
    batch, seq, _, head_size = work.shape
    rotary = rotary_embedding_dim or head_size
    if rotary % 2 or rotary > head_size or rotary < 0:
        raise ValueError(f"rotary_embedding_dim {rotary} must be even and at most the head size {head_size}")
    cos, sin = _rope_caches(cos_cache, sin_cache, position_ids, batch, seq, rotary // 2)
    rotate, keep = work[..., :rotary], work[..., rotary:]
    if interleaved:
        x1, x2 = rotate[..., 0::2], rotate[..., 1::2]
    else:
        x1, x2 = rotate.chunk(2, dim=-1)
    real = cos * x1 - sin * x2
    imag = sin * x1 + cos * x2
    if interleaved:
        rotated = torch.stack([real, imag], dim=-1).reshape(rotate.shape)
    else:
        rotated = torch.cat([real, imag], dim=-1)
    out = torch.cat([rotated, keep], dim=-1)
    return out.transpose(1, 2).contiguous() if x.dim() == 4 else out.reshape(x.shape)


def _swish(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return x * torch.sigmoid(torch.tensor(alpha, dtype=x.dtype, device=x.device) * x)


@op("Swish", since=24)
def swish(x, *, alpha: float = 1.0):
    check_inputs("Swish", FLOATS, x)
    return _swish(x, alpha)


@op("SwiGLU", since=28)
def swiglu(a, b, *, alpha: float = 1.0):
    check_inputs("SwiGLU", FLOATS, a, b)
    if a.shape != b.shape:
        raise ValueError(f"A {list(a.shape)} and B {list(b.shape)} must have one shape (SwiGLU does not broadcast)")
    return _swish(a, alpha) * b


@op("TensorScatter", since=24)
def tensor_scatter(past_cache, update, write_indices=None, *, axis: int = -2, mode: str = "linear"):
    if mode not in _SCATTER_MODES:
        raise ValueError(f"mode must be 'linear' or 'circular', got {mode!r}")
    if past_cache.dtype != update.dtype:
        raise TypeError(f"update is {update.dtype}, past_cache is {past_cache.dtype}")
    axis = axis_index(axis, past_cache.dim())
    if axis == 0:
        raise ValueError("axis must not be 0, the batch dimension")
    if update.dim() != past_cache.dim() or any(
            u != p for i, (u, p) in enumerate(zip(update.shape, past_cache.shape)) if i != axis):
        raise ValueError(f"update {list(update.shape)} must match past_cache {list(past_cache.shape)} "
                         f"outside axis {axis}")
    capacity, steps = past_cache.shape[axis], update.shape[axis]
    if steps > capacity:
        raise ValueError(f"update has {steps} steps on axis {axis}, the cache only {capacity}")
    batch = past_cache.shape[0]
    if write_indices is None:
        write_indices = torch.zeros(batch, dtype=torch.int64, device=past_cache.device)
    elif write_indices.dtype != torch.int64 or tuple(write_indices.shape) != (batch,):
        raise ValueError(f"write_indices must be int64 of shape [{batch}], "
                         f"got {write_indices.dtype} {list(write_indices.shape)}")
    along = [1] * past_cache.dim()
    along[axis] = steps
    start = write_indices.reshape(batch, *([1] * (past_cache.dim() - 1)))
    index = torch.arange(steps, device=past_cache.device).reshape(along) + start
    if mode == "circular":
        index = index % capacity
    elif index.device.type != "meta" and bool(((start < 0) | (start + steps > capacity)).any()):
        raise IndexError(f"linear mode needs 0 <= write_indices and write_indices + {steps} <= {capacity}, "
                         f"got {write_indices.tolist()}")
    bits = _BITS[past_cache.element_size()]
    present = past_cache.view(bits).scatter(axis, index.expand(update.shape), update.view(bits))
    return present.view(past_cache.dtype)


OPS = [rms_normalization, rotary_embedding, swish, swiglu, tensor_scatter]
