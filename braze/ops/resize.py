"""Resize (opsets 10, 11, 18, 19) and Upsample (7, 9): nearest, N-linear and N-cubic resampling.

Resampling is separable: each resized axis, in order, is mapped through a small table of input
positions (taps) and weights per output position, computed from the shapes alone (`_Axis.taps`),
and applied with one gather and a weighted sum. This general path follows the ONNX reference
implementation: taps past the edge repeat the edge value (or get no weight, with
`exclude_outside`), antialiasing stretches the linear or cubic kernel by 1/scale when
downsampling, tf_crop_and_resize fills positions outside the input with `extrapolation_value`,
and align_corners, tf_crop_and_resize and half_pixel_symmetric use the fractional output width
`in * scale`. As onnxruntime does, source coordinates are computed in float32 (float64 for float64
inputs), so that nearest rounding agrees with it on ties; pytorch_half_pixel maps a length-1
output to 0, as the spec says; and linear or cubic results for integer inputs are truncated.

Where F.interpolate computes the same function (linear on 1 to 3 trailing axes, cubic on 2, with
half_pixel, pytorch_half_pixel or align_corners, a = -0.75, no antialias, no exclude_outside), it
does the work instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..ir import Node
from .opdef import op

MODES = ("nearest", "linear", "cubic")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
                    "tf_crop_and_resize")
POLICIES = ("stretch", "not_larger", "not_smaller")
_TORCH_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


@dataclass(frozen=True)
class _Sampling:
    mode: str
    coordinates: str = "half_pixel"
    nearest: str = "round_prefer_floor"  # or "simple": Resize-10 and Upsample (ceil when downsampling, else floor)
    cubic_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False
    extrapolation: float = 0.0


@dataclass(frozen=True)
class _Axis:
    """One resized axis: its lengths, its scale and its region of interest."""

    axis: int
    size_in: int
    size_out: int
    scale: float
    width: float  # the output length before flooring: size_in * scale
    roi: tuple[float, float] = (0.0, 1.0)

    def source(self, how: _Sampling, precision: torch.dtype) -> torch.Tensor:
        """The input coordinate each output position samples, computed in `precision`, as float64."""
        y = torch.arange(self.size_out, dtype=precision)
        n, mode = self.size_in, how.coordinates
        scale, width = torch.tensor(self.scale, dtype=precision), torch.tensor(self.width, dtype=precision)
        if mode == "asymmetric":
            x = y / scale
        elif mode == "tf_half_pixel_for_nn":
            x = (y + 0.5) / scale
        elif mode == "pytorch_half_pixel" and self.size_out <= 1:
            x = torch.zeros_like(y)
        elif mode in ("half_pixel", "pytorch_half_pixel"):
            x = (y + 0.5) / scale - 0.5
        elif mode == "half_pixel_symmetric":
            offset = n / 2 * (1 - self.size_out / width)
            x = offset + (y + 0.5) / scale - 0.5
        elif mode == "align_corners":
            x = torch.zeros_like(y) if self.width == 1 else y * (n - 1) / (width - 1)
        else:  # tf_crop_and_resize
            start, end = (torch.tensor(v, dtype=precision) for v in self.roi)
            if self.width == 1:
                x = torch.full_like(y, 0.5) * (start + end) * (n - 1)
            else:
                x = start * (n - 1) + y * (end - start) * (n - 1) / (width - 1)
        return x.to(torch.float64)

    def taps(self, how: _Sampling, precision: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                     torch.Tensor | None]:
        """(input index [out, taps], weights [out, taps] or None for nearest, outside mask [out] or None)."""
        x = self.source(how, precision)
        outside = (x < 0) | (x > self.size_in - 1) if how.coordinates == "tf_crop_and_resize" else None
        if how.mode == "nearest":
            index = _round(x, how.nearest, self.scale).clamp(0, self.size_in - 1).unsqueeze(1)
            return index, None, outside
        p = torch.floor(x)
        ratio = x - p
        p = torch.where(ratio == 0, p - 1, p).to(torch.int64)  # NOTE: ratio in (0, 1], as the reference has it
        ratio = torch.where(ratio == 0, torch.ones_like(ratio), ratio)
        support = 1 if how.mode == "linear" else 2
        stretch = min(self.scale, 1.0) if how.antialias else 1.0
        start = math.floor(-support / stretch) + 1
        offsets = torch.arange(start, 1 - start + 1)
        index = p.unsqueeze(1) + offsets
        distance = ((offsets - ratio.unsqueeze(1)) * stretch).abs()
        weight = _linear(distance) if how.mode == "linear" else _cubic(distance, how.cubic_a)
        if how.antialias:
            weight = weight / weight.sum(1, keepdim=True)
        if how.exclude_outside:
            weight = torch.where((index < 0) | (index >= self.size_in), 0.0, weight)
            total = weight.sum(1, keepdim=True)
            weight = weight / torch.where(total == 0, 1.0, total)
        return index.clamp(0, max(self.size_in - 1, 0)), weight, outside


def _round(x: torch.Tensor, nearest: str, scale: float) -> torch.Tensor:
    if nearest == "simple":
        nearest = "ceil" if scale < 1 else "floor"
    if nearest == "round_prefer_floor":
        x = torch.ceil(x - 0.5)
    elif nearest == "round_prefer_ceil":
        x = torch.floor(x + 0.5)
    elif nearest == "floor":
        x = torch.floor(x)
    else:
        x = torch.ceil(x)
    return x.to(torch.int64)


def _linear(d: torch.Tensor) -> torch.Tensor:
    return (1 - d).clamp(0, 1)


def _cubic(d: torch.Tensor, a: float) -> torch.Tensor:
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return torch.where(d <= 1, near, torch.where(d < 2, far, torch.zeros_like(d)))


def _geometry(shape: Sequence[int], scales: list[float] | None, sizes: list[int] | None,
              axes: list[int] | None, roi: list[float] | None, policy: str = "stretch") -> list[_Axis]:
    """The resized axes of an input of `shape`, from the op's scales or sizes, axes, roi and policy."""
    axes = _axes(axes, len(shape))
    ins = [shape[a] for a in axes]
    if scales is not None and sizes is not None:
        raise ValueError("exactly one of scales and sizes must be given")
    if scales is not None:
        _check_count("scales", scales, axes)
        if any(not s > 0 for s in scales):
            raise ValueError(f"scales {scales} must all be greater than 0")
        outs = [math.floor(n * s) for n, s in zip(ins, scales)]
        factors, widths = list(scales), [n * s for n, s in zip(ins, scales)]
    elif sizes is not None:
        _check_count("sizes", sizes, axes)
        if any(s < 0 or (n == 0 and s != 0) for n, s in zip(ins, sizes)):
            raise ValueError(f"sizes {sizes} cannot be reached from the input's shape {list(shape)}")
        factors = [s / n if n else 1.0 for n, s in zip(ins, sizes)]
        outs, widths = list(sizes), [float(s) for s in sizes]
        if policy not in POLICIES:
            raise ValueError(f"keep_aspect_ratio_policy {policy!r} is not one of {', '.join(map(repr, POLICIES))}")
        if policy != "stretch" and ins:
            scale = (min if policy == "not_larger" else max)(factors)
            outs = [int(n * scale + 0.5) for n in ins]
            factors, widths = [scale] * len(ins), [n * scale for n in ins]
    else:
        raise ValueError("neither scales nor sizes is given")
    if roi is None:
        rois = [(0.0, 1.0)] * len(axes)
    else:
        if len(roi) != 2 * len(axes):
            raise ValueError(f"roi has {len(roi)} values; {len(axes)} axes take {2 * len(axes)}")
        rois = list(zip(roi[:len(axes)], roi[len(axes):]))
    resized = [_Axis(a, n, o, f, w, r) for a, n, o, f, w, r in zip(axes, ins, outs, factors, widths, rois)]
    return sorted(resized, key=lambda g: g.axis)


