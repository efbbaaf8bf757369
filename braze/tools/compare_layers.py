"""`braze compare --per-layer`: every fused layer's outputs against onnxruntime's values of the same ONNX tensors.

No fusion is undone. A layer's output keeps the name of the last ONNX tensor it computes (a `conv1 + relu1`
layer writes `relu1`'s output tensor), so each braze tensor maps back to an ONNX name: its own, or, for the
copies precision lowering makes (`y_float16`, `x_float32`, `y_float16_1`), the name they were made from.
Tensors braze made itself (a horizontal fusion's wide output) map to nothing and are left out. onnxruntime's
values come from a copy of the model with those tensors added as graph outputs (typed by ONNX shape
inference); braze's from `ExecutionContext.run_layers`. A value beyond the finite range of the type braze holds
the tensor in (float16) counts as that type's largest finite value, as precision lowering makes it.

**The first layer whose error jumps** is the first layer, in execution order, with an output out of tolerance (as
`braze compare` judges outputs) whose error (the largest rel-L2 of its compared outputs; infinite where NaN/inf or
the shape differ) is over `JUMP` times the error it was handed: the running maximum of the errors of every
compared tensor upstream of its inputs (a tensor left out passes its inputs' on). Error that grows slowly until
it crosses the bound is no jump: the first layer out of tolerance is reported beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import onnx
import torch

from ..engine import Engine
from ..testing import Tolerance
from .compare_metrics import Diff, diff
from .inspect import layer_label

JUMP = 10.0
"""A layer's error jumps where it is out of tolerance and over JUMP times the error it was handed."""

_LOWERED = re.compile(r"^(.*)_(float16|bfloat16|float32)(_\d+)?$")


@dataclass
class TensorResult:
    name: str  # the braze tensor
    onnx_name: str | None  # the ONNX tensor it is compared with; None: braze's own
    diff: Diff | None = None
    note: str | None = None  # why it is not compared, if it is not


@dataclass
class LayerResult:
    index: int
    layer: str  # the engine's layer name
    label: str  # the source nodes it stands for, joined with ' + '
    op: str
    tactic: str
    tensors: list[TensorResult] = field(default_factory=list)
    error: float | None = None  # the largest error of its compared outputs; None: nothing compared
    handed: float = 0.0  # the running maximum of the errors upstream of its inputs
    out_of_tolerance: bool = False  # an output fails as `braze compare` judges outputs
    jump: bool = False  # out of tolerance, and its error is over JUMP times the error handed


def source_name(name: str, known: set[str]) -> str | None:
    """The ONNX tensor a braze tensor stands for: its own name, or the one a lowering copy was made from."""
    while name not in known:
        match = _LOWERED.match(name)
        if match is None:
            return None
        name = match.group(1)
    return name


def onnx_tensor_names(model: onnx.ModelProto) -> tuple[set[str], set[str]]:
    """The top-level graph's input names and node output names."""
    g = model.graph
    return {i.name for i in g.input}, {o for n in g.node for o in n.output if o}


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` that also outputs `names` (node outputs), each typed where ONNX shape inference can."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info
                 if v.type.HasField("tensor_type")}
    except Exception:  # NOTE: ONNX's inference refuses some valid models; untyped outputs are typed by onnxruntime
        types = {}
    present = {o.name for o in copy.graph.output}
    for name in names:
        if name not in present:
            info = (onnx.helper.make_tensor_value_info(name, types[name], None) if types.get(name)
                    else onnx.ValueInfoProto(name=name))
            copy.graph.output.append(info)
    return copy


def wanted_names(engine: Engine, model: onnx.ModelProto) -> list[str]:
    """The ONNX node outputs the engine's layer outputs map to (what onnxruntime has to output)."""
    inputs, made = onnx_tensor_names(model)
    found = {source_name(t.name, inputs | made) for n in engine.graph.nodes for t in n.outputs}
    return sorted(n for n in found if n in made)


class LayerRecorder:
    """The observer of `ExecutionContext.run_layers`: compares each layer's outputs as it runs (nothing is kept),
    against `reference` (ONNX tensor name -> onnxruntime's value, graph inputs included)."""

    def __init__(self, engine: Engine, reference: Mapping[str, Any], known: set[str], tol: Tolerance):
        self.reference = reference
        self.known = known
        self.tol = tol
        self.steps = {step.node.name: (i, step) for i, step in enumerate(engine.steps)}
        self.layers: list[LayerResult] = []
        self._handed: dict[str, float] = {}  # braze tensor name -> the running maximum up to it

    def __call__(self, layer: str, names: list[str], outputs: list[Any]) -> None:
        index, step = self.steps[layer]
        node = step.node
        result = LayerResult(index, layer, layer_label(node.origin, node.name), node.op, step.tactic)
        result.handed = max((self._handed.get(t.name, 0.0) for t in node.inputs if t is not None and not t.is_constant),
                            default=0.0)
        diffs = []
        for name, value in zip(names, outputs):
            tensor = self._compare(name, value)
            result.tensors.append(tensor)
            if tensor.diff is not None:
                diffs.append(tensor.diff)
        if diffs:
            result.error = max(d.error for d in diffs)
            result.out_of_tolerance = not all(d.passed for d in diffs)
            result.jump = result.out_of_tolerance and result.error > JUMP * result.handed
        reach = max(result.handed, result.error or 0.0)
        for name in names:
            self._handed[name] = reach
        self.layers.append(result)

    def _compare(self, name: str, value: Any) -> TensorResult:
        onnx_name = source_name(name, self.known)
        if onnx_name is None:
            return TensorResult(name, None, note="made by braze: no ONNX tensor")
        expected = self.reference.get(onnx_name)
        if value is None or isinstance(value, list) or expected is None or isinstance(expected, list):
            return TensorResult(name, onnx_name, note="not a tensor on both sides")
        return TensorResult(name, onnx_name, diff(value, _representable(np.asarray(expected), value), self.tol))


def first_jump(layers: list[LayerResult]) -> LayerResult | None:
    return next((layer for layer in layers if layer.jump), None)


def first_out_of_tolerance(layers: list[LayerResult]) -> LayerResult | None:
    return next((layer for layer in layers if layer.out_of_tolerance), None)


def _representable(expected: np.ndarray, value: Any) -> np.ndarray:
    """`expected` with its finite values clamped to the finite range of the float type braze holds the tensor in, as
    precision lowering clamps constants (a float32 mask of -3.4e38 is -65504 in float16): a layer is not blamed
    for what its type cannot hold."""
    dtype = getattr(value, "dtype", None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or expected.dtype.kind != "f" \
            or torch.finfo(dtype).max >= np.finfo(expected.dtype).max:
        return expected
    info = torch.finfo(dtype)
    return np.where(np.isfinite(expected), np.clip(expected, info.min, info.max), expected)
