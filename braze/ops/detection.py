"""Detection heads: RoiAlign (opsets 10 and 16) and NonMaxSuppression.

RoiAlign averages (or maxes) bilinear samples on a regular grid inside each bin of each region.
With `sampling_ratio=0` the grid adapts to each region's size, so regions are handled one at a
time; the output's shape never depends on the data and comes from an `infer` rule. As in
onnxruntime (and ONNX's reference), 'max' takes, per sample, the largest of the four weighted
corner values, and sample positions are computed in the input's precision (at least float32).

NonMaxSuppression's output has as many rows as boxes survive: its shape is known at run time only.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..ir import DType, Node
from .infer import Inferred
from .opdef import op

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_ROI_MODES = ("avg", "max")
_TRANSFORMS = ("half_pixel", "output_half_pixel")


def _check_roi_inputs(x_shape: Sequence[int | None], rois_shape: Sequence[int | None],
                      indices_shape: Sequence[int | None], output_height: int, output_width: int,
                      sampling_ratio: int, mode: str, transform: str) -> None:
    if len(x_shape) != 4:
        raise ValueError(f"X must be N x C x H x W, got rank {len(x_shape)}")
    if len(rois_shape) != 2 or rois_shape[1] != 4:
        raise ValueError(f"rois must be num_rois x 4, got shape {list(rois_shape)}")
    if len(indices_shape) != 1 or indices_shape[0] != rois_shape[0]:
        raise ValueError(f"batch_indices must hold one index per roi ({rois_shape[0]}), got shape "
                         f"{list(indices_shape)}")
    if output_height < 1 or output_width < 1 or sampling_ratio < 0:
        raise ValueError(f"output_height ({output_height}) and output_width ({output_width}) must be positive "
                         f"and sampling_ratio ({sampling_ratio}) non-negative")
    if mode not in _ROI_MODES:
        raise ValueError(f"mode must be 'avg' or 'max', got {mode!r}")
    if transform not in _TRANSFORMS:
        raise ValueError(f"coordinate_transformation_mode must be one of {', '.join(_TRANSFORMS)}, got {transform!r}")


def _infer_roi_align(node: Node, values) -> list[Inferred]:
    x, rois, indices = node.inputs
    attrs = node.attrs
    if x.shape is None or rois.shape is None or indices.shape is None:
        return [Inferred(x.dtype, None)]
    _check_roi_inputs(x.shape, rois.shape, indices.shape, attrs["output_height"], attrs["output_width"],
                      attrs["sampling_ratio"], attrs["mode"], attrs.get("coordinate_transformation_mode",
                                                                        "output_half_pixel"))
    if x.dtype not in (DType.float16, DType.bfloat16, DType.float32, DType.float64) or rois.dtype != x.dtype:
        raise TypeError(f"X and rois must share one floating-point type, got {x.dtype} and {rois.dtype}")
    if indices.dtype != DType.int64:
        raise TypeError(f"batch_indices must be int64, got {indices.dtype}")
    return [Inferred(x.dtype, (rois.shape[0], x.shape[1], attrs["output_height"], attrs["output_width"]))]


def _axis_samples(start: torch.Tensor, bin_size: torch.Tensor, bins: int, grid: int,
                  size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis: indices and weights (bins, grid, 2), zero weight where the
    sample falls more than one pixel outside the image."""
    steps = torch.arange(grid, dtype=start.dtype) + 0.5
    pos = start + torch.arange(bins, dtype=start.dtype)[:, None] * bin_size + steps[None, :] * bin_size / grid
    inside = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    low = torch.trunc(pos).to(torch.int64)
    edge = low >= size - 1
    low = torch.where(edge, size - 1, low)
    high = torch.where(edge, size - 1, low + 1)
    pos = torch.where(edge, low.to(pos.dtype), pos)
    frac = pos - low
    weights = torch.stack([1 - frac, frac], -1) * inside.unsqueeze(-1)
    return torch.stack([low, high], -1), weights


def _roi_align(x: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor, mode: str, output_height: int,
               output_width: int, sampling_ratio: int, spatial_scale: float, half_pixel: bool) -> torch.Tensor:
    n, c, height, width = x.shape
    work = torch.promote_types(x.dtype, torch.float32)
    features, boxes = x.to(work), rois.to(work).cpu()
    index_list = batch_indices.reshape(-1).tolist()
    if any(not 0 <= b < n for b in index_list):
        raise ValueError(f"batch_indices {index_list} fall outside the batch of {n}")
    offset = 0.5 if half_pixel else 0.0
    out = []
    for roi, b in zip(boxes, index_list):
        start_w, start_h, end_w, end_h = (roi * torch.tensor(spatial_scale, dtype=work) - offset).unbind()
        roi_w, roi_h = end_w - start_w, end_h - start_h
        if not half_pixel:  # malformed regions count as 1 x 1
            roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
        bin_h, bin_w = roi_h / output_height, roi_w / output_width
        grid_h = sampling_ratio or int(torch.ceil(bin_h))
        grid_w = sampling_ratio or int(torch.ceil(bin_w))
        rows, wy = _axis_samples(start_h, bin_h, output_height, grid_h, height)
        cols, wx = _axis_samples(start_w, bin_w, output_width, grid_w, width)
        rows, wy, cols, wx = (t.to(x.device) for t in (rows, wy, cols, wx))
        # values and weights of every (bin_y, sample_y, bin_x, sample_x, corner_y, corner_x)
        values = features[b][:, rows[:, :, None, None, :, None], cols[None, None, :, :, None, :]]
        weighted = values * (wy[:, :, None, None, :, None] * wx[None, None, :, :, None, :])
        if mode == "avg":
            pooled = weighted.sum((2, 4, 5, 6)) / max(grid_h * grid_w, 1)
        elif grid_h * grid_w == 0:
            pooled = features.new_zeros(c, output_height, output_width)
        else:
            pooled = weighted.flatten(-2).amax(-1).amax(4).amax(2)
        out.append(pooled)
    if not out:
        return x.new_empty(0, c, output_height, output_width)
    return torch.stack(out).to(x.dtype)


