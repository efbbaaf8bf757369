"""Pooling: MaxPool (with its Indices output), AveragePool, LpPool, their global forms, MaxUnpool
and MaxRoiPool.

torch's pooling calls take symmetric pads of at most half the window and floor/ceil output sizes
with the same rule as ONNX; everything else (asymmetric pads, ceil_mode's extra reach, dilated
average pooling, more than three spatial axes) pads explicitly and slides without padding.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .opdef import op
from .spatial import Window, lowest, pad_to, spatial_attrs, split_pads, window, window_view

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _window(x: torch.Tensor, kernel_shape: Sequence[int], **kw) -> Window:
    if x.dim() < 3:
        raise ValueError(f"X must be N x C x D1 x ... (rank 3 or more), got rank {x.dim()}")
    return window(x.shape[2:], kernel_shape, **kw)


def _torch_pads_ok(win: Window) -> bool:
    """Whether torch's own padding can do this window: symmetric and at most half the (undilated) kernel."""
    return win.symmetric and all(2 * p <= k for p, k in zip(win.begin, win.kernel))


def _unravel(flat: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
    coords = []
    for size in reversed(sizes):
        coords.append(flat % size)
        flat = flat // size
    return coords[::-1]


def _max_pool(x: torch.Tensor, kernel_shape: Sequence[int], *, auto_pad: str, pads, strides, dilations=None,
              ceil_mode: int = 0, storage_order: int = 0, n_out: int = 1):
    if storage_order not in (0, 1):
        raise ValueError(f"storage_order must be 0 or 1, got {storage_order}")
    win = _window(x, kernel_shape, strides=strides, dilations=dilations, pads=pads, auto_pad=auto_pad,
                  ceil_mode=ceil_mode)
    in_sizes = tuple(x.shape[2:])
    if not x.is_floating_point() and not x.is_contiguous():
        x = x.contiguous()  # NOTE: torch's CPU max pool refuses a channels-last int8/uint8 tensor (a size check)
    fn = _MAX.get(len(win.kernel))
    if fn is None:
        return _max_pool_nd(x, win, storage_order, n_out)
    if _torch_pads_ok(win):
        begin, sizes = (0,) * len(in_sizes), in_sizes
        result = fn(x, win.kernel, win.strides, win.begin, win.dilations, bool(ceil_mode), n_out > 1)
    else:
        begin = win.begin
        xp = pad_to(x, win.begin, win.fit(in_sizes), lowest(x.dtype))
        sizes = tuple(xp.shape[2:])
        result = fn(xp, win.kernel, win.strides, 0, win.dilations, False, n_out > 1)
    if n_out == 1:
        return result
    y, idx = result
    coords = [c - b for c, b in zip(_unravel(idx, sizes), begin)]
    return y, _onnx_indices(coords, x.shape, storage_order)


def _max_pool_nd(x: torch.Tensor, win: Window, storage_order: int, n_out: int):
    """Any number of spatial axes: max over windows of the padded input."""
    rank = len(win.kernel)
    cols = window_view(pad_to(x, win.begin, win.fit(x.shape[2:]), lowest(x.dtype)), win)
    cols = cols.reshape(*cols.shape[:2 + rank], -1)
    y, arg = cols.max(dim=-1)
    if n_out == 1:
        return y
    coords = []
    for i, (k_i, s, d, b, o) in enumerate(zip(_unravel(arg, win.kernel), win.strides, win.dilations,
                                              win.begin, win.out)):
        start = torch.arange(o, device=x.device).reshape(o, *([1] * (rank - 1 - i)))
        coords.append(start * s + k_i * d - b)
    return y, _onnx_indices(coords, x.shape, storage_order)


def _onnx_indices(coords: Sequence[torch.Tensor], shape: Sequence[int], storage_order: int) -> torch.Tensor:
    """ONNX's Indices: offsets into the whole flattened X, spatial axes row- or column-major."""
    n, c, *sizes = shape
    plane = torch.zeros_like(coords[0])
    order = range(len(sizes)) if storage_order == 0 else reversed(range(len(sizes)))
    for i in order:
        plane = plane * sizes[i] + coords[i]
    spatial = math.prod(sizes)
    base = torch.arange(n * c, device=plane.device, dtype=torch.int64).reshape(n, c, *([1] * len(sizes)))
    return (plane + base * spatial).to(torch.int64)


@op("MaxPool", since=1, keeps_layout=True, commutes_with_quantize=True)
def max_pool_1(x, *, auto_pad: str = "NOTSET", kernel_shape: list[int], pads: list[int] | None = None,
               strides: list[int] | None = None):
    return _max_pool(x, kernel_shape, auto_pad=auto_pad, pads=pads, strides=strides)


@op("MaxPool", since=8, keeps_layout=True, commutes_with_quantize=True)
def max_pool_8(x, *, auto_pad: str = "NOTSET", kernel_shape: list[int], pads: list[int] | None = None,
               storage_order: int = 0, strides: list[int] | None = None, _outputs: int = 1):
    return _max_pool(x, kernel_shape, auto_pad=auto_pad, pads=pads, strides=strides, storage_order=storage_order,
                     n_out=_outputs)


@op("MaxPool", since=10, keeps_layout=True, commutes_with_quantize=True)
def max_pool_10(x, *, auto_pad: str = "NOTSET", ceil_mode: int = 0, dilations: list[int] | None = None,
                kernel_shape: list[int], pads: list[int] | None = None, storage_order: int = 0,
                strides: list[int] | None = None, _outputs: int = 1):
    return _max_pool(x, kernel_shape, auto_pad=auto_pad, pads=pads, strides=strides, dilations=dilations,
                     ceil_mode=ceil_mode, storage_order=storage_order, n_out=_outputs)


def _torch_avg(x: torch.Tensor, win: Window):
    """torch's average pooling for this window's rank, where it has one for x (no 16-bit 3-D on the CPU)."""
    rank = len(win.kernel)
    half = x.dtype in (torch.float16, torch.bfloat16)
    if not win.unit_dilation or (rank == 3 and half and x.device.type == "cpu"):
        return None
    return _AVG.get(rank)


def _window_sum(xp: torch.Tensor, win: Window) -> torch.Tensor:
    """Sums over the windows of an already padded input (floating point)."""
    rank = len(win.kernel)
    fn = _torch_avg(xp, win)
    if fn is not None:
        return fn(xp, win.kernel, win.strides, 0) * math.prod(win.kernel)
    return window_view(xp, win).sum(dim=tuple(range(-rank, 0)))


def _counts(in_sizes: Sequence[int], win: Window, include_pad: bool, like: torch.Tensor) -> torch.Tensor:
    """How many positions each window averages over: a product of one count per axis."""
    total = None
    for i, (n, k, s, d, b, e, o) in enumerate(zip(in_sizes, win.kernel, win.strides, win.dilations,
                                                  win.begin, win.end, win.out)):
        pos = torch.arange(o, device=like.device).unsqueeze(1) * s + torch.arange(k, device=like.device) * d - b
        lo, hi = (-b, n + e) if include_pad else (0, n)
        count = ((pos >= lo) & (pos < hi)).sum(dim=1).to(like.dtype)
        count = count.reshape(o, *([1] * (len(in_sizes) - 1 - i)))
        total = count if total is None else total * count
    return total


def _avg_pool(x: torch.Tensor, kernel_shape: Sequence[int], *, auto_pad: str, pads, strides, dilations=None,
              ceil_mode: int = 0, count_include_pad: int = 0):
    if not x.dtype.is_floating_point:
        raise ValueError(f"AveragePool takes floating-point input, got {x.dtype}")
    win = _window(x, kernel_shape, strides=strides, dilations=dilations, pads=pads, auto_pad=auto_pad,
                  ceil_mode=ceil_mode)
    in_sizes = tuple(x.shape[2:])
    fn = _torch_avg(x, win)
    if fn is not None and _torch_pads_ok(win) and not (ceil_mode and count_include_pad):
        return fn(x, win.kernel, win.strides, win.begin, bool(ceil_mode), bool(count_include_pad))
    sums = _window_sum(pad_to(x, win.begin, win.fit(in_sizes)), win)
    return (sums / _counts(in_sizes, win, bool(count_include_pad), sums)).to(x.dtype)


@op("AveragePool", since=1, keeps_layout=True)
def average_pool_1(x, *, auto_pad: str = "NOTSET", kernel_shape: list[int], pads: list[int] | None = None,
                   strides: list[int] | None = None):
    return _avg_pool(x, kernel_shape, auto_pad=auto_pad, pads=pads, strides=strides)


@op("AveragePool", since=7, keeps_layout=True)
def average_pool_7(x, *, auto_pad: str = "NOTSET", count_include_pad: int = 0, kernel_shape: list[int],
                   pads: list[int] | None = None, strides: list[int] | None = None):
    return _avg_pool(x, kernel_shape, auto_pad=auto_pad, pads=pads, strides=strides,
                     count_include_pad=count_include_pad)


@op("AveragePool", since=10, keeps_layout=True)
def average_pool_10(x, *, auto_pad: str = "NOTSET", ceil_mode: int = 0, count_include_pad: int = 0,
                    kernel_shape: list[int], pads: list[int] | None = None, strides: list[int] | None = None):
    return _avg_pool(x, kernel_shape, auto_pad=auto_pad, pads=pads, strides=strides, ceil_mode=ceil_mode,
                     count_include_pad=count_include_pad)


@op("AveragePool", since=19, keeps_layout=True)
def average_pool_19(x, *, auto_pad: str = "NOTSET", ceil_mode: int = 0, count_include_pad: int = 0,
                    dilations: list[int] | None = None, kernel_shape: list[int], pads: list[int] | None = None,
                    strides: list[int] | None = None):
    return _avg_pool(x, kernel_shape, auto_pad=auto_pad, pads=pads, strides=strides, dilations=dilations,
                     ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def _lp_pool(x: torch.Tensor, kernel_shape: Sequence[int], p: float, *, auto_pad: str, pads, strides,
             dilations=None, ceil_mode: int = 0):
    if p <= 0:
        raise ValueError(f"p must be positive, got {p}")
    win = _window(x, kernel_shape, strides=strides, dilations=dilations, pads=pads, auto_pad=auto_pad,
                  ceil_mode=ceil_mode)
    powered = x.abs() if p == 1 else x.abs().pow(p)
    sums = _window_sum(pad_to(powered, win.begin, win.fit(x.shape[2:])), win)
    return sums if p == 1 else sums.pow(1.0 / p)


@op("LpPool", since=1)
def lp_pool_1(x, *, auto_pad: str = "NOTSET", kernel_shape: list[int], p: float = 2.0,
              pads: list[int] | None = None, strides: list[int] | None = None):
    return _lp_pool(x, kernel_shape, p, auto_pad=auto_pad, pads=pads, strides=strides)


@op("LpPool", since=2)
def lp_pool_2(x, *, auto_pad: str = "NOTSET", kernel_shape: list[int], p: int = 2,
              pads: list[int] | None = None, strides: list[int] | None = None):
    return _lp_pool(x, kernel_shape, p, auto_pad=auto_pad, pads=pads, strides=strides)


@op("LpPool", since=18)
def lp_pool_18(x, *, auto_pad: str = "NOTSET", ceil_mode: int = 0, dilations: list[int] | None = None,
               kernel_shape: list[int], p: int = 2, pads: list[int] | None = None, strides: list[int] | None = None):
    return _lp_pool(x, kernel_shape, p, auto_pad=auto_pad, pads=pads, strides=strides, dilations=dilations,
                    ceil_mode=ceil_mode)


def _spatial_dims(x: torch.Tensor) -> tuple[int, ...]:
    if x.dim() < 3:
        raise ValueError(f"X must be N x C x D1 x ... (rank 3 or more), got rank {x.dim()}")
    return tuple(range(2, x.dim()))


@op("GlobalAveragePool", since=1)
def global_average_pool(x):
    return x.mean(dim=_spatial_dims(x), keepdim=True)


@op("GlobalMaxPool", since=1)
def global_max_pool(x):
    return x.amax(dim=_spatial_dims(x), keepdim=True)


@op("GlobalLpPool", since=1)
def global_lp_pool_1(x, *, p: float = 2.0):
    return torch.linalg.vector_norm(x, ord=p, dim=_spatial_dims(x), keepdim=True)


@op("GlobalLpPool", since=2)
def global_lp_pool_2(x, *, p: int = 2):
    return torch.linalg.vector_norm(x, ord=p, dim=_spatial_dims(x), keepdim=True)


@op("MaxUnpool", since=9, value_inputs=(2,))
def max_unpool(x, indices, output_shape=None, *, kernel_shape: list[int], pads: list[int] | None = None,
               strides: list[int] | None = None):
    if x.dim() < 3:
        raise ValueError(f"X must be N x C x D1 x ... (rank 3 or more), got rank {x.dim()}")
    if indices.shape != x.shape:
        raise ValueError(f"I has shape {list(indices.shape)}, X has {list(x.shape)}: they must agree")
    rank = x.dim() - 2
    if len(kernel_shape) != rank:
        raise ValueError(f"the kernel has {len(kernel_shape)} spatial axes, the input has {rank}")
    begin, end = split_pads(rank, pads)
    strides_ = spatial_attrs(rank, "strides", strides, 1)
    # NOTE: the indices address the output_shape tensor, as MaxPool computed them on the unpooled input and as
    # onnxruntime and PyTorch read them; the node suite's with_output_shape case expects indices into the
    # window's unpooled size, padded at the end, a reading known to contradict MaxPool (onnx/onnx#2398)
    if output_shape is not None:
        shape = [int(d) for d in output_shape.tolist()]
        if len(shape) != x.dim():
            raise ValueError(f"output_shape {shape} must have rank {x.dim()}")
    else:
        shape = [*x.shape[:2], *((n - 1) * s + k - b - e
                                 for n, s, k, b, e in zip(x.shape[2:], strides_, kernel_shape, begin, end))]
    flat = x.new_zeros(math.prod(shape))
    return flat.scatter(0, indices.reshape(-1), x.reshape(-1)).reshape(shape)


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


@op("MaxRoiPool", since=1)
def max_roi_pool(x, rois, *, pooled_shape: list[int], spatial_scale: float = 1.0):
    if x.dim() != 4:
        raise ValueError(f"X must be N x C x H x W, got rank {x.dim()}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be num_rois x 5 (batch index, x1, y1, x2, y2), got shape {list(rois.shape)}")
    if len(pooled_shape) != 2 or min(pooled_shape) < 1:
        raise ValueError(f"pooled_shape must be two positive sizes, got {list(pooled_shape)}")
    height, width = x.shape[2:]
    feats = x[rois[:, 0].long()]  # R, C, H, W
    corners = _round_half_away(rois[:, 1:].float() * spatial_scale)
    masks = []
    for pooled, size, lo, hi in ((pooled_shape[0], height, corners[:, 1], corners[:, 3]),
                                 (pooled_shape[1], width, corners[:, 0], corners[:, 2])):
        bin_size = (hi - lo + 1).clamp(min=1) / pooled  # R
        steps = torch.arange(pooled, device=x.device, dtype=torch.float32)
        start = (torch.floor(steps * bin_size[:, None]) + lo[:, None]).clamp(0, size)  # R, pooled
        end = (torch.ceil((steps + 1) * bin_size[:, None]) + lo[:, None]).clamp(0, size)
        pos = torch.arange(size, device=x.device, dtype=torch.float32)
        masks.append((pos >= start[..., None]) & (pos < end[..., None]))  # R, pooled, size
    h_mask, w_mask = masks
    floor_value = lowest(x.dtype)
    rows = torch.where(w_mask[:, None, None], feats[:, :, :, None, :], floor_value).amax(dim=-1)  # R, C, H, pw
    y = torch.where(h_mask[:, None, :, None, :], rows.transpose(2, 3)[:, :, None], floor_value).amax(dim=-1)
    empty = ~(h_mask.any(-1)[:, :, None] & w_mask.any(-1)[:, None, :])  # R, ph, pw
    return torch.where(empty[:, None], torch.zeros((), dtype=x.dtype, device=x.device), y)


OPS = [
    max_pool_1, max_pool_8, max_pool_10, average_pool_1, average_pool_7, average_pool_10, average_pool_19,
    lp_pool_1, lp_pool_2, lp_pool_18, global_average_pool, global_max_pool, global_lp_pool_1, global_lp_pool_2,
    max_unpool, max_roi_pool,
]
