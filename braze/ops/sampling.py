"""Sampling at arbitrary positions: GridSample (2-D from opset 16, N-D from 20) and AffineGrid.

GridSample works over any number of spatial axes: a grid position is mapped to pixel
coordinates, moved inside the image where `padding_mode` asks (border: clamped, reflection:
reflected at the borders), then interpolated from its 1 (nearest), 2**r (linear) or 4**r (cubic,
Keys with a = -0.75) neighbours, each neighbour outside the image being 0, the border pixel or
its reflection. Everything is gathers and sums, so any rank works.

NOTE: cubic positions are not moved inside before interpolating, only their neighbours are, as
in onnxruntime and PyTorch (ONNX's reference clamps the position first, which differs for border
padding; the two agree for zeros and reflection).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .opdef import op
from .shape import int_list

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_PADDING = ("zeros", "border", "reflection")
_CUBIC_A = -0.75


def _reflect(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """x folded into [low, high] by repeated reflection at the borders (x inside is unchanged)."""
    span = high - low
    if span <= 0:
        return torch.full_like(x, low)
    below, above = x < low, x > high
    dx = torch.where(below, low - x, x - high)
    flips = torch.trunc(dx / span)
    r = dx - flips * span
    even = torch.remainder(flips, 2) == 0
    from_below = torch.where(even, low + r, high - r)
    from_above = torch.where(even, high - r, low + r)
    return torch.where(below, from_below, torch.where(above, from_above, x))


def _cubic_weights(t: torch.Tensor) -> list[torch.Tensor]:
    """Keys' cubic convolution weights of the taps at -1, 0, 1, 2 for a fraction t in [0, 1)."""
    a = _CUBIC_A

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _taps(x: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The neighbour indices (..., K) and weights (..., K) of coordinates x along one axis."""
    if mode == "nearest":
        return torch.trunc(x).unsqueeze(-1), torch.ones_like(x).unsqueeze(-1)
    base = torch.floor(x)
    t = x - base
    if mode == "linear":
        return torch.stack([base, base + 1], -1), torch.stack([1 - t, t], -1)
    return torch.stack([base - 1, base, base + 1, base + 2], -1), torch.stack(_cubic_weights(t), -1)


def _grid_sample(x: torch.Tensor, grid: torch.Tensor, mode: str, padding_mode: str, align_corners: int,
                 max_rank: int | None = None) -> torch.Tensor:
    if x.dtype not in _FLOATS or grid.dtype not in _FLOATS:
        raise TypeError(f"X and grid must be floating-point, got {x.dtype} and {grid.dtype}")
    rank = x.dim() - 2
    if rank < 1 or (max_rank is not None and rank != max_rank):
        raise ValueError(f"X must be N x C x {' x '.join(['D'] * (max_rank or 1))}{'' if max_rank else ' ...'}, "
                         f"got shape {list(x.shape)}")
    if grid.dim() != rank + 2 or grid.shape[0] != x.shape[0] or grid.shape[-1] != rank:
        raise ValueError(f"grid must be N x D1_out x ... x {rank} for X of shape {list(x.shape)}, got shape "
                         f"{list(grid.shape)}")
    if padding_mode not in _PADDING:
        raise ValueError(f"padding_mode must be one of {', '.join(_PADDING)}, got {padding_mode!r}")
    n, c, dims = x.shape[0], x.shape[1], list(x.shape[2:])
    out = grid.shape[1:-1]
    work = torch.promote_types(grid.dtype, torch.float32)
    positions = grid.reshape(n, -1, rank).to(work).flip(-1)  # N, P, rank in X's axis order
    flat = torch.zeros((n, 1, 1), dtype=torch.int64, device=x.device)
    weight = torch.ones((n, 1, 1), dtype=work, device=x.device)
    stride = 1
    for axis in reversed(range(rank)):
        size = dims[axis]
        g = positions[..., axis]
        coord = (g + 1) / 2 * (size - 1) if align_corners else ((g + 1) * size - 1) / 2
        low, high = (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)
        if mode == "nearest":
            coord = torch.round(coord)  # half to even
        if padding_mode == "border" and mode != "cubic":
            coord = torch.where((coord < low) | (coord > high), coord.clamp(0, size - 1), coord)
        elif padding_mode == "reflection" and mode != "cubic":
            coord = _reflect(coord, low, high)
        index, w = _taps(coord, mode)
        if padding_mode == "zeros":
            w = w * ((index >= 0) & (index <= size - 1))
        elif padding_mode == "reflection":
            index = torch.trunc(_reflect(index, low, high))
        index = index.clamp(0, size - 1).to(torch.int64)
        # combine with the axes already done: taps of this axis become the outer factor
        flat = (flat.unsqueeze(-1) + (index * stride).unsqueeze(-2)).flatten(-2)
        weight = (weight.unsqueeze(-1) * w.unsqueeze(-2)).flatten(-2)
        stride *= size
    p, k = flat.shape[1], flat.shape[2]
    values = x.reshape(n, c, -1).to(work).gather(2, flat.reshape(n, 1, p * k).expand(n, c, p * k))
    y = (values.reshape(n, c, p, k) * weight.unsqueeze(1)).sum(-1)
    return y.reshape(n, c, *out).to(x.dtype)


_MODES_16 = {"bilinear": "linear", "nearest": "nearest", "bicubic": "cubic"}


@op("GridSample", since=16)
def grid_sample_16(x, grid, *, align_corners: int = 0, mode: str = "bilinear", padding_mode: str = "zeros"):
    if mode not in _MODES_16:
        raise ValueError(f"mode must be one of {', '.join(_MODES_16)}, got {mode!r}")
    return _grid_sample(x, grid, _MODES_16[mode], padding_mode, align_corners, max_rank=2)


@op("GridSample", since=20)
def grid_sample_20(x, grid, *, align_corners: int = 0, mode: str = "linear", padding_mode: str = "zeros"):
    if mode not in ("linear", "nearest", "cubic"):
        raise ValueError(f"mode must be one of linear, nearest, cubic, got {mode!r}")
    return _grid_sample(x, grid, mode, padding_mode, align_corners)


def _affine_positions(sizes: Sequence[int], align_corners: int, dtype: torch.dtype,
                      device: torch.device) -> torch.Tensor:
    """Homogeneous positions (..., r + 1) of an evenly spaced grid over [-1, 1] per axis, x first."""
    axes = []
    for size in reversed(sizes):  # NOTE: one pixel with align_corners sits at 0, as in PyTorch
        steps = torch.arange(size, dtype=torch.float64, device=device)
        if align_corners and size == 1:
            axes.append(torch.zeros(1, dtype=torch.float64, device=device))
        elif align_corners:
            axes.append(steps * (2 / (size - 1)) - 1)
        else:
            axes.append((steps * 2 + 1) / size - 1)
    mesh = torch.meshgrid(*reversed(axes), indexing="ij")  # in X's axis order
    coords = [m for m in reversed(mesh)] + [torch.ones_like(mesh[0])]
    return torch.stack(coords, -1).to(dtype)


@op("AffineGrid", since=20, value_inputs=(1,))
def affine_grid(theta, size, *, align_corners: int = 0):
    dims = int_list(size)
    if len(dims) not in (4, 5):
        raise ValueError(f"size must be (N, C, H, W) or (N, C, D, H, W), got {dims}")
    rank = len(dims) - 2
    if theta.dtype not in _FLOATS or tuple(theta.shape) != (dims[0], rank, rank + 1):
        raise ValueError(f"theta must be a floating-point N x {rank} x {rank + 1} tensor for size {dims}, got "
                         f"{theta.dtype} of shape {list(theta.shape)}")
    if any(d < 1 for d in dims[2:]):
        raise ValueError(f"size {dims} has an empty spatial dim")
    work = torch.promote_types(theta.dtype, torch.float32)
    base = _affine_positions(dims[2:], align_corners, work, theta.device)  # *spatial, r + 1
    grid = torch.einsum("...k,nik->n...i", base, theta.to(work))
    return grid.to(theta.dtype)


OPS = [grid_sample_16, grid_sample_20, affine_grid]
