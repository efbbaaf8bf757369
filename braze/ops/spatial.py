"""Window geometry shared by convolution and pooling: ONNX's pads, auto_pad and output sizes.

ONNX describes a sliding window per spatial axis by kernel size, stride, dilation and a pair of
pads (begin, end) that may differ; `auto_pad` derives the pads from the input size instead.
`window()` resolves all of that into one `Window`, and `pad_to()` / `window_view()` give the
general (slow) path for what torch's pooling and convolution calls cannot express directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def extent(kernel: int, dilation: int) -> int:
    """How many input positions one dilated window spans."""
    return (kernel - 1) * dilation + 1


@dataclass(frozen=True)
class Window:
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begin: tuple[int, ...]  # padding before each spatial axis
    end: tuple[int, ...]  # padding after each spatial axis (ceil_mode's extra reach not included)
    out: tuple[int, ...]  # output size per spatial axis

    @property
    def symmetric(self) -> bool:
        return self.begin == self.end

    @property
    def unit_dilation(self) -> bool:
        return all(d == 1 for d in self.dilations)

    def fit(self, in_sizes: Sequence[int]) -> tuple[int, ...]:
        """Padding after each axis that makes the last window end exactly at the end (negative: crop).

        Padding `begin` and `fit` and then sliding without padding gives exactly `out` windows,
        in floor and ceil mode alike."""
        return tuple((o - 1) * s + extent(k, d) - n - b
                     for n, k, s, d, b, o in zip(in_sizes, self.kernel, self.strides, self.dilations,
                                                 self.begin, self.out))


def spatial_attrs(rank: int, name: str, values: Sequence[int] | None, default: int) -> tuple[int, ...]:
    """An attribute with one value per spatial axis (strides, dilations), defaulted and checked."""
    if values is None or len(values) == 0:
        return (default,) * rank
    if len(values) != rank:
        raise ValueError(f"{name} has {len(values)} values, the input has {rank} spatial axes")
    if any(v < 1 for v in values):
        raise ValueError(f"{name} must be positive, got {list(values)}")
    return tuple(values)


def split_pads(rank: int, pads: Sequence[int] | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """ONNX's [x1_begin, x2_begin, ..., x1_end, x2_end, ...] as (begins, ends)."""
    if pads is None:
        return (0,) * rank, (0,) * rank
    if len(pads) != 2 * rank:
        raise ValueError(f"pads has {len(pads)} values, expected {2 * rank} (begin and end per spatial axis)")
    if any(p < 0 for p in pads):
        raise ValueError(f"pads must not be negative, got {list(pads)}")
    return tuple(pads[:rank]), tuple(pads[rank:])


def same_pads(total: int, auto_pad: str) -> tuple[int, int]:
    """Split a total padding as SAME_UPPER (extra at the end) or SAME_LOWER (extra at the begin)."""
    small = total // 2
    return (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)


def window(in_sizes: Sequence[int], kernel: Sequence[int], *, strides: Sequence[int] | None,
           dilations: Sequence[int] | None, pads: Sequence[int] | None, auto_pad: str = "NOTSET",
           ceil_mode: int = 0) -> Window:
    """Resolve a conv or pool window over spatial sizes `in_sizes` (raises ValueError when it does not fit)."""
    rank = len(in_sizes)
    if len(kernel) != rank:
        raise ValueError(f"the kernel has {len(kernel)} spatial axes, the input has {rank}")
    if any(k < 1 for k in kernel):
        raise ValueError(f"kernel sizes must be positive, got {list(kernel)}")
    if auto_pad not in AUTO_PADS:
        raise ValueError(f"auto_pad must be one of {', '.join(AUTO_PADS)}, got {auto_pad!r}")
    strides = spatial_attrs(rank, "strides", strides, 1)
    dilations = spatial_attrs(rank, "dilations", dilations, 1)
    spans = [extent(k, d) for k, d in zip(kernel, dilations)]
    if auto_pad == "NOTSET":
        begin, end = split_pads(rank, pads)
    elif auto_pad == "VALID":
        begin, end = (0,) * rank, (0,) * rank
    else:
        splits = [same_pads(max(0, (-(-n // s) - 1) * s + span - n), auto_pad)
                  for n, s, span in zip(in_sizes, strides, spans)]
        begin, end = tuple(b for b, _ in splits), tuple(e for _, e in splits)
    out = []
    for n, s, span, b, e in zip(in_sizes, strides, spans, begin, end):
        room = n + b + e - span
        if room < 0:
            raise ValueError(f"the window (kernel {list(kernel)}, dilations {list(dilations)}) is larger "
                             f"than the padded input {list(in_sizes)}")
        size = (math.ceil(room / s) if ceil_mode else room // s) + 1
        if ceil_mode and (size - 1) * s >= n + b:  # the last window must start inside the input
            size -= 1
        out.append(size)
    return Window(tuple(kernel), strides, dilations, begin, end, tuple(out))


def pad_to(x: torch.Tensor, begin: Sequence[int], end: Sequence[int], value: float = 0.0) -> torch.Tensor:
    """Pad the trailing len(begin) axes of x; negative amounts crop."""
    if not any(begin) and not any(end):
        return x
    flat: list[int] = []
    for b, e in zip(reversed(begin), reversed(end)):
        flat += [b, e]
    return F.pad(x, flat, value=value)


def window_view(x: torch.Tensor, w: Window) -> torch.Tensor:
    """Windows of an already padded x: shape (*leading, *w.out, *w.kernel), a view where possible."""
    rank = len(w.kernel)
    lead = x.dim() - rank
    for i, (k, s, d, o) in enumerate(zip(w.kernel, w.strides, w.dilations, w.out)):
        axis = lead + i
        x = x.narrow(axis, 0, (o - 1) * s + extent(k, d)).unfold(axis, extent(k, d), s)
        if d > 1:
            x = x[..., ::d]
    return x


def lowest(dtype: torch.dtype) -> float | int:
    """The padding value that never wins a max."""
    return -math.inf if dtype.is_floating_point else torch.iinfo(dtype).min