def _axes(axes: list[int] | None, rank: int) -> list[int]:
    if axes is None:
        return list(range(rank))
    if not all(-rank <= a < rank for a in axes):
        raise ValueError(f"axes {axes} are out of range for an input of rank {rank}")
    if len({a % rank for a in axes}) != len(axes):
        raise ValueError(f"axes {axes} name a dimension twice")
    return [a % rank for a in axes]


def _check_count(what: str, values: Sequence[float], axes: Sequence[int]) -> None:
    if len(values) != len(axes):
        raise ValueError(f"{what} has {len(values)} values for {len(axes)} axes")


def _resample(x: torch.Tensor, geometry: list[_Axis], how: _Sampling) -> torch.Tensor:
    if how.mode not in MODES:
        raise ValueError(f"mode {how.mode!r} is not one of {', '.join(map(repr, MODES))}")
    if how.antialias and how.mode == "nearest":
        raise ValueError("antialias applies to the linear and cubic modes, not to nearest")
    active = _active(geometry, how)
    if how.mode == "nearest":
        return _general(x, active, how)
    if x.dtype == torch.bool:
        raise ValueError(f"mode {how.mode!r} needs a numeric input, not bool")
    work = x.to(torch.float64) if x.dtype in (torch.float64, torch.int64, torch.uint64) else x.float()
    out = _with_torch(work, active, how)
    if out is None:
        out = _general(work, active, how)
    if x.is_floating_point():
        return out.to(x.dtype)
    limits = torch.iinfo(x.dtype)
    return out.clamp(limits.min, limits.max).to(x.dtype)  # NOTE: truncates, as onnxruntime does


