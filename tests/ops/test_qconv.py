import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

import braze

from .harness import check_op, feeds_of, make_model, rand, run_braze

ATTRS = [
    {},
    {"pads": [1, 1, 1, 1]},
    {"strides": [2, 2], "pads": [0, 1, 1, 0]},
    {"dilations": [2, 1]},
    {"auto_pad": "SAME_UPPER"},
]


def q(*shape, dtype=np.uint8, seed=0):
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max + 1, size=shape).astype(dtype)


def _raises(op_type, inputs, match, attrs=None):
    model = make_model(op_type, inputs, attrs, opset=10)
    with pytest.raises(braze.BrazeError, match=f"{op_type.lower()}_node.*{match}"):
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False), braze.BuilderConfig())
        engine.create_execution_context().infer(feeds_of(inputs))


# -- ConvInteger -------------------------------------------------------------------------------

@pytest.mark.parametrize("attrs", ATTRS)
def test_conv_integer_2d(attrs):
    check_op("ConvInteger", {"x": q(2, 3, 7, 6), "w": q(4, 3, 3, 2, seed=1), "xz": np.array(7, np.uint8),
                             "wz": np.array(120, np.uint8)}, attrs, opset=10)


def test_conv_integer_without_zero_points():
    check_op("ConvInteger", {"x": q(1, 2, 5, 5), "w": q(3, 2, 2, 2, seed=1)}, opset=10)


def test_conv_integer_grouped_per_channel():
    """onnxruntime takes per-tensor weight zero points only: ONNX's reference is the oracle."""
    inputs = {"x": q(2, 4, 9, 5), "w": q(6, 2, 3, 2, seed=1), "xz": np.array(100, np.uint8), "wz": q(6, seed=2)}
    model = make_model("ConvInteger", inputs, {"group": 2, "pads": [1, 2, 0, 1]}, opset=10)
    expected = ReferenceEvaluator(model).run(None, inputs)[0]
    np.testing.assert_array_equal(run_braze(model, inputs)[0], expected)


def test_conv_integer_int8_weights():
    check_op("ConvInteger", {"x": q(1, 3, 6, 6), "w": q(2, 3, 3, 3, dtype=np.int8, seed=1),
                             "xz": np.array(3, np.uint8)}, {"pads": [1, 1, 1, 1]}, opset=10)


def test_conv_integer_1d():
    check_op("ConvInteger", {"x": q(2, 4, 9), "w": q(6, 2, 3, seed=1), "xz": np.array(100, np.uint8),
                             "wz": np.array(7, np.uint8)}, {"group": 2, "pads": [1, 2]}, opset=10)


# -- QLinearConv -------------------------------------------------------------------------------

def qlinear_inputs(x, w, *, per_channel=False, y_dtype=np.uint8, bias=False):
    m = w.shape[0]
    inputs = {
        "x": x, "xs": np.array(0.05, np.float32), "xz": np.array(11, x.dtype),
        "w": w, "ws": rand(m, low=0.002, high=0.02) if per_channel else np.array(0.01, np.float32),
        "wz": (np.zeros(m, w.dtype) if per_channel else np.array(0, w.dtype)) if w.dtype == np.int8
        else (q(m, seed=3) if per_channel else np.array(130, w.dtype)),
        "ys": np.array(0.2, np.float32), "yz": np.array(5 if y_dtype == np.int8 else 128, y_dtype),
    }
    if bias:
        inputs["b"] = rand(m, dtype=np.int32, low=-2000, high=2000)
    return inputs


@pytest.mark.parametrize("attrs", ATTRS)
def test_qlinear_conv_2d(attrs):
    check_op("QLinearConv", qlinear_inputs(q(2, 3, 7, 6), q(4, 3, 3, 2, seed=1)), attrs, opset=10)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_qlinear_conv_int8(per_channel, bias):
    inputs = qlinear_inputs(q(1, 4, 6, 6, dtype=np.int8), q(6, 2, 3, 3, dtype=np.int8, seed=1),
                            per_channel=per_channel, y_dtype=np.int8, bias=bias)
    check_op("QLinearConv", inputs, {"group": 2, "pads": [1, 1, 1, 1]}, opset=10)


@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinear_conv_uint8_per_channel_bias(per_channel):
    inputs = qlinear_inputs(q(2, 3, 8), q(5, 3, 3, seed=1), per_channel=per_channel, bias=True)
    check_op("QLinearConv", inputs, {"strides": [2]}, opset=10)


# -- errors ------------------------------------------------------------------------------------

def test_errors():
    _raises("ConvInteger", {"x": rand(1, 1, 4, 4), "w": q(1, 1, 2, 2)}, "x must be int8 or uint8")
    _raises("ConvInteger", {"x": q(1, 1, 4, 4), "w": q(1, 1, 2, 2), "xz": q(2)}, "scalar")
    _raises("ConvInteger", {"x": q(1, 1, 4, 4), "w": q(2, 1, 2, 2), "xz": np.array(1, np.uint8), "wz": q(3)},
            "one per output channel")
    _raises("ConvInteger", {"x": q(1, 2, 4, 4), "w": q(1, 1, 2, 2)}, "channels")
    inputs = qlinear_inputs(q(1, 3, 5, 5), q(4, 3, 3, 3, seed=1))
    _raises("QLinearConv", {**inputs, "ws": rand(3, low=0.1, high=0.2)}, "w_scale")
    _raises("QLinearConv", {**inputs, "b": rand(4)}, "int32")
    _raises("QLinearConv", {**inputs, "yz": np.array(1, np.int32)}, "y_zero_point")
