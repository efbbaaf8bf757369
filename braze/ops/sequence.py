"""Sequences and optionals: SequenceConstruct/Empty/Insert/Erase/At/Length, SplitToSequence,
ConcatFromSequence, SequenceMap, Optional, OptionalHasElement, OptionalGetElement.

At run time a sequence is a Python list of tensors and an optional its element or None. Lists are
never changed in place: every op builds a new one. NOTE: a tensor put into a sequence or an
optional is copied, so that it never aliases memory the engine plans (an arena view is reused as
soon as its tensor's last reader ran, and a sequence can outlive that).

Shape inference types a sequence by its tensors' dtype and the shape they share (a dim that
differs is unknown); how many tensors it holds is never known at build time.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import ShapeError
from ..ir import OPTIONAL_SEQUENCE, OPTIONAL_TENSOR, SEQUENCE, TENSOR, DType, Graph, Node, Tensor
from .cast import onnx_dtype
from .infer import Inferred, describe_node
from .opdef import op
from .shape import axis_index
from .subgraph import (OPTIONAL_OF, as_sequence, bind_outer, element, infer_body, merge, n_own_inputs, run_body,
                       split_args)

_ELEMENT = {optional: kind for kind, optional in OPTIONAL_OF.items()}


def _expect(node: Node, t: Tensor | None, kinds: Sequence[str], what: str) -> Tensor:
    if t is None or t.kind not in kinds:
        got = "nothing" if t is None else f"a {t.kind.replace('_', ' ')}"
        wanted = " or ".join(k.replace("_", " ") for k in kinds)
        raise ShapeError(f"{describe_node(node)}: its {what} must be a {wanted}, it is {got}")
    return t


def _position(position: torch.Tensor | None, size: int, default: int, end: int) -> int:
    """A position in [-size, size + end) as an index; `default` when none is given."""
    if position is None:
        return default
    if position.numel() != 1 or position.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"the position must be one int32/int64 value, got {position.dtype} {list(position.shape)}")
    p = int(position.reshape(()))
    if not -size <= p < size + end:
        raise ValueError(f"position {p} is out of range for a sequence of {size} tensors")
    return p + size if p < 0 else p


def _check_dtype(seq: list[torch.Tensor], x: torch.Tensor) -> None:
    if seq and seq[0].dtype != x.dtype:
        raise ValueError(f"a {x.dtype} tensor cannot join a sequence of {seq[0].dtype}")


# -- building and reading sequences ----------------------------------------------------------------

def _infer_construct(node: Node, values) -> list[Inferred]:
    types = [Inferred.of(_expect(node, t, [TENSOR], f"input {i}")) for i, t in enumerate(node.inputs)]
    shape = types[0]
    for i, t in enumerate(types[1:], 1):
        shape = merge(shape, t, f"{describe_node(node)}: input {i} and input 0")
    return [as_sequence(shape)]


@op("SequenceConstruct", since=11, infer=_infer_construct)
def sequence_construct(*xs):
    for x in xs[1:]:
        _check_dtype(list(xs), x)
    return ([x.clone() for x in xs],)


def _infer_empty(node: Node, values) -> list[Inferred]:
    return [Inferred(onnx_dtype(node.attrs["dtype"], describe_node(node)), None, kind=SEQUENCE)]


@op("SequenceEmpty", since=11, infer=_infer_empty)
def sequence_empty(*, dtype: int = 1):
    return ([],)


def _infer_insert(node: Node, values) -> list[Inferred]:
    seq = Inferred.of(_expect(node, node.inputs[0], [SEQUENCE], "input sequence"))
    x = Inferred.of(_expect(node, node.inputs[1], [TENSOR], "tensor"))
    return [as_sequence(merge(element(seq), x, f"{describe_node(node)}: the sequence's tensors and the one inserted"))]


@op("SequenceInsert", since=11, infer=_infer_insert)
def sequence_insert(seq, x, position=None):
    _check_dtype(seq, x)
    at = _position(position, len(seq), len(seq), 1)
    return (seq[:at] + [x.clone()] + seq[at:],)


def _infer_erase(node: Node, values) -> list[Inferred]:
    return [Inferred.of(_expect(node, node.inputs[0], [SEQUENCE], "input sequence"))]


@op("SequenceErase", since=11, infer=_infer_erase)
def sequence_erase(seq, position=None):
    if not seq:
        raise ValueError("cannot erase from an empty sequence")
    at = _position(position, len(seq), len(seq) - 1, 0)
    return (seq[:at] + seq[at + 1:],)


def _infer_at(node: Node, values) -> list[Inferred]:
    return [element(Inferred.of(_expect(node, node.inputs[0], [SEQUENCE], "input sequence")))]


@op("SequenceAt", since=11, infer=_infer_at)
def sequence_at(seq, position):
    return seq[_position(position, len(seq), 0, 0)]


def _infer_length(node: Node, values) -> list[Inferred]:
    _expect(node, node.inputs[0], [SEQUENCE], "input sequence")
    return [Inferred(DType.int64, ())]


@op("SequenceLength", since=11, infer=_infer_length)
def sequence_length(seq):
    return torch.tensor(len(seq), dtype=torch.int64)


# -- tensors to sequences and back ------------------------------------------------------------------

def _infer_split(node: Node, values) -> list[Inferred]:
    x = Inferred.of(_expect(node, node.inputs[0], [TENSOR], "input"))
    if x.shape is None:
        return [as_sequence(x)]
    axis = axis_index(node.attrs["axis"], len(x.shape))
    split = values[1] if len(values) > 1 else None
    if node.input(1) is None:
        dims = list(x.shape)
        if node.attrs["keepdims"]:
            dims[axis] = 1
        else:
            del dims[axis]
        return [Inferred(x.dtype, tuple(dims), kind=SEQUENCE)]
    size = None
    if split is not None and split.numel() and bool((split == split.reshape(-1)[0]).all()):
        size = int(split.reshape(-1)[0])
        if split.dim() == 0 and (not isinstance(x.shape[axis], int) or x.shape[axis] % max(size, 1)):
            size = None
    return [Inferred(x.dtype, (*x.shape[:axis], size, *x.shape[axis + 1:]), kind=SEQUENCE)]


@op("SplitToSequence", since=11, infer=_infer_split)
def split_to_sequence(x, split=None, *, axis: int = 0, keepdims: int = 1):
    axis = axis_index(axis, x.dim())
    dim = x.shape[axis]
    if split is None:
        parts = [p.clone() for p in torch.split(x, 1, dim=axis)]
        return ([p.squeeze(axis) for p in parts] if not keepdims else parts,)
    if split.dtype not in (torch.int32, torch.int64) or split.dim() > 1:
        raise ValueError(f"split must be an int32/int64 scalar or 1-D tensor, got {split.dtype} {list(split.shape)}")
    if split.dim() == 0:
        size = int(split)
        if size <= 0:
            raise ValueError(f"split {size} must be positive")
        sizes = [size] * (dim // size) + ([dim % size] if dim % size else [])
    else:
        sizes = [int(s) for s in split]
        if any(s < 0 for s in sizes) or sum(sizes) != dim:
            raise ValueError(f"split {sizes} does not add up to dim {axis} of size {dim}")
    return ([p.clone() for p in torch.split(x, sizes, dim=axis)],)


def _infer_concat(node: Node, values) -> list[Inferred]:
    seq = Inferred.of(_expect(node, node.inputs[0], [SEQUENCE], "input sequence"))
    if seq.shape is None:
        return [Inferred(seq.dtype, None)]
    dims: list[Any] = list(seq.shape)
    new_axis = bool(node.attrs["new_axis"])
    axis = axis_index(node.attrs["axis"], len(dims) + new_axis)
    if new_axis:
        dims.insert(axis, None)
    else:
        dims[axis] = None
    return [Inferred(seq.dtype, tuple(dims))]


@op("ConcatFromSequence", since=11, infer=_infer_concat)
def concat_from_sequence(seq, *, axis: int, new_axis: int = 0):
    if not seq:
        raise ValueError("cannot concatenate an empty sequence")
    if new_axis:
        return torch.stack(seq, dim=axis_index(axis, seq[0].dim() + 1))
    axis = axis_index(axis, seq[0].dim())
    if any(x.shape[:axis] != seq[0].shape[:axis] or x.shape[axis + 1:] != seq[0].shape[axis + 1:] for x in seq):
        raise ValueError(f"shapes {[list(x.shape) for x in seq]} differ off axis {axis}")
    return torch.cat(seq, dim=axis)


# -- SequenceMap -------------------------------------------------------------------------------------

def _infer_map(node: Node, values) -> list[Inferred]:
    values, known = bind_outer(node, values)
    body: Graph = node.attrs["body"]
    own = node.inputs[:n_own_inputs(node)]
    _expect(node, own[0], [SEQUENCE], "input sequence")
    types = [Inferred.of(_expect(node, t, [TENSOR, SEQUENCE], f"input {i}")) for i, t in enumerate(own)]
    outs = infer_body(node, body, [element(t) if t.kind == SEQUENCE else t for t in types], known, "body")
    for i, t in enumerate(outs):
        if t.kind != TENSOR:
            raise ShapeError(f"{describe_node(node)}: output {i} of its body is a {t.kind.replace('_', ' ')}; "
                             "braze maps to sequences of tensors only")
    return [as_sequence(t) for t in outs]


@op("SequenceMap", since=17, infer=_infer_map, outer_inputs=True)
def sequence_map(seq, *rest, body: Graph):
    own, env = split_args((seq, *rest), len(body.inputs), [body])
    lengths = {len(x) for x in own if isinstance(x, list)}
    if len(lengths) != 1:
        raise ValueError(f"the input sequences differ in length: {sorted(lengths)}")
    results: list[list[torch.Tensor]] = [[] for _ in body.outputs]
    for i in range(lengths.pop()):
        outs = run_body(body, [x[i] if isinstance(x, list) else x for x in own], env, "body")
        for acc, out in zip(results, outs):
            acc.append(out.clone())
    return tuple(results)


# -- optionals ---------------------------------------------------------------------------------------

def _infer_optional(node: Node, values) -> list[Inferred]:
    x = node.input(0)
    if x is not None:
        t = Inferred.of(_expect(node, x, [TENSOR, SEQUENCE], "input"))
        return [Inferred(t.dtype, t.shape, kind=OPTIONAL_OF[t.kind])]
    kind, _, dtype = (node.attrs["type"] or "").partition(":")
    if kind not in OPTIONAL_OF or dtype not in DType.__members__:
        raise ShapeError(f"{describe_node(node)}: an Optional with no input needs a 'type' attribute of a tensor or "
                         f"a sequence of tensors with an element type, it has {node.attrs['type']!r}")
    return [Inferred(DType(dtype), None, kind=OPTIONAL_OF[kind])]


@op("Optional", since=15, infer=_infer_optional)
def optional(x=None, *, type: str | None = None):
    if x is None:
        return (None,)
    return (list(x) if isinstance(x, list) else x.clone(),)


def _infer_has(node: Node, values) -> list[Inferred]:
    x = node.input(0)
    if x is None:
        return [Inferred(DType.bool, (), torch.tensor(False))]
    if x.kind in (TENSOR, SEQUENCE):
        return [Inferred(DType.bool, (), torch.tensor(True))]
    return [Inferred(DType.bool, ())]


@op("OptionalHasElement", since=15, infer=_infer_has)
def optional_has_element(x=None):
    return torch.tensor(x is not None)


def _infer_get(node: Node, values) -> list[Inferred]:
    x = Inferred.of(_expect(node, node.input(0), [OPTIONAL_TENSOR, OPTIONAL_SEQUENCE, TENSOR, SEQUENCE], "input"))
    return [Inferred(x.dtype, x.shape, kind=_ELEMENT.get(x.kind, x.kind))]


@op("OptionalGetElement", since=15, infer=_infer_get)
def optional_get_element(x=None):
    if x is None:
        raise ValueError("the optional input is empty")
    return (x,)


OPS = [sequence_construct, sequence_empty, sequence_insert, sequence_erase, sequence_at, sequence_length,
       split_to_sequence, concat_from_sequence, sequence_map, optional, optional_has_element, optional_get_element]
