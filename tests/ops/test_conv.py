import numpy as np
import onnx.helper as oh
import pytest
from onnx import TensorProto

import braze
from braze.testing import assert_close

from .harness import check_bfloat16, check_op, check_reference, feeds_of, make_model, rand, run_braze, run_ort






def expect_error(op_type, inputs, attrs, match, **kw):
    model = make_model(op_type, inputs, attrs, **kw)
    rank = len(inputs["x"].shape)
    for out in model.graph.output:  # ONNX's inference gives up on bad nodes; the checker needs a type
        out.CopyFrom(oh.make_tensor_value_info(out.name, TensorProto.FLOAT, [f"d{i}" for i in range(rank)]))
    with pytest.raises(braze.BrazeError, match=match) as info:
        run_braze(model, feeds_of(inputs))
    assert f"{op_type.lower()}_node" in str(info.value)


CONV_CASES = [
    # x shape, w shape, attrs
    ((2, 3, 9), (4, 3, 3), {}),
    ((1, 2, 10), (6, 1, 4), {"group": 2, "strides": [3], "pads": [2, 1]}),
    ((1, 4, 11), (4, 1, 3), {"group": 4, "strides": [2], "auto_pad": "SAME_UPPER"}),
    ((2, 3, 7, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 3, 7, 8), (4, 3, 3, 2), {"pads": [1, 0, 2, 1], "strides": [2, 1]}),
    ((1, 4, 9, 9), (8, 2, 3, 3), {"group": 2, "strides": [2, 2], "dilations": [2, 1], "pads": [2, 1, 2, 1]}),
    ((1, 6, 8, 7), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}),
    ((1, 3, 8, 7), (5, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 8, 7), (5, 3, 2, 4), {"auto_pad": "SAME_LOWER", "strides": [3, 2]}),
    ((1, 3, 8, 7), (5, 3, 3, 3), {"auto_pad": "VALID", "strides": [2, 3]}),
    ((1, 3, 8, 7), (5, 3, 1, 1), {"kernel_shape": [1, 1]}),
    ((1, 2, 5, 6, 4), (3, 2, 3, 3, 2), {"pads": [1, 1, 0, 1, 1, 1]}),
    ((1, 4, 5, 6, 7), (4, 2, 2, 3, 3), {"group": 2, "strides": [1, 2, 2], "dilations": [2, 1, 1]}),
]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("xs,ws,attrs", CONV_CASES)
def test_conv(xs, ws, attrs, bias):
    inputs = {"x": rand(*xs), "w": rand(*ws), "b": rand(ws[0]) if bias else None}
    check_op("Conv", inputs, attrs, constants=("w", "b"))


@pytest.mark.parametrize("opset", [1, 11, 22])
def test_conv_opsets(opset):
    check_op("Conv", {"x": rand(1, 2, 6, 6), "w": rand(3, 2, 3, 3), "b": rand(3)}, {"pads": [0, 1, 1, 0]}, opset=opset)


def test_conv_float16():
    inputs = {"x": rand(1, 4, 8, 8, dtype=np.float16), "w": rand(4, 2, 3, 3, dtype=np.float16, low=-0.5, high=0.5),
              "b": rand(4, dtype=np.float16)}
    check_op("Conv", inputs, {"group": 2, "pads": [1, 2, 1, 0]})


@pytest.mark.parametrize("attrs", [{}, {"pads": [1, 0, 0, 2], "group": 2}])
def test_conv_float64(attrs):
    check_reference("Conv", {"x": rand(1, 4, 6, 5, dtype=np.float64), "w": rand(2, 4 // attrs.get("group", 1), 3, 3,
                    dtype=np.float64)}, attrs)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_conv_same_dilated(auto_pad):  # onnxruntime refuses dilations with SAME padding
    check_reference("Conv", {"x": rand(1, 2, 7, 8), "w": rand(3, 2, 3, 2)},
                    {"auto_pad": auto_pad, "dilations": [2, 3], "strides": [2, 1]})


def test_conv_4d_spatial():
    check_reference("Conv", {"x": rand(1, 4, 4, 5, 3, 4), "w": rand(2, 2, 2, 3, 2, 2), "b": rand(2)},
                    {"group": 2, "pads": [1, 0, 0, 1, 0, 1, 1, 0], "strides": [1, 2, 1, 1]})


@pytest.mark.parametrize("attrs,match", [
    ({"group": 2}, "channels"),
    ({"pads": [1, 1]}, "pads"),
    ({"strides": [0, 1]}, "strides"),
    ({"kernel_shape": [2, 2]}, "kernel_shape"),
    ({"auto_pad": "SAME"}, "auto_pad"),
])
def test_conv_bad_attributes(attrs, match):
    expect_error("Conv", {"x": rand(1, 3, 6, 6), "w": rand(4, 3, 3, 3)}, attrs, match)


def test_conv_bad_shapes():
    expect_error("Conv", {"x": rand(1, 2, 6, 6), "w": rand(4, 3, 3, 3)}, {}, "channels")
    expect_error("Conv", {"x": rand(1, 3, 2, 6), "w": rand(4, 3, 3, 3)}, {}, "larger than")
    expect_error("Conv", {"x": rand(1, 3, 6, 6), "w": rand(4, 3, 3, 3), "b": rand(3)}, {}, "B has shape")
    expect_error("Conv", {"x": rand(1, 3, 6, 6), "w": rand(4, 3, 3)}, {}, "rank")


