"""RMSNormalization, RotaryEmbedding, Swish, SwiGLU and TensorScatter against onnxruntime (SwiGLU, which
onnxruntime lacks, against ONNX's reference evaluator and numpy)."""

import ml_dtypes
import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from braze.testing import assert_close

from .harness import check_op, make_model, rand, run_braze
from .test_attention import expect_build_error

F16, F64 = np.float16, np.float64


@pytest.mark.parametrize("shape,axis,scale_shape", [((2, 3, 4, 5), -1, (5,)), ((2, 3, 4, 5), 1, (3, 4, 5)),
                                                    ((3, 8), 0, (3, 8)), ((2, 6, 16), -1, (1, 16)),
                                                    ((4, 5, 6), 2, (6,))])
@pytest.mark.parametrize("epsilon", [1e-5, 0.1])
def test_rms_normalization(shape, axis, scale_shape, epsilon):
    check_op("RMSNormalization", {"x": rand(*shape), "scale": rand(*scale_shape, seed=3)},
             {"axis": axis, "epsilon": epsilon}, opset=23)


@pytest.mark.parametrize("dtype", [F16, F64])
def test_rms_normalization_dtypes(dtype):
    check_op("RMSNormalization", {"x": rand(2, 5, 8, dtype=dtype), "scale": rand(8, dtype=dtype, seed=3)}, opset=23)


def test_rms_normalization_bfloat16():
    x, scale = rand(3, 16).astype(ml_dtypes.bfloat16), rand(16, seed=1).astype(ml_dtypes.bfloat16)
    y = run_braze(make_model("RMSNormalization", {"x": x, "scale": scale}, opset=23), {"x": x, "scale": scale})[0]
    xf = x.astype(np.float32)
    expected = xf / np.sqrt((xf * xf).mean(-1, keepdims=True) + 1e-5) * scale.astype(np.float32)
    assert y.dtype == ml_dtypes.bfloat16
    assert_close(y, expected, "bfloat16")


def rope_caches(positions, half, seed=0):
    angles = rand(positions, half, low=0, high=6, seed=seed)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rotary_dim", [0, 4])
