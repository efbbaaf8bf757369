"""Convolutions: Conv and ConvTranspose over 1-D, 2-D and 3-D (and more) spatial axes.

Both go straight to torch's convolution calls whenever ONNX's attributes can be expressed there;
asymmetric pads are applied with one explicit pad (Conv) or one crop (ConvTranspose), and more
than three spatial axes fall back to a windowed einsum.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .opdef import op
from .spatial import Window, extent, pad_to, same_pads, spatial_attrs, split_pads, window, window_view

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _check_operands(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, group: int,
                    kernel_shape: Sequence[int] | None, in_channels: int) -> None:
    """Checks shared by Conv and ConvTranspose; `in_channels` is how many channels W expects of X."""
    if x.dim() < 3:
        raise ValueError(f"X must be N x C x D1 x ... (rank 3 or more), got rank {x.dim()}")
    if w.dim() != x.dim():
        raise ValueError(f"W has rank {w.dim()}, X has rank {x.dim()}: they must agree")
    if w.dtype != x.dtype or (b is not None and b.dtype != x.dtype):
        raise ValueError("X, W and B must share one dtype")
    if group < 1:
        raise ValueError(f"group must be positive, got {group}")
    if x.shape[1] != in_channels:
        raise ValueError(f"X has {x.shape[1]} channels, W (shape {list(w.shape)}) with group={group} "
                         f"expects {in_channels}")
    if w.shape[0] % group:
        raise ValueError(f"W's first dim {w.shape[0]} is not divisible by group={group}")
    if kernel_shape and list(kernel_shape) != list(w.shape[2:]):
        raise ValueError(f"kernel_shape {list(kernel_shape)} does not match W's spatial shape {list(w.shape[2:])}")


def _bias_shape(b: torch.Tensor | None, out_channels: int) -> None:
    if b is not None and tuple(b.shape) != (out_channels,):
        raise ValueError(f"B has shape {list(b.shape)}, expected [{out_channels}] (one value per output channel)")


@op("Conv", since=1)
def conv(x, w, b=None, *, auto_pad: str = "NOTSET", dilations: list[int] | None = None, group: int = 1,
         kernel_shape: list[int] | None = None, pads: list[int] | None = None, strides: list[int] | None = None):
    _check_operands(x, w, b, group, kernel_shape, in_channels=w.shape[1] * group)
    _bias_shape(b, w.shape[0])
    win = window(x.shape[2:], w.shape[2:], strides=strides, dilations=dilations, pads=pads, auto_pad=auto_pad)
    fn = _CONV.get(len(win.kernel))
    if fn is None:
        return _conv_nd(x, w, b, win, group)
    if not win.symmetric:
        x = pad_to(x, win.begin, win.end)
    padding = win.begin if win.symmetric else 0
    return fn(x, w, b, win.strides, padding, win.dilations, group)


def _conv_nd(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, win: Window, group: int) -> torch.Tensor:
    """Any number of spatial axes: windows of the padded input contracted with the weight."""
    n, c = x.shape[:2]
    m = w.shape[0]
    cols = window_view(pad_to(x, win.begin, win.end), win)  # N, C, *out, *k
    rank = len(win.kernel)
    cols = cols.reshape(n, group, c // group, *win.out, -1)
    wg = w.reshape(group, m // group, c // group, -1)
    y = torch.einsum("ngc...k,gmck->ngm...", cols, wg).reshape(n, m, *win.out)
    if b is not None:
        y = y + b.reshape(m, *([1] * rank))
    return y


@op("ConvTranspose", since=1)
def conv_transpose(x, w, b=None, *, auto_pad: str = "NOTSET", dilations: list[int] | None = None,
                   group: int = 1, kernel_shape: list[int] | None = None, output_padding: list[int] | None = None,
                   output_shape: list[int] | None = None, pads: list[int] | None = None,
                   strides: list[int] | None = None):
    _check_operands(x, w, b, group, kernel_shape, in_channels=w.shape[0])
    out_channels = w.shape[1] * group
    _bias_shape(b, out_channels)
    in_sizes = tuple(x.shape[2:])
    rank = len(in_sizes)
    strides_ = spatial_attrs(rank, "strides", strides, 1)
    dilations_ = spatial_attrs(rank, "dilations", dilations, 1)
    adjust = _output_padding(rank, output_padding)
    spans = [extent(k, d) for k, d in zip(w.shape[2:], dilations_)]
    full = [s * (n - 1) + a + span for n, s, a, span in zip(in_sizes, strides_, adjust, spans)]
    begin, end = _transpose_pads(rank, in_sizes, full, strides_, auto_pad, pads, output_shape)
    out = [f - p - q for f, p, q in zip(full, begin, end)]
    if any(o < 1 for o in out):
        raise ValueError(f"the output would have spatial shape {out}; pads {list(begin) + list(end)} are too large")

    fn = _CONV_T.get(rank)
    if (fn is not None and begin == end and all(p >= 0 for p in begin)
            and all(a < max(s, d) for a, s, d in zip(adjust, strides_, dilations_))):
        return fn(x, w, b, strides_, begin, adjust, group, dilations_)
    y = _conv_transpose_full(x, w, strides_, dilations_, group)
    # full covers s*(n-1)+span positions; the output starts at `begin` and may extend past the end
    y = pad_to(y, [-p for p in begin], [o + p - yn for o, p, yn in zip(out, begin, y.shape[2:])])
    if b is not None:
        y = y + b.reshape(out_channels, *([1] * rank))
    return y


def _output_padding(rank: int, output_padding: Sequence[int] | None) -> tuple[int, ...]:
    if not output_padding:
        return (0,) * rank
    if len(output_padding) == 2 * rank:  # some exporters write begin and end; only the end counts
        output_padding = output_padding[rank:]
    if len(output_padding) != rank or any(a < 0 for a in output_padding):
        raise ValueError(f"output_padding must hold {rank} non-negative values, got {list(output_padding)}")
    return tuple(output_padding)


def _transpose_pads(rank: int, in_sizes: Sequence[int], full: Sequence[int], strides: Sequence[int],
                    auto_pad: str, pads: Sequence[int] | None,
                    output_shape: Sequence[int] | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The (begin, end) crop of the full transposed output; negative means zeros are appended."""
    if output_shape:
        target = list(output_shape)[-rank:]
        if len(target) != rank:
            raise ValueError(f"output_shape has {len(output_shape)} values, the input has {rank} spatial axes")
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = [n * s for n, s in zip(in_sizes, strides)]
    elif auto_pad in ("NOTSET", "VALID"):
        return split_pads(rank, pads) if auto_pad == "NOTSET" else ((0,) * rank, (0,) * rank)
    else:
        raise ValueError(f"auto_pad must be one of NOTSET, SAME_UPPER, SAME_LOWER, VALID, got {auto_pad!r}")
    splits = [same_pads(f - t, "SAME_UPPER" if auto_pad == "SAME_UPPER" else "SAME_LOWER")
              for f, t in zip(full, target)]
    return tuple(p for p, _ in splits), tuple(q for _, q in splits)