def _active(geometry: list[_Axis], how: _Sampling) -> list[_Axis]:
    """The axes that resampling changes (tf_half_pixel_for_nn shifts even an unscaled axis)."""
    return [g for g in geometry if not (g.size_in == g.size_out and g.scale == 1.0 and g.roi == (0.0, 1.0)
                                        and how.coordinates != "tf_half_pixel_for_nn")]


def _general(x: torch.Tensor, geometry: list[_Axis], how: _Sampling) -> torch.Tensor:
    for g in geometry:
        index, weight, outside = g.taps(how, torch.float64 if x.dtype == torch.float64 else torch.float32)
        index = index.to(x.device)
        if g.size_in == 0:
            x = x.narrow(g.axis, 0, 0)
        elif weight is None:
            x = x.index_select(g.axis, index[:, 0])
        else:
            picked = x.index_select(g.axis, index.reshape(-1)).unflatten(g.axis, tuple(index.shape))
            trailing = (1,) * (x.dim() - g.axis - 1)
            x = (picked * weight.to(x.device, x.dtype).reshape(*index.shape, *trailing)).sum(g.axis + 1)
        if outside is not None and bool(outside.any()):
            mask = outside.to(x.device).reshape(-1, *(1,) * (x.dim() - g.axis - 1))
            x = torch.where(mask, torch.tensor(how.extrapolation, dtype=x.dtype, device=x.device), x)
    return x


def _with_torch(x: torch.Tensor, geometry: list[_Axis], how: _Sampling) -> torch.Tensor | None:
    """F.interpolate's result where it is the same function as the general path's; else None."""
    if not geometry or how.antialias or how.exclude_outside or x.numel() == 0 or any(
            g.size_out == 0 for g in geometry):
        return None
    first = geometry[0].axis
    spatial = x.dim() - first
    if how.mode == "linear":
        torch_mode = _TORCH_MODES.get(spatial)
    else:
        torch_mode = "bicubic" if spatial == 2 and how.cubic_a == -0.75 else None
    if torch_mode is None:
        return None
    if how.coordinates == "align_corners":
        if any(g.width != g.size_out for g in geometry):
            return None
    elif how.coordinates == "pytorch_half_pixel":
        if any(g.size_out <= 1 for g in geometry):
            return None
    elif how.coordinates != "half_pixel":
        return None
    by_axis = {g.axis: g for g in geometry}
    window = [by_axis.get(a) for a in range(first, x.dim())]
    factors = [1.0 if g is None else g.scale for g in window]
    sizes = [x.shape[a] if g is None else g.size_out for a, g in zip(range(first, x.dim()), window)]
    batch = x.reshape(1, -1, *x.shape[first:])
    align = how.coordinates == "align_corners"
    if all(g is None or g.width == g.size_out and g.scale == g.size_out / g.size_in for g in window):
        out = F.interpolate(batch, size=sizes, mode=torch_mode, align_corners=align)
    elif all(g is None or math.floor(g.size_in * g.scale) == g.size_out for g in window):
        out = F.interpolate(batch, scale_factor=factors, mode=torch_mode, align_corners=align,
                            recompute_scale_factor=False)
    else:
        return None
    return out.reshape(*x.shape[:first], *sizes)


def _floats(t: torch.Tensor | None) -> list[float] | None:
    return None if t is None or t.numel() == 0 else [float(v) for v in t.reshape(-1).tolist()]


def _ints(t: torch.Tensor | None) -> list[int] | None:
    return None if t is None or t.numel() == 0 else [int(v) for v in t.reshape(-1).tolist()]


