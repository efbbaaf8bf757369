"""Ops over the sliding blocks of a convolution: Col2Im and DeformConv, in any number of spatial axes.

Col2Im sums column blocks back into an image (PyTorch's fold, N-D). DeformConv samples each
kernel tap at its offset position (N-linear interpolation, zero outside the image), scales it by
the mask, and contracts the sampled columns with the weight as a grouped convolution does.
"""

from __future__ import annotations

import math

import torch

from .opdef import op
from .shape import int_list
from .spatial import window

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _tap_offsets(kernel: list[int], dilations: tuple[int, ...], device: torch.device) -> list[torch.Tensor]:
    """Per spatial axis, each kernel tap's offset from the window's first position (taps in row-major order)."""
    grids = torch.meshgrid(*[torch.arange(k, device=device) * d for k, d in zip(kernel, dilations)], indexing="ij")
    return [g.reshape(-1) for g in grids]


@op("Col2Im", since=18, value_inputs=(1, 2))
def col2im(x, image_shape, block_shape, *, dilations: list[int] | None = None, pads: list[int] | None = None,
           strides: list[int] | None = None):
    image, block = int_list(image_shape), int_list(block_shape)
    if len(image) != len(block) or not image:
        raise ValueError(f"image_shape {image} and block_shape {block} must name the same spatial axes")
    if x.dim() != 3:
        raise ValueError(f"the input must be N x (C * block size) x L, got shape {list(x.shape)}")
    win = window(image, block, strides=strides, dilations=dilations, pads=pads)
    k, blocks = math.prod(block), math.prod(win.out)
    if x.shape[1] % k or x.shape[2] != blocks:
        raise ValueError(f"the input's shape {list(x.shape)} does not fit blocks {block} over image {image}: "
                         f"expected N x (C * {k}) x {blocks}")
    n, c = x.shape[0], x.shape[1] // k
    # the image position of every (tap, block) pair, per axis; outside the image goes to a spare slot
    taps = _tap_offsets(block, win.dilations, x.device)
    starts = torch.meshgrid(*[torch.arange(o, device=x.device) * s - b
                              for o, s, b in zip(win.out, win.strides, win.begin)], indexing="ij")
    flat = torch.zeros(k, blocks, dtype=torch.int64, device=x.device)
    inside = torch.ones(k, blocks, dtype=torch.bool, device=x.device)
    for tap, start, size in zip(taps, starts, image):
        pos = tap[:, None] + start.reshape(1, -1)
        inside &= (pos >= 0) & (pos < size)
        flat = flat * size + pos.clamp(0, size - 1)
    spare = math.prod(image)
    flat = torch.where(inside, flat, spare).reshape(1, 1, -1).expand(n, c, -1)
    y = x.new_zeros(n, c, spare + 1).scatter_add_(2, flat, x.reshape(n, c, k * blocks))
    return y[:, :, :spare].reshape(n, c, *image)


def _sample(x: torch.Tensor, positions: list[torch.Tensor]) -> torch.Tensor:
    """N-linear samples of x (N, G, Cg, *spatial) at positions (one (N, G, P) tensor per axis), zero
    outside: (N, G, Cg, P)."""
    n, g, cg = x.shape[:3]
    sizes = x.shape[3:]
    flat = torch.zeros_like(positions[0], dtype=torch.int64).unsqueeze(-1)
    weight = torch.ones_like(positions[0]).unsqueeze(-1)
    for pos, size in zip(positions, sizes):
        low = torch.floor(pos)
        index = torch.stack([low, low + 1], -1)
        w = torch.stack([1 - (pos - low), pos - low], -1) * ((index >= 0) & (index <= size - 1))
        index = index.clamp(0, size - 1).to(torch.int64)
        flat = (flat.unsqueeze(-1) * size + index.unsqueeze(-2)).flatten(-2)
        weight = (weight.unsqueeze(-1) * w.unsqueeze(-2)).flatten(-2)
    p, taps = flat.shape[2], flat.shape[3]
    values = x.reshape(n, g, cg, -1).gather(3, flat.reshape(n, g, 1, p * taps).expand(n, g, cg, p * taps))
    return (values.reshape(n, g, cg, p, taps) * weight.unsqueeze(2)).sum(-1)


@op("DeformConv", since=19)
def deform_conv(x, w, offset, b=None, mask=None, *, dilations: list[int] | None = None, group: int = 1,
                kernel_shape: list[int] | None = None, offset_group: int = 1, pads: list[int] | None = None,
                strides: list[int] | None = None):
    if x.dtype not in _FLOATS or any(t is not None and t.dtype != x.dtype for t in (w, offset, b, mask)):
        raise TypeError("X, W, offset, B and mask must share one floating-point type")
    if x.dim() < 3 or w.dim() != x.dim():
        raise ValueError(f"X must be N x C x D1 x ... and W of the same rank, got shapes {list(x.shape)} and "
                         f"{list(w.shape)}")
    n, c, m = x.shape[0], x.shape[1], w.shape[0]
    rank = x.dim() - 2
    kernel = list(w.shape[2:])
    if kernel_shape and list(kernel_shape) != kernel:
        raise ValueError(f"kernel_shape {list(kernel_shape)} does not match W's spatial shape {kernel}")
    if group < 1 or offset_group < 1 or c != w.shape[1] * group or m % group or c % offset_group:
        raise ValueError(f"X's {c} channels, W of shape {list(w.shape)}, group={group} and offset_group="
                         f"{offset_group} do not fit (C = W's dim 1 x group, oC and C divisible by the groups)")
    win = window(x.shape[2:], kernel, strides=strides, dilations=dilations, pads=pads)
    k = math.prod(kernel)
    expected = [n, offset_group * k * rank, *win.out]
    if list(offset.shape) != expected:
        raise ValueError(f"offset must have shape {expected}, got {list(offset.shape)}")
    if mask is not None and list(mask.shape) != [n, offset_group * k, *win.out]:
        raise ValueError(f"mask must have shape {[n, offset_group * k, *win.out]}, got {list(mask.shape)}")
    if b is not None and list(b.shape) != [m]:
        raise ValueError(f"B must have shape [{m}], got {list(b.shape)}")
    work = torch.promote_types(x.dtype, torch.float32)
    out = math.prod(win.out)
    shifts = offset.to(work).reshape(n, offset_group, k, rank, out)
    taps = _tap_offsets(kernel, win.dilations, x.device)
    starts = torch.meshgrid(*[torch.arange(o, device=x.device) * s - p
                              for o, s, p in zip(win.out, win.strides, win.begin)], indexing="ij")
    positions = [(tap[:, None] + start.reshape(1, -1)).to(work) + shifts[:, :, :, axis]
                 for axis, (tap, start) in enumerate(zip(taps, starts))]  # each (N, G, K, P)
    groups = x.to(work).reshape(n, offset_group, c // offset_group, *x.shape[2:])
    cols = _sample(groups, [p.reshape(n, offset_group, k * out) for p in positions])
    cols = cols.reshape(n, offset_group, c // offset_group, k, out)
    if mask is not None:
        cols = cols * mask.to(work).reshape(n, offset_group, 1, k, out)
    cols = cols.reshape(n, group, c // group, k, out)
    y = torch.einsum("ngckp,gmck->ngmp", cols, w.to(work).reshape(group, m // group, c // group, k))
    y = y.reshape(n, m, *win.out)
    if b is not None:
        y = y + b.to(work).reshape(m, *([1] * rank))
    return y.to(x.dtype)


OPS = [col2im, deform_conv]