def _conv_transpose_full(x: torch.Tensor, w: torch.Tensor, strides: Sequence[int], dilations: Sequence[int],
                         group: int) -> torch.Tensor:
    """The unpadded transposed convolution: s*(n-1) + (k-1)*d + 1 positions per axis."""
    rank = x.dim() - 2
    fn = _CONV_T.get(rank)
    if fn is not None:
        return fn(x, w, None, strides, 0, 0, group, dilations)
    # transposed conv = conv of the zero-stuffed input with the flipped, transposed kernel
    n, c = x.shape[:2]
    stuffed = x.new_zeros(n, c, *[(size - 1) * s + 1 for size, s in zip(x.shape[2:], strides)])
    stuffed[(slice(None), slice(None), *[slice(None, None, s) for s in strides])] = x
    m = w.shape[1]
    wt = w.reshape(group, c // group, m, *w.shape[2:]).transpose(1, 2).reshape(group * m, c // group, *w.shape[2:])
    wt = wt.flip(list(range(2, w.dim())))
    spans = [extent(k, d) for k, d in zip(w.shape[2:], dilations)]
    win = window(stuffed.shape[2:], w.shape[2:], strides=None, dilations=dilations,
                 pads=[span - 1 for span in spans] * 2)
    return _conv_nd(stuffed, wt, None, win, group)


OPS = [conv, conv_transpose]