@op("RoiAlign", since=10, infer=_infer_roi_align)
def roi_align_10(x, rois, batch_indices, *, mode: str = "avg", output_height: int = 1, output_width: int = 1,
                 sampling_ratio: int = 0, spatial_scale: float = 1.0):
    return _roi_align(x, rois, batch_indices, mode, output_height, output_width, sampling_ratio, spatial_scale,
                      half_pixel=False)


@op("RoiAlign", since=16, infer=_infer_roi_align)
def roi_align_16(x, rois, batch_indices, *, coordinate_transformation_mode: str = "half_pixel", mode: str = "avg",
                 output_height: int = 1, output_width: int = 1, sampling_ratio: int = 0, spatial_scale: float = 1.0):
    return _roi_align(x, rois, batch_indices, mode, output_height, output_width, sampling_ratio, spatial_scale,
                      half_pixel=coordinate_transformation_mode == "half_pixel")


# -- NonMaxSuppression -------------------------------------------------------------------------

def _corners(boxes: torch.Tensor, center_point_box: int) -> torch.Tensor:
    """Boxes as (x_min, y_min, x_max, y_max), from [y1, x1, y2, x2] (any two corners) or
    [x_center, y_center, width, height]."""
    if center_point_box:
        xc, yc, w, h = boxes.unbind(-1)
        return torch.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], -1)
    y1, x1, y2, x2 = boxes.unbind(-1)
    return torch.stack([torch.minimum(x1, x2), torch.minimum(y1, y2), torch.maximum(x1, x2),
                        torch.maximum(y1, y2)], -1)


def _overlaps(corners: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Whether each pair of boxes has an intersection over union strictly above the threshold."""
    x0, y0, x1, y1 = corners.unbind(-1)
    iw = torch.minimum(x1[:, None], x1[None, :]) - torch.maximum(x0[:, None], x0[None, :])
    ih = torch.minimum(y1[:, None], y1[None, :]) - torch.maximum(y0[:, None], y0[None, :])
    inter = iw * ih
    area = (x1 - x0) * (y1 - y0)
    union = area[:, None] + area[None, :] - inter
    valid = (iw > 0) & (ih > 0) & (area[:, None] > 0) & (area[None, :] > 0) & (union > 0)
    return valid & (inter / union > iou_threshold)


def _nms_dtype(node: Node) -> list[DType]:
    return [DType.int64]


def _infer_nms(node: Node, values) -> list[Inferred]:
    boxes, scores = node.inputs[0], node.inputs[1]
    for t, name in ((boxes, "boxes"), (scores, "scores")):
        if t.dtype not in (DType.float16, DType.bfloat16, DType.float32, DType.float64):
            raise TypeError(f"{name} must be floating-point, got {t.dtype}")
    if boxes.shape is not None and scores.shape is not None:
        _check_nms_shapes(boxes.shape, scores.shape)
    return [Inferred(DType.int64, (None, 3))]


def _check_nms_shapes(boxes: Sequence[int | None], scores: Sequence[int | None]) -> None:
    if len(boxes) != 3 or boxes[2] != 4:
        raise ValueError(f"boxes must be batches x boxes x 4, got shape {list(boxes)}")
    if len(scores) != 3 or scores[0] != boxes[0] or scores[2] != boxes[1]:
        raise ValueError(f"scores must be batches x classes x boxes ({boxes[0]} x C x {boxes[1]}), got shape "
                         f"{list(scores)}")


def _scalar(t: torch.Tensor | None, default: float) -> float:
    return default if t is None or t.numel() == 0 else float(t.reshape(-1)[0])


@op("NonMaxSuppression", since=10, infer=_infer_nms, dtype_rule=_nms_dtype)
def non_max_suppression(boxes, scores, max_output_boxes_per_class=None, iou_threshold=None, score_threshold=None, *,
                        center_point_box: int = 0):
    """[batch, class, box] of the boxes kept, per batch and class in order of falling score (ties: lower index)."""
    _check_nms_shapes(boxes.shape, scores.shape)
    if center_point_box not in (0, 1):
        raise ValueError(f"center_point_box must be 0 or 1, got {center_point_box}")
    limit = max(int(_scalar(max_output_boxes_per_class, 0)), 0)
    work = torch.promote_types(boxes.dtype, torch.float32)
    iou = torch.tensor(_scalar(iou_threshold, 0.0), dtype=work)
    threshold = None if score_threshold is None else torch.tensor(_scalar(score_threshold, 0.0), dtype=scores.dtype)
    corners = _corners(boxes.to(work).cpu(), center_point_box)
    selected: list[tuple[int, int, int]] = []
    for b in range(boxes.shape[0] if limit else 0):
        for c in range(scores.shape[1]):
            class_scores = scores[b, c].cpu()
            order = torch.argsort(class_scores, descending=True, stable=True)
            if threshold is not None:
                order = order[class_scores[order] > threshold]
            over = _overlaps(corners[b][order], float(iou)).tolist()
            kept: list[int] = []
            for i in range(len(order)):
                if not any(over[i][k] for k in kept):
                    kept.append(i)
                    if len(kept) == limit:
                        break
            selected += [(b, c, int(order[i])) for i in kept]
    return torch.tensor(selected, dtype=torch.int64, device=boxes.device).reshape(-1, 3)


OPS = [roi_align_10, roi_align_16, non_max_suppression]