@pytest.mark.parametrize("three_d", [False, True])
def test_rotary_embedding(interleaved, rotary_dim, three_d):
    b, h, s, d = 2, 3, 5, 8
    x = rand(b, h, s, d)
    if three_d:
        x = x.transpose(0, 2, 1, 3).reshape(b, s, h * d)
    cos, sin = rope_caches(16, (rotary_dim or d) // 2)
    positions = np.random.default_rng(0).integers(0, 16, size=(b, s)).astype(np.int64)
    attrs = {"interleaved": interleaved, "rotary_embedding_dim": rotary_dim, **({"num_heads": h} if three_d else {})}
    check_op("RotaryEmbedding", {"x": x, "cos": cos, "sin": sin, "pos": positions}, attrs, opset=23)


@pytest.mark.parametrize("interleaved", [0, 1])
def test_rotary_embedding_without_position_ids(interleaved):
    cos, sin = rope_caches(2 * 4, 4)
    inputs = {"x": rand(2, 3, 4, 8), "cos": cos.reshape(2, 4, 4), "sin": sin.reshape(2, 4, 4)}
    check_op("RotaryEmbedding", inputs, {"interleaved": interleaved}, opset=23)


def test_rotary_embedding_float16():
    cos, sin = rope_caches(8, 8)
    inputs = {"x": rand(1, 2, 4, 16, dtype=F16), "cos": cos.astype(F16), "sin": sin.astype(F16),
              "pos": np.array([[0, 3, 5, 7]], dtype=np.int64)}
    check_op("RotaryEmbedding", inputs, opset=23)


@pytest.mark.parametrize("shape", [(7,), (2, 3, 4), ()])
@pytest.mark.parametrize("alpha", [1.0, 0.5, -2.0])
def test_swish(shape, alpha):
    check_op("Swish", {"x": rand(*shape, low=-5, high=5)}, {"alpha": alpha}, opset=24)


@pytest.mark.parametrize("dtype", [F16, F64])
def test_swish_dtypes(dtype):
    check_op("Swish", {"x": rand(3, 5, dtype=dtype, low=-5, high=5)}, {"alpha": 1.5}, opset=24)


@pytest.mark.parametrize("shape", [(6,), (2, 3, 8)])
@pytest.mark.parametrize("alpha", [1.0, 0.7])
@pytest.mark.parametrize("dtype", [np.float32, F16])
def test_swiglu(shape, alpha, dtype):
    a, b = rand(*shape, dtype=dtype, low=-4, high=4, seed=1), rand(*shape, dtype=dtype, seed=2)
    model = make_model("SwiGLU", {"a": a, "b": b}, {"alpha": alpha}, opset=28)
    actual = run_braze(model, {"a": a, "b": b})[0]
    a64 = a.astype(F64)
    assert actual.dtype == dtype
    assert_close(actual, (a64 / (1 + np.exp(-alpha * a64)) * b).astype(dtype))
    assert_close(actual, ReferenceEvaluator(model).run(None, {"a": a, "b": b})[0])


@pytest.mark.parametrize("mode", ["linear", "circular"])
@pytest.mark.parametrize("shape,update_len,axis", [((2, 3, 6, 4), 2, -2), ((3, 5, 4), 3, 1), ((2, 4, 2, 5), 1, 3)])
def test_tensor_scatter(mode, shape, update_len, axis):
    update_shape = list(shape)
    update_shape[axis] = update_len
    capacity = shape[axis]
    high = capacity if mode == "circular" else capacity - update_len + 1
    writes = np.random.default_rng(1).integers(0, high, size=shape[0]).astype(np.int64)
    inputs = {"cache": rand(*shape), "update": rand(*update_shape, seed=5), "writes": writes}
    check_op("TensorScatter", inputs, {"mode": mode, "axis": axis}, opset=24)


@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.uint64, F16, np.bool_])
def test_tensor_scatter_dtypes(dtype):
    inputs = {"cache": rand(2, 5, 3, dtype=dtype), "update": rand(2, 2, 3, dtype=dtype, seed=4)}
    check_op("TensorScatter", inputs, {"axis": 1}, opset=24)


@pytest.mark.parametrize("op,inputs,attrs,opset,match", [
    ("RMSNormalization", {"x": rand(2, 4), "scale": rand(3)}, {}, 23, "broadcast"),
    ("RMSNormalization", {"x": rand(2, 4), "scale": rand(4)}, {"axis": 2}, 23, "out of range"),
    ("RMSNormalization", {"x": rand(2, 4), "scale": rand(4)}, {"stash_type": 7}, 23, "stash_type"),
    ("RotaryEmbedding", {"x": rand(2, 3, 8), "cos": rand(4, 2), "sin": rand(4, 2),
                         "pos": np.zeros((2, 3), np.int64)}, {}, 23, "num_heads"),
    ("RotaryEmbedding", {"x": rand(1, 1, 3, 8), "cos": rand(4, 3), "sin": rand(4, 3),
                         "pos": np.zeros((1, 3), np.int64)}, {}, 23, "half"),
    ("RotaryEmbedding", {"x": rand(1, 1, 3, 8), "cos": rand(4, 4), "sin": rand(4, 4),
                         "pos": np.array([[0, 1, 4]], np.int64)}, {}, 23, "position_ids"),
    ("SwiGLU", {"a": rand(2, 4), "b": rand(4)}, {}, 28, "one shape"),
    ("TensorScatter", {"cache": rand(2, 4, 3), "update": rand(2, 2, 3)}, {"axis": 0}, 24, "batch"),
    ("TensorScatter", {"cache": rand(2, 4, 3), "update": rand(2, 2, 3),
                       "writes": np.array([0, 3], np.int64)}, {"axis": 1}, 24, "linear mode"),
    ("TensorScatter", {"cache": rand(2, 4, 3), "update": rand(2, 2, 3)}, {"mode": "ring"}, 24, "mode"),
])
def test_errors(op, inputs, attrs, opset, match):
    expect_build_error(op, inputs, attrs, opset=opset, match=match)