CONV_T_CASES = [
    ((2, 3, 5), (3, 2, 3), {}),
    ((1, 4, 6), (4, 1, 4), {"group": 2, "strides": [2], "pads": [1, 2]}),
    ((1, 2, 5), (2, 3, 3), {"strides": [3], "output_padding": [2], "dilations": [2]}),
    ((2, 3, 4, 5), (3, 2, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    ((1, 3, 4, 5), (3, 2, 3, 3), {"strides": [2, 3], "pads": [1, 0, 0, 2], "output_padding": [1, 0]}),
    ((1, 3, 4, 5), (3, 2, 3, 3), {"strides": [2, 2], "output_shape": [9, 10]}),
    ((1, 3, 4, 5), (3, 2, 3, 3), {"strides": [2, 2], "output_shape": [10, 12]}),
    ((1, 3, 4, 5), (3, 2, 3, 3), {"strides": [2, 2], "output_shape": [9, 10], "pads": [1, 0, 0, 0]}),
    ((1, 3, 4, 5), (3, 2, 3, 3), {"strides": [2, 2], "output_shape": [8, 10], "output_padding": [1, 1]}),
    ((1, 3, 4, 5), (3, 2, 3, 3), {"strides": [2, 2], "output_shape": [8, 10], "auto_pad": "SAME_UPPER"}),
    ((1, 3, 4, 5), (3, 2, 4, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 3, 4, 5), (3, 2, 4, 3), {"strides": [2, 3], "auto_pad": "SAME_LOWER"}),
    ((1, 3, 4, 5), (3, 2, 2, 3), {"auto_pad": "VALID", "strides": [2, 1]}),
    ((1, 4, 5, 5), (4, 1, 3, 3), {"group": 4, "strides": [2, 2], "dilations": [2, 1], "pads": [2, 1, 1, 1]}),
    ((1, 2, 3, 4, 3), (2, 2, 3, 2, 3), {"strides": [2, 1, 2], "pads": [1, 0, 1, 0, 1, 1]}),
]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("xs,ws,attrs", CONV_T_CASES)
def test_conv_transpose(xs, ws, attrs, bias):
    inputs = {"x": rand(*xs), "w": rand(*ws), "b": rand(ws[1] * attrs.get("group", 1)) if bias else None}
    check_op("ConvTranspose", inputs, attrs, constants=("w",))


@pytest.mark.parametrize("opset", [1, 11, 22])
def test_conv_transpose_opsets(opset):
    check_op("ConvTranspose", {"x": rand(1, 2, 4, 4), "w": rand(2, 3, 3, 3), "b": rand(3)},
             {"strides": [2, 2], "pads": [1, 0, 0, 1]}, opset=opset)


def test_conv_transpose_float16():
    inputs = {"x": rand(1, 4, 5, 5, dtype=np.float16), "w": rand(4, 2, 3, 3, dtype=np.float16, low=-0.5, high=0.5)}
    check_op("ConvTranspose", inputs, {"strides": [2, 2], "pads": [1, 1, 0, 0]})


def test_conv_transpose_float64():
    check_reference("ConvTranspose", {"x": rand(1, 2, 4, 3, dtype=np.float64), "w": rand(2, 3, 3, 3, dtype=np.float64),
                                      "b": rand(3, dtype=np.float64)}, {"strides": [2, 1], "pads": [0, 1, 1, 0]})


def test_conv_transpose_4d_spatial():
    check_reference("ConvTranspose", {"x": rand(1, 2, 3, 2, 3, 2), "w": rand(2, 2, 2, 3, 2, 2)},
                    {"strides": [2, 1, 1, 2], "pads": [1, 0, 0, 0, 0, 1, 1, 0], "output_padding": [1, 0, 0, 0]})


@pytest.mark.parametrize("op_type", ["Conv", "ConvTranspose"])
def test_4d_spatial_grouped(op_type):
    """The general N-d path with groups, against onnxruntime's 3-D result (one spatial axis of size 1)."""
    x, w, b = rand(1, 4, 3, 4, 3), rand(4, 2, 2, 3, 2), rand(4)
    attrs = {"group": 2, "strides": [2, 1, 1], "pads": [1, 0, 1, 0, 1, 0]}
    model = make_model(op_type, {"x": x, "w": w, "b": b}, attrs)
    expected = run_ort(model, {"x": x, "w": w, "b": b})[0]
    attrs_4d = {"group": 2, "strides": [2, 1, 1, 1], "pads": [1, 0, 0, 1, 0, 1, 0, 0]}
    inputs_4d = {"x": x[:, :, :, :, None], "w": w[:, :, :, :, None], "b": b}
    actual = run_braze(make_model(op_type, inputs_4d, attrs_4d), inputs_4d)[0]
    assert_close(actual[:, :, :, :, 0], expected)


@pytest.mark.parametrize("attrs,match", [
    ({"group": 2}, "divisible by group"),
    ({"output_padding": [1]}, "output_padding"),
    ({"output_shape": [9]}, "output_shape"),
    ({"pads": [3, 3, 3, 3]}, "too large"),
    ({"auto_pad": "FULL"}, "auto_pad"),
])
def test_conv_transpose_bad_attributes(attrs, match):
    expect_error("ConvTranspose", {"x": rand(1, 3, 2, 2), "w": rand(3, 2, 3, 3)}, attrs, match)


@pytest.mark.parametrize("op_type,inputs,attrs", [
    ("Conv", {"x": rand(1, 3, 6, 6), "w": rand(4, 3, 3, 3, low=-0.5, high=0.5), "b": rand(4)}, {"pads": [1, 0, 1, 2]}),
    ("ConvTranspose", {"x": rand(1, 3, 4, 4), "w": rand(3, 2, 3, 3, low=-0.5, high=0.5)}, {"strides": [2, 2]}),
])
def test_bfloat16(op_type, inputs, attrs):
    check_bfloat16(op_type, inputs, attrs, opset=22)
