"""Small graphs for the optimizer's tests, and the check every fusion test makes.

    net = Net()
    x = net.input("x", [2, 8])
    y = net.op("Relu", net.op("MatMul", x, net.weight(8, 4)))
    engine = check(net.model(y), fired={"matmul_activation": 1}, ops=["FusedGemm"])

`check` builds the model at the default optimization level and at level 0, runs both and
onnxruntime on the same random inputs, asserts all three agree within braze's float32 tolerance,
and asserts the rules that fired (a count of 0 means "must not fire") and the layers left.
"""

from __future__ import annotations

import io
import itertools
import warnings
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import torch

import braze
from braze.testing import assert_close
from tests.ops.harness import run_ort


class Net:
    """An ONNX graph under construction: inputs, random weights and nodes, with generated names."""

    def __init__(self, opset: int = 17, seed: int = 0):
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.inputs: list[onnx.ValueInfoProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self._names = itertools.count()

    def _name(self, base: str) -> str:
        return f"{base}{next(self._names)}"

    def input(self, name: str, shape: Sequence[int], dtype: type = np.float32) -> str:
        elem = onh.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        self.inputs.append(oh.make_tensor_value_info(name, elem, list(shape)))
        return name

    def const(self, value: Any, dtype: type = np.float32, name: str | None = None) -> str:
        """An initializer holding `value` exactly."""
        name = name or self._name("c")
        self.initializers.append(onh.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, *shape: int, low: float = 0.5, high: float = 1.5) -> str:
        """A random initializer whose elements are of random sign with |w| in [low, high] (never zero)."""
        magnitude = self.rng.uniform(low, high, shape)
        sign = self.rng.choice([-1.0, 1.0], shape)
        return self.const(magnitude * sign)

    def positive(self, *shape: int, low: float = 0.5, high: float = 1.5) -> str:
        return self.const(self.rng.uniform(low, high, shape))

    def op(self, op_type: str, *inputs: str | None, outputs: int = 1, name: str | None = None,
           **attrs: Any) -> Any:
        """Add a node; returns its output name (a list of names when outputs > 1)."""
        name = name or self._name(op_type.lower())
        outs = [f"{name}_out{i}" if outputs > 1 else f"{name}_out" for i in range(outputs)]
        self.nodes.append(oh.make_node(op_type, ["" if i is None else i for i in inputs], outs, name=name, **attrs))
        return outs if outputs > 1 else outs[0]

    def model(self, *outputs: str) -> onnx.ModelProto:
        """The model with `outputs` as its outputs, their types from ONNX shape inference."""
        value_infos = [oh.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs]
        graph = oh.make_graph(self.nodes, "test", self.inputs, value_infos, self.initializers)
        model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", self.opset)])
        model.ir_version = 8
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        for out, info in zip(model.graph.output, inferred.graph.output):
            out.CopyFrom(info)
        onnx.checker.check_model(model)
        return model


def random_feeds(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    """Random non-zero float inputs (uniform in ±[0.1, 2]) for every graph input."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.input:
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        dtype = onh.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        feeds[value.name] = (rng.uniform(0.1, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(dtype)
    return feeds


def build(model: onnx.ModelProto | braze.Graph, level: int = 3, **config: Any) -> braze.Engine:
    graph = model if isinstance(model, braze.Graph) else braze.parse_onnx(model)
    return braze.Builder("cpu").build(graph, braze.BuilderConfig(optimization_level=level, **config))


def layer_ops(engine: braze.Engine) -> list[str]:
    """The engine's layers, as op names in execution order."""
    return [n.op for n in engine.graph.nodes]


def rules_fired(engine: braze.Engine) -> Counter[str]:
    return Counter(engine.plan.build["rules_fired"])


def run(engine: braze.Engine, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    outputs = engine.create_execution_context().infer(feeds)
    return [outputs[b.name] for b in engine.outputs]


def check(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray] | None = None, *,
          fired: Mapping[str, int] | None = None, ops: Sequence[str] | None = None) -> braze.Engine:
    """Build `model` optimized and unoptimized; assert both match onnxruntime on `feeds` (random by
    default), that each rule in `fired` fired exactly that often, and that the optimized engine's
    layers are `ops`. Returns the optimized engine."""
    feeds = dict(random_feeds(model) if feeds is None else feeds)
    optimized, plain = build(model), build(model, level=0)
    reference = run_ort(model, feeds)
    for level, engine in (("optimized", optimized), ("level 0", plain)):
        for i, (actual, want) in enumerate(zip(run(engine, feeds), reference, strict=True)):
            assert_close(actual, want, name=f"{level} output {i}")
    counts = Counter(optimized.plan.build["rules_fired"])
    for rule, count in (fired or {}).items():
        assert counts[rule] == count, f"rule {rule!r} fired {counts[rule]} times, not {count}: {dict(counts)}"
    if ops is not None:
        assert layer_ops(optimized) == list(ops), f"layers {layer_ops(optimized)}, not {list(ops)}"
    return optimized


def export(module: torch.nn.Module, *args: torch.Tensor, opset: int = 17) -> onnx.ModelProto:
    """`module` exported by the TorchScript exporter (as users' models are), quietly, in eval mode."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, buffer, dynamo=False, opset_version=opset,
                          input_names=[f"x{i}" for i in range(len(args))])
    return onnx.load_from_string(buffer.getvalue())


def torch_feeds(*args: torch.Tensor) -> dict[str, np.ndarray]:
    return {f"x{i}": a.numpy() for i, a in enumerate(args)}
