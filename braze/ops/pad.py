"""Pad: constant, reflect, edge and (from opset 19) wrap padding, with negative pads cropping.

`pads` lists the amounts added before each padded axis, then those added after it. A negative
amount removes that many elements from that side first; the remaining positive amounts are then
filled in from the cropped tensor (its reflection, its edge values or its wrapped-around values)
or with the constant. The pads became an input at opset 11, the padded axes an input at 18.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .opdef import op

MODES = ("constant", "reflect", "edge", "wrap")


def _pad(x: torch.Tensor, pads: Sequence[int], mode: str, value: torch.Tensor | float,
         axes: Sequence[int] | None = None, *, modes: Sequence[str] = MODES[:3]) -> torch.Tensor:
    if mode not in modes:
        hint = " (mode 'wrap' needs opset 19)" if mode == "wrap" else ""
        raise ValueError(f"mode {mode!r} is not one of {', '.join(map(repr, modes))}{hint}")
    rank = x.dim()
    axes = list(range(rank)) if axes is None else [_axis(a, rank) for a in axes]
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes {list(axes)} name a dimension twice")
    if len(pads) != 2 * len(axes):
        raise ValueError(f"pads has {len(pads)} values; padding {len(axes)} axes takes {2 * len(axes)}")
    before, after = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        before[axis], after[axis] = pads[i], pads[i + len(axes)]

    for d in range(rank):
        cut_before, cut_after = max(-before[d], 0), max(-after[d], 0)
        if cut_before or cut_after:
            kept = x.shape[d] - cut_before - cut_after
            if kept < 0:
                raise ValueError(f"pads {list(pads)} remove {cut_before + cut_after} elements from axis {d}, "
                                 f"which has {x.shape[d]}")
            x = x.narrow(d, cut_before, kept)
    grow = [(d, max(before[d], 0), max(after[d], 0)) for d in range(rank) if before[d] > 0 or after[d] > 0]
    if mode == "constant":
        return _pad_constant(x, grow, value)
    for d, b, e in grow:
        if x.shape[d] == 0:
            raise ValueError(f"mode {mode!r} cannot pad axis {d}: it is empty")
        x = x.index_select(d, _source_index(x.shape[d], b, e, mode).to(x.device))
    return x


def _pad_constant(x: torch.Tensor, grow: list[tuple[int, int, int]], value: torch.Tensor | float) -> torch.Tensor:
    shape = list(x.shape)
    inner = [slice(None)] * x.dim()
    for d, b, e in grow:
        shape[d] += b + e
        inner[d] = slice(b, b + x.shape[d])
    if isinstance(value, torch.Tensor):
        out = value.to(x.dtype).reshape(()).expand(shape).clone()
    else:
        out = torch.full(shape, value, dtype=x.dtype, device=x.device)
    out[tuple(inner)] = x
    return out


def _source_index(n: int, before: int, after: int, mode: str) -> torch.Tensor:
    """For each position of the padded axis, the position of the input it copies."""
    i = torch.arange(-before, n + after)
    if mode == "edge":
        return i.clamp(0, n - 1)
    if mode == "wrap":
        return i.remainder(n)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    j = i.remainder(period)
    return torch.where(j < n, j, period - j)


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for an input of rank {rank}")
    return axis % rank


def _ints(t: torch.Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _value(constant_value: torch.Tensor | None) -> torch.Tensor | float:
    if constant_value is None or constant_value.numel() == 0:
        return 0.0
    if constant_value.numel() != 1:
        raise ValueError(f"constant_value must be a scalar, it has shape {list(constant_value.shape)}")
    return constant_value


@op("Pad", since=2)
def pad_2(data, *, pads: list[int], mode: str = "constant", value: float = 0.0):
    return _pad(data, pads, mode, value)


@op("Pad", since=11, value_inputs=(1,))
def pad_11(data, pads, constant_value=None, *, mode: str = "constant"):
    return _pad(data, _ints(pads), mode, _value(constant_value))


@op("Pad", since=18, value_inputs=(1, 3))
def pad_18(data, pads, constant_value=None, axes=None, *, mode: str = "constant"):
    return _pad(data, _ints(pads), mode, _value(constant_value), _ints(axes))


@op("Pad", since=19, value_inputs=(1, 3))
def pad_19(data, pads, constant_value=None, axes=None, *, mode: str = "constant"):
    return _pad(data, _ints(pads), mode, _value(constant_value), _ints(axes), modes=MODES)


OPS = [pad_2, pad_11, pad_18, pad_19]
