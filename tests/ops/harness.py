"""Single-op checks: one ONNX node, run by onnxruntime (the oracle) and by a braze CPU engine."""

from __future__ import annotations

from typing import Any, Sequence

import ml_dtypes
import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
from onnx.reference import ReferenceEvaluator

import braze
from braze.testing import assert_close

Inputs = Sequence[tuple[str, np.ndarray | None]] | dict[str, np.ndarray | None]


def make_model(op_type: str, inputs: Inputs, attrs: dict[str, Any] | None = None, *, n_outputs: int = 1,
               opset: int = 17, constants: Sequence[str] = (), domain: str = "") -> onnx.ModelProto:
    """A model of one node. Inputs named in `constants` become initializers, None inputs are omitted."""
    items = list(inputs.items()) if isinstance(inputs, dict) else list(inputs)
    node_inputs = [name if value is not None else "" for name, value in items]
    while node_inputs and not node_inputs[-1]:  # trailing omitted inputs are left off, as exporters do
        node_inputs.pop()
    outputs = [f"y{i}" for i in range(n_outputs)]
    node = oh.make_node(op_type, node_inputs, outputs, name=f"{op_type.lower()}_node", domain=domain, **(attrs or {}))
    graph_inputs, inits = [], []
    for name, value in items:
        if value is None:
            continue
        if name in constants:
            inits.append(onh.from_array(np.asarray(value), name))
        else:
            graph_inputs.append(oh.make_tensor_value_info(name, onh.helper.np_dtype_to_tensor_dtype(value.dtype), value.shape))
    graph = oh.make_graph([node], f"{op_type}_test", graph_inputs,
                          [oh.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid(domain, opset)])
    model.ir_version = min(model.ir_version, 10)
    inferred = onnx.shape_inference.infer_shapes(model)
    for out, info in zip(model.graph.output, inferred.graph.output):
        out.CopyFrom(info)
    return model


def feeds_of(inputs: Inputs, constants: Sequence[str] = ()) -> dict[str, np.ndarray]:
    items = inputs.items() if isinstance(inputs, dict) else inputs
    return {name: value for name, value in items if value is not None and name not in constants}


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def run_braze(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    graph = braze.parse_onnx(model)
    engine = braze.Builder(device="cpu").build(graph, braze.BuilderConfig())
    engine = braze.Runtime().load(engine.serialize())
    outputs = engine.create_execution_context().infer(feeds)
    return [outputs[o.name] for o in model.graph.output]


def check_op(op_type: str, inputs: Inputs, attrs: dict[str, Any] | None = None, *, n_outputs: int = 1,
             opset: int = 17, constants: Sequence[str] = (), rtol: float | None = None,
             atol: float | None = None, domain: str = "") -> list[np.ndarray]:
    """Run one op in onnxruntime and in braze; assert every output matches within the dtype's tolerance."""
    model = make_model(op_type, inputs, attrs, n_outputs=n_outputs, opset=opset, constants=constants, domain=domain)
    feeds = feeds_of(inputs, constants)
    expected = run_ort(model, feeds)
    actual = run_braze(model, feeds)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, e, rtol=rtol, atol=atol, name=f"{op_type} output {i}")
    return actual


def rand(*shape: int, dtype=np.float32, low: float = -2.0, high: float = 2.0, seed: int | None = None) -> np.ndarray:
    """Random values (never all zero) of the given shape and dtype."""
    rng = np.random.default_rng(seed if seed is not None else hash(shape) % (2**32))
    if np.dtype(dtype).kind == "f":
        return rng.uniform(low, high, size=shape).astype(dtype)
    if np.dtype(dtype) == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.integers(int(low) if low != -2.0 else -10, int(high) if high != 2.0 else 10, size=shape).astype(dtype)


def check_bfloat16(op_type: str, inputs: Inputs, attrs: dict[str, Any] | None = None, *, opset: int,
                   n_outputs: int = 1) -> None:
    """braze in bfloat16 against onnxruntime in float32 on the same (bfloat16-rounded) inputs."""
    items = inputs.items() if isinstance(inputs, dict) else inputs
    f32 = {k: None if v is None else v.astype(ml_dtypes.bfloat16).astype(np.float32) for k, v in items}
    b16 = {k: None if v is None else v.astype(ml_dtypes.bfloat16) for k, v in f32.items()}
    expected = run_ort(make_model(op_type, f32, attrs, opset=opset, n_outputs=n_outputs), feeds_of(f32))
    actual = run_braze(make_model(op_type, b16, attrs, opset=opset, n_outputs=n_outputs), feeds_of(b16))
    assert actual[0].dtype == ml_dtypes.bfloat16
    for a, e in zip(actual, expected):
        assert_close(a, e, "bfloat16", name=op_type)


def check_reference(op_type: str, inputs: Inputs, attrs: dict[str, Any] | None, **kw: Any) -> None:
    """Like check_op, against ONNX's reference evaluator (for dtypes onnxruntime has no kernel for)."""
    model = make_model(op_type, inputs, attrs, **kw)
    feeds = feeds_of(inputs)
    for actual, expected in zip(run_braze(model, feeds), ReferenceEvaluator(model).run(None, feeds)):
        assert_close(actual, expected, name=op_type)