def _resize(x, roi, scales, sizes, how: _Sampling, axes: list[int] | None = None, policy: str = "stretch",
            coordinate_modes: Sequence[str] = COORDINATE_MODES) -> torch.Tensor:
    if how.coordinates not in coordinate_modes:
        raise ValueError(f"coordinate_transformation_mode {how.coordinates!r} is not one of "
                         f"{', '.join(map(repr, coordinate_modes))}")
    if how.nearest not in NEAREST_MODES:
        raise ValueError(f"nearest_mode {how.nearest!r} is not one of {', '.join(map(repr, NEAREST_MODES))}")
    roi_values = _floats(roi) if how.coordinates == "tf_crop_and_resize" else None
    if how.coordinates == "tf_crop_and_resize" and roi_values is None:
        raise ValueError("coordinate_transformation_mode 'tf_crop_and_resize' needs the roi input")
    geometry = _geometry(tuple(x.shape), _floats(scales), _ints(sizes), axes, roi_values, policy)
    return _resample(x, geometry, how)


def _nearest(node: Node) -> bool:
    """A nearest-neighbour Resize only copies elements (no interpolation, no extrapolated value), so it
    commutes with dequantization."""
    return node.attrs.get("mode", "nearest") == "nearest" \
        and node.attrs.get("coordinate_transformation_mode") != "tf_crop_and_resize"


@op("Resize", since=10, value_inputs=(1,), commutes_with_quantize=_nearest)
def resize_10(x, scales, *, mode: str = "nearest"):
    return _legacy(x, _floats(scales), mode)


@op("Resize", since=11, value_inputs=(1, 2, 3), commutes_with_quantize=_nearest)
def resize_11(x, roi=None, scales=None, sizes=None, *, coordinate_transformation_mode: str = "half_pixel",
              cubic_coeff_a: float = -0.75, exclude_outside: int = 0, extrapolation_value: float = 0.0,
              mode: str = "nearest", nearest_mode: str = "round_prefer_floor"):
    how = _Sampling(mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a, bool(exclude_outside),
                    False, extrapolation_value)
    return _resize(x, roi, scales, sizes, how)


@op("Resize", since=18, value_inputs=(1, 2, 3), commutes_with_quantize=_nearest)
def resize_18(x, roi=None, scales=None, sizes=None, *, antialias: int = 0, axes: list[int] | None = None,
              coordinate_transformation_mode: str = "half_pixel", cubic_coeff_a: float = -0.75,
              exclude_outside: int = 0, extrapolation_value: float = 0.0, keep_aspect_ratio_policy: str = "stretch",
              mode: str = "nearest", nearest_mode: str = "round_prefer_floor"):
    how = _Sampling(mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a, bool(exclude_outside),
                    bool(antialias), extrapolation_value)
    return _resize(x, roi, scales, sizes, how, axes, keep_aspect_ratio_policy)


@op("Resize", since=19, value_inputs=(1, 2, 3), commutes_with_quantize=_nearest)
def resize_19(x, roi=None, scales=None, sizes=None, *, antialias: int = 0, axes: list[int] | None = None,
              coordinate_transformation_mode: str = "half_pixel", cubic_coeff_a: float = -0.75,
              exclude_outside: int = 0, extrapolation_value: float = 0.0, keep_aspect_ratio_policy: str = "stretch",
              mode: str = "nearest", nearest_mode: str = "round_prefer_floor"):
    how = _Sampling(mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a, bool(exclude_outside),
                    bool(antialias), extrapolation_value)
    return _resize(x, roi, scales, sizes, how, axes, keep_aspect_ratio_policy,
                   COORDINATE_MODES + ("half_pixel_symmetric",))


def _legacy(x: torch.Tensor, scales: list[float] | None, mode: str, *, upsample: bool = False) -> torch.Tensor:
    """Resize-10 and Upsample: scales only, asymmetric coordinates, nearest or linear."""
    if mode not in ("nearest", "linear"):
        raise ValueError(f"mode {mode!r} is not one of 'nearest', 'linear'")
    if upsample and scales is not None and any(s < 1 for s in scales):
        raise ValueError(f"Upsample scales {scales} must all be at least 1")
    geometry = _geometry(tuple(x.shape), scales, None, None, None)
    return _resample(x, geometry, _Sampling(mode, "asymmetric", "simple"))


@op("Upsample", since=7)
def upsample_7(x, *, mode: str = "nearest", scales: list[float]):
    return _legacy(x, scales, mode, upsample=True)


@op("Upsample", since=9, value_inputs=(1,))
def upsample_9(x, scales, *, mode: str = "nearest"):
    return _legacy(x, _floats(scales), mode, upsample=True)


OPS = [resize_10, resize_11, resize_18, resize_19, upsample_7, upsample_9]
