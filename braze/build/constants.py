"""Inputs fixed at build time (`BuilderConfig(constants={"sr": 16000})`, `braze build --constant sr=16000`).

Such an input becomes a constant of the graph and leaves the engine's inputs, so shape inference and
constant folding see its value: an If on it takes one branch (and a branch that cannot take the given
shapes is never looked at), shape arithmetic on it folds.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import ShapeError
from ..ir import Graph, format_shape, to_torch


def bind_constants(graph: Graph, constants: Mapping[str, Any]) -> None:
    """Make each named graph input a constant of the given value (a number or nested lists of them), in the
    input's dtype, of the shape the model declares for it."""
    inputs = {t.name: t for t in graph.inputs}
    unknown = [n for n in constants if n not in inputs]
    if unknown:
        raise ShapeError(f"constants given for {', '.join(map(repr, unknown))}, which the model does not have as "
                         f"inputs; its inputs are {', '.join(map(repr, inputs)) or 'none'}")
    for name, given in constants.items():
        t = inputs[name]
        if not t.is_tensor or t.dtype is None or t.dtype.emulated or t.dtype.torch.is_complex:
            raise ShapeError(f"input {name!r} ({t.type_str()}) cannot be fixed to a constant: braze fixes tensors "
                             "of real or integer types")
        try:
            raw = np.asarray(given)
            value = raw.astype(t.dtype.numpy)
        except (TypeError, ValueError, OverflowError) as e:
            raise ShapeError(f"constant for input {name!r}: {given!r} is not a {t.dtype} value ({e})") from None
        if raw.dtype.kind not in "biuf" or (not t.dtype.is_floating and not np.array_equal(value, raw)):
            raise ShapeError(f"constant for input {name!r}: {given!r} is not a {t.dtype} value")
        if t.shape is not None and all(isinstance(d, int) and d > 0 for d in t.shape) \
                and value.size == np.prod(t.shape, dtype=np.int64):
            value = value.reshape(t.shape)  # `--constant scales=1,1,2,2` for a [1,4] input
        if t.shape is not None and (len(t.shape) != value.ndim or any(
                isinstance(d, int) and d > 0 and d != g for d, g in zip(t.shape, value.shape))):
            raise ShapeError(f"input {name!r} is {format_shape(t.shape)} in the model; the constant given for it "
                             f"has shape {format_shape(value.shape)}")
        t.value, t.shape = to_torch(value), tuple(value.shape)
    graph.inputs = [t for t in graph.inputs if t.name not in constants]
