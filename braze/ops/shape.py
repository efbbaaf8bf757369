"""Shape and layout ops: views and copies that move elements without computing on them.

Reshape, Flatten, Squeeze/Unsqueeze, Transpose, Concat, Split, Slice, Expand, Tile, the shape
queries Shape and Size, Identity and inference-mode Dropout, DepthToSpace/SpaceToDepth, Trilu
and CenterCropPad. Inputs that carry shapes, axes or slice bounds are value inputs: their data is
read (as Python ints) both at build time, for shape inference, and when the layer runs.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import UnsupportedError
from ..ir import DType, Node
from .infer import Inferred
from .opdef import op


def int_list(t: torch.Tensor) -> list[int]:
    """The values of a (real, CPU-readable) shape-like tensor as Python ints."""
    return [int(v) for v in t.reshape(-1).tolist()]


def axis_index(axis: int, rank: int) -> int:
    """`axis` in [-rank, rank) made non-negative; ValueError otherwise."""
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for a tensor of rank {rank}")
    return axis % rank


def axis_set(axes: Sequence[int], rank: int) -> list[int]:
    """Distinct axes, each made non-negative, in the order given."""
    found = [axis_index(a, rank) for a in axes]
    if len(set(found)) != len(found):
        raise ValueError(f"axes {list(axes)} name the same axis twice")
    return found


@op("Flatten", view=True, commutes_with_quantize=True)
def flatten(x, *, axis: int = 1):
    if not -x.dim() <= axis <= x.dim():
        raise ValueError(f"axis {axis} is out of range [{-x.dim()}, {x.dim()}]")
    axis = axis + x.dim() if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _reshape(x: torch.Tensor, shape: torch.Tensor, allowzero: int) -> torch.Tensor:
    dims = int_list(shape)
    if dims.count(-1) > 1:
        raise ValueError(f"shape {dims} has more than one -1")
    if any(d < -1 for d in dims):
        raise ValueError(f"shape {dims} has a negative dim other than -1")
    if allowzero and 0 in dims and -1 in dims:
        raise ValueError(f"shape {dims} has both 0 and -1, which allowzero=1 does not allow")
    if not allowzero:
        if any(d == 0 and i >= x.dim() for i, d in enumerate(dims)):
            raise ValueError(f"shape {dims} copies a dim (0) past the input's rank {x.dim()}")
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or x.numel() % known:
            raise ValueError(f"cannot reshape {list(x.shape)} to {dims}: -1 cannot be resolved")
        dims[dims.index(-1)] = x.numel() // known
    if math.prod(dims) != x.numel():
        raise ValueError(f"cannot reshape {list(x.shape)} ({x.numel()} elements) to {dims}")
    return x.reshape(dims)


@op("Reshape", since=5, value_inputs=(1,), view=True, commutes_with_quantize=True)
def reshape_5(x, shape):
    return _reshape(x, shape, 0)


@op("Reshape", since=14, value_inputs=(1,), view=True, commutes_with_quantize=True)
def reshape_14(x, shape, *, allowzero: int = 0):
    return _reshape(x, shape, allowzero)


@op("Transpose", view=True, commutes_with_quantize=True)
def transpose(x, *, perm: list[int] | None = None):
    if perm is None:
        return x.permute(tuple(reversed(range(x.dim()))))
    if sorted(perm) != list(range(x.dim())):
        raise ValueError(f"perm {perm} is not a permutation of the {x.dim()} axes")
    return x.permute(perm)


@op("Concat", since=4, commutes_with_quantize=True)
def concat(*xs, axis: int):
    first = xs[0]
    if any(t.dtype != first.dtype for t in xs) or any(t.dim() != first.dim() for t in xs):
        raise ValueError(f"inputs differ in dtype or rank: {[f'{t.dtype}{list(t.shape)}' for t in xs]}")
    if first.dim() == 0:
        raise ValueError("scalars cannot be concatenated")
    axis = axis_index(axis, first.dim())
    for t in xs:
        if t.shape[:axis] != first.shape[:axis] or t.shape[axis + 1:] != first.shape[axis + 1:]:
            raise ValueError(f"shapes {[list(t.shape) for t in xs]} differ off axis {axis}")
    return torch.cat(xs, dim=axis)


def _split(x: torch.Tensor, sizes: list[int] | None, axis: int, n: int, num_outputs: int | None = None):
    axis = axis_index(axis, x.dim())
    dim = x.shape[axis]
    if sizes is None:
        if num_outputs is not None:
            if num_outputs != n:
                raise ValueError(f"num_outputs is {num_outputs} but the node has {n} outputs")
            chunk = -(-dim // n)
            sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
        elif dim % n:
            raise ValueError(f"dim {axis} of size {dim} does not split into {n} equal parts")
        else:
            sizes = [dim // n] * n
    if len(sizes) != n:
        raise ValueError(f"split {sizes} gives {len(sizes)} parts but the node has {n} outputs")
    if any(s < 0 for s in sizes) or sum(sizes) != dim:
        raise ValueError(f"split {sizes} does not add up to dim {axis} of size {dim}")
    return tuple(torch.split(x, sizes, dim=axis))


@op("Split", since=2, view=True)
def split_2(x, *, axis: int = 0, split: list[int] | None = None, _outputs: int):
    return _split(x, split, axis, _outputs)


@op("Split", since=13, value_inputs=(1,), view=True)
def split_13(x, split=None, *, axis: int = 0, _outputs: int):
    return _split(x, None if split is None else int_list(split), axis, _outputs)


@op("Split", since=18, value_inputs=(1,), view=True)
def split_18(x, split=None, *, axis: int = 0, num_outputs: int | None = None, _outputs: int):
    if split is not None and num_outputs is not None:
        raise ValueError("give either the split input or the num_outputs attribute, not both")
    return _split(x, None if split is None else int_list(split), axis, _outputs, num_outputs)


@op("Slice", since=10, value_inputs=(1, 2, 3, 4), commutes_with_quantize=True)
def slice_10(x, starts, ends, axes=None, steps=None):
    starts, ends = int_list(starts), int_list(ends)
    n = len(starts)
    axes = list(range(n)) if axes is None else int_list(axes)
    steps = [1] * n if steps is None else int_list(steps)
    if not len(ends) == len(axes) == len(steps) == n:
        raise ValueError(f"starts, ends, axes and steps differ in length: {n}, {len(ends)}, {len(axes)}, {len(steps)}")
    for axis, start, end, step in zip(axis_set(axes, x.dim()), starts, ends, steps):
        if step == 0:
            raise ValueError(f"the step of axis {axis} is 0")
        lo, hi, step = slice(start, end, step).indices(x.shape[axis])
        count = len(range(lo, hi, step))
        if step > 0:
            x = x.narrow(axis, lo, 0) if count == 0 else x[(slice(None),) * axis + (slice(lo, hi, step),)]
        elif count == 0:
            x = x.narrow(axis, 0, 0)
        else:
            last = lo + (count - 1) * step
            x = x.narrow(axis, last, lo - last + 1).flip(axis)[(slice(None),) * axis + (slice(None, None, -step),)]
    return x


def _squeeze(x: torch.Tensor, axes: list[int] | None) -> torch.Tensor:
    if axes is None:
        return x.reshape([d for d in x.shape if d != 1])
    axes = axis_set(axes, x.dim())
    wide = [a for a in axes if x.shape[a] != 1]
    if wide:
        raise ValueError(f"cannot squeeze axis {wide[0]} of size {x.shape[wide[0]]} (shape {list(x.shape)})")
    return x.reshape([d for i, d in enumerate(x.shape) if i not in axes])


@op("Squeeze", view=True, commutes_with_quantize=True)
def squeeze_1(x, *, axes: list[int] | None = None):
    return _squeeze(x, axes)


@op("Squeeze", since=13, value_inputs=(1,), view=True, commutes_with_quantize=True)
def squeeze_13(x, axes=None):
    return _squeeze(x, None if axes is None else int_list(axes))


def _unsqueeze(x: torch.Tensor, axes: list[int]) -> torch.Tensor:
    rank = x.dim() + len(axes)
    new = set(axis_set(axes, rank))
    dims = iter(x.shape)
    return x.reshape([1 if i in new else next(dims) for i in range(rank)])


@op("Unsqueeze", view=True, commutes_with_quantize=True)
def unsqueeze_1(x, *, axes: list[int]):
    return _unsqueeze(x, axes)


@op("Unsqueeze", since=13, value_inputs=(1,), view=True, commutes_with_quantize=True)
def unsqueeze_13(x, axes):
    return _unsqueeze(x, int_list(axes))


def _shape_bounds(rank: int, start: int, end: int | None) -> tuple[int, int]:
    def clamp(i: int) -> int:
        return min(max(i + rank if i < 0 else i, 0), rank)

    return clamp(start), rank if end is None else clamp(end)


def _infer_shape(node: Node, values) -> list[Inferred]:
    x = node.inputs[0]
    if x.shape is None:
        return [Inferred(DType.int64, (None,))]
    lo, hi = _shape_bounds(len(x.shape), node.attrs.get("start", 0), node.attrs.get("end"))
    dims = x.shape[lo:hi]
    known = all(isinstance(d, int) for d in dims)
    return [Inferred(DType.int64, (len(dims),), torch.tensor(dims, dtype=torch.int64) if known else None)]


@op("Shape", infer=_infer_shape)
def shape_1(x):
    return torch.tensor(x.shape, dtype=torch.int64, device=x.device)


@op("Shape", since=15, infer=_infer_shape)
def shape_15(x, *, start: int = 0, end: int | None = None):
    lo, hi = _shape_bounds(x.dim(), start, end)
    return torch.tensor(x.shape[lo:hi], dtype=torch.int64, device=x.device)


def _infer_size(node: Node, values) -> list[Inferred]:
    x = node.inputs[0]
    known = x.is_static
    return [Inferred(DType.int64, (), torch.tensor(x.numel, dtype=torch.int64) if known else None)]


@op("Size", infer=_infer_size)
def size(x):
    return torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


@op("Expand", since=8, value_inputs=(1,))
def expand(x, shape):
    dims = int_list(shape)
    try:
        out = torch.broadcast_shapes(tuple(x.shape), tuple(dims))
    except RuntimeError:
        raise ValueError(f"input shape {list(x.shape)} does not broadcast with {dims}") from None
    return x.expand(out)


@op("Tile", since=6, value_inputs=(1,))
def tile(x, repeats):
    reps = int_list(repeats)
    if len(reps) != x.dim() or any(r < 0 for r in reps):
        raise ValueError(f"repeats {reps} must be {x.dim()} non-negative counts, one per axis")
    return x.repeat(reps) if reps else x


def _infer_identity(node: Node, values) -> list[Inferred]:
    """Any value passes through: a tensor (its known value too), a sequence or an optional."""
    x = node.inputs[0]
    return [Inferred(x.dtype, x.shape, values[0], x.kind)]  # type: ignore[arg-type,union-attr]


@op("Identity", infer=_infer_identity, view=True, commutes_with_quantize=True)
def identity(x):
    return (x,)  # NOTE: a tuple, so that a sequence (a list) stays one output


@op("Dropout", since=10)
def dropout_10(x, *, ratio: float = 0.5):
    return x, torch.ones_like(x, dtype=torch.bool)


def _training(ratio: torch.Tensor | None, training_mode: torch.Tensor | None) -> bool:
    """Whether dropout would change its input: training mode with a non-zero ratio."""
    if training_mode is None or not bool(training_mode.reshape(())):
        return False
    return ratio is None or float(ratio.reshape(())) != 0.0


_TRAINING = ("training-mode dropout (training_mode=true with a non-zero ratio) is random and braze "
             "runs inference only; export the model in eval mode or set training_mode to false")


def _infer_dropout(node: Node, values) -> list[Inferred]:
    x = node.inputs[0]
    ratio, training = (list(values[1:3]) + [None, None])[:2]
    if training is not None and (ratio is not None or node.input(1) is None) and _training(ratio, training):
        raise UnsupportedError(f"node {node.name!r} (Dropout): {_TRAINING}")
    return [Inferred(x.dtype, x.shape, values[0]), Inferred(DType.bool, x.shape)]


@op("Dropout", since=12, infer=_infer_dropout)
def dropout_12(x, ratio=None, training_mode=None, *, seed: int | None = None):
    if _training(ratio, training_mode):
        raise UnsupportedError(_TRAINING)
    return x, torch.ones_like(x, dtype=torch.bool)


def _check_blocks(x: torch.Tensor, blocksize: int, mode: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"the input must be 4-D (N, C, H, W), got shape {list(x.shape)}")
    if blocksize < 1:
        raise ValueError(f"blocksize must be positive, got {blocksize}")
    if mode not in ("DCR", "CRD"):
        raise ValueError(f"mode must be 'DCR' or 'CRD', got {mode!r}")


@op("DepthToSpace")
def depth_to_space(x, *, blocksize: int, mode: str = "DCR"):
    _check_blocks(x, blocksize, mode)
    n, c, h, w = x.shape
    b = blocksize
    if c % (b * b):
        raise ValueError(f"channels ({c}) are not a multiple of blocksize² ({b * b})")
    if mode == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (b * b), h * b, w * b)


@op("SpaceToDepth")
def space_to_depth_1(x, *, blocksize: int):
    return _space_to_depth(x, blocksize, "DCR")


@op("SpaceToDepth", since=28)
def space_to_depth_28(x, *, blocksize: int, mode: str = "DCR"):
    return _space_to_depth(x, blocksize, mode)


def _space_to_depth(x: torch.Tensor, blocksize: int, mode: str) -> torch.Tensor:
    _check_blocks(x, blocksize, mode)
    n, c, h, w = x.shape
    b = blocksize
    if h % b or w % b:
        raise ValueError(f"height and width ({h}, {w}) are not multiples of blocksize {b}")
    y = x.reshape(n, c, h // b, b, w // b, b)
    y = y.permute(0, 3, 5, 1, 2, 4) if mode == "DCR" else y.permute(0, 1, 3, 5, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


@op("Trilu", since=14)
def trilu(x, k=None, *, upper: int = 1):
    if x.dim() < 2:
        raise ValueError(f"the input must have rank >= 2, got shape {list(x.shape)}")
    rows = torch.arange(x.shape[-2], device=x.device).unsqueeze(-1)
    cols = torch.arange(x.shape[-1], device=x.device)
    diagonal = torch.zeros((), dtype=torch.int64, device=x.device) if k is None else k.reshape(()).to(torch.int64)
    keep = (cols - rows >= diagonal) if upper else (cols - rows <= diagonal)
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


@op("CenterCropPad", since=18, value_inputs=(1,))
def center_crop_pad(x, shape, *, axes: list[int] | None = None):
    axes = list(range(x.dim())) if axes is None else axis_set(axes, x.dim())
    target = int_list(shape)
    if len(target) != len(axes) or any(t < 0 for t in target):
        raise ValueError(f"shape {target} must give one non-negative size for each of the axes {axes}")
    out_shape = list(x.shape)
    src = [slice(None)] * x.dim()
    dst = [slice(None)] * x.dim()
    for axis, size in zip(axes, target):
        dim = x.shape[axis]
        if size < dim:
            start = (dim - size) // 2
            src[axis] = slice(start, start + size)
        elif size > dim:
            start = (size - dim) // 2
            dst[axis] = slice(start, start + dim)
        out_shape[axis] = size
    out = x.new_zeros(out_shape)
    out[tuple(dst)] = x[tuple(src)]
    return out


OPS = [
    flatten, reshape_5, reshape_14, transpose, concat, split_2, split_13, split_18, slice_10,
    squeeze_1, squeeze_13, unsqueeze_1, unsqueeze_13, shape_1, shape_15, size, expand, tile,
    identity, dropout_10, dropout_12, depth_to_space, space_to_depth_1,
    space_to_depth_28, trilu, center_crop_pad,
]
