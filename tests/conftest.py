"""Shared fixtures: small ONNX models built with onnx.helper, random inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest

import braze


def tiny_cnn(batch: int | str = 1, opset: int = 17) -> onnx.ModelProto:
    """Conv -> Relu -> Conv -> Add(residual) -> GlobalAveragePool -> Flatten -> Gemm: 7 nodes."""
    rng = np.random.default_rng(0)
    inits = [
        onh.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
        onh.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1"),
        onh.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2, "w2"),
        onh.from_array(rng.standard_normal((10, 8)).astype(np.float32) * 0.3, "fc_w"),
        onh.from_array(rng.standard_normal(10).astype(np.float32) * 0.1, "fc_b"),
    ]
    nodes = [
        oh.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        oh.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        oh.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        oh.make_node("Add", ["c2", "r1"], ["s"], name="add"),
        oh.make_node("GlobalAveragePool", ["s"], ["g"], name="gap"),
        oh.make_node("Flatten", ["g"], ["f"], name="flatten"),
        oh.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    graph = oh.make_graph(nodes, "tiny_cnn",
                          [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 3, 16, 16])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [batch, 10])], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_mlp() -> onnx.ModelProto:
    """MatMul -> Add -> Relu -> MatMul -> Sigmoid, input x float32[2, 4]: only a few, simple ops."""
    rng = np.random.default_rng(1)
    inits = [onh.from_array(rng.standard_normal((4, 6)).astype(np.float32), "w1"),
             onh.from_array(rng.standard_normal(6).astype(np.float32), "b1"),
             onh.from_array(rng.standard_normal((6, 3)).astype(np.float32), "w2")]
    nodes = [oh.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             oh.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
             oh.make_node("Relu", ["hb"], ["r"], name="relu"),
             oh.make_node("MatMul", ["r", "w2"], ["o"], name="mm2"),
             oh.make_node("Sigmoid", ["o"], ["y"], name="sigmoid")]
    graph = oh.make_graph(nodes, "tiny_mlp", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def cnn_model() -> onnx.ModelProto:
    return tiny_cnn()


@pytest.fixture
def cnn_input() -> np.ndarray:
    return np.random.default_rng(42).standard_normal((1, 3, 16, 16)).astype(np.float32)


@pytest.fixture
def cnn_engine(cnn_model) -> braze.Engine:
    return braze.Builder("cpu").build(braze.parse_onnx(cnn_model), braze.BuilderConfig())


@pytest.fixture
def mlp_engine() -> braze.Engine:
    return braze.Builder("cpu").build(braze.parse_onnx(tiny_mlp()), braze.BuilderConfig())


def tiny_act(batch: int | str = 2) -> onnx.ModelProto:
    """PRelu(const slope) -> Sigmoid -> Clip(const bounds) -> Tanh: activations only, with weights."""
    rng = np.random.default_rng(3)
    inits = [onh.from_array(rng.uniform(0.1, 0.5, (4, 5)).astype(np.float32), "slope"),
             onh.from_array(np.array(0.3, np.float32), "lo"), onh.from_array(np.array(0.7, np.float32), "hi")]
    nodes = [oh.make_node("PRelu", ["x", "slope"], ["p"], name="prelu"),
             oh.make_node("Sigmoid", ["p"], ["s"], name="sigmoid"),
             oh.make_node("Clip", ["s", "lo", "hi"], ["c"], name="clip"),
             oh.make_node("Tanh", ["c"], ["y"], name="tanh")]
    graph = oh.make_graph(nodes, "tiny_act", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 3, 4, 5])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [batch, 3, 4, 5])], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def act_engine() -> braze.Engine:
    return braze.Builder("cpu").build(braze.parse_onnx(tiny_act()), braze.BuilderConfig())


@pytest.fixture
def act_input() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((2, 3, 4, 5)).astype(np.float32)
