import ml_dtypes
import numpy as np
import pytest

import braze
from braze.testing import assert_close

from .harness import check_op, feeds_of, make_model, rand, run_braze

OPS = ["Softmax", "LogSoftmax", "Hardmax"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape,axis", [((7,), 0), ((3, 5), 1), ((2, 3, 4), 1), ((2, 3, 4), -1),
                                        ((2, 3, 4), 0), ((2, 1, 3, 4), 2)])
def test_coerced_2d(op, shape, axis):
    check_op(op, {"x": rand(*shape)}, {"axis": axis}, opset=11)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 5)])
def test_default_axis(op, shape):
    check_op(op, {"x": rand(*shape)}, opset=11)
    check_op(op, {"x": rand(*shape)}, opset=13)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape,axis", [((6,), 0), ((3, 5), 0), ((2, 3, 4), 1), ((2, 3, 4), -3), ((2, 3, 4, 2), 2)])
@pytest.mark.parametrize("opset", [13, 18])
def test_single_axis(op, shape, axis, opset):
    check_op(op, {"x": rand(*shape)}, {"axis": axis}, opset=opset)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_dtypes(op, dtype):
    check_op(op, {"x": rand(3, 4, 5, dtype=dtype)}, {"axis": 1}, opset=13)
    check_op(op, {"x": rand(3, 4, 5, dtype=dtype)}, {"axis": 1}, opset=11)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
@pytest.mark.parametrize("opset", [11, 13])
def test_hardmax_dtypes(dtype, opset):
    # onnxruntime has Hardmax for float32 only: the float32 result is the oracle.
    x = rand(3, 4, 5, dtype=dtype)
    expected = check_op("Hardmax", {"x": x.astype(np.float32)}, {"axis": 1}, opset=opset)[0]
    inputs = {"x": x}
    (got,) = run_braze(make_model("Hardmax", inputs, {"axis": 1}, opset=opset), feeds_of(inputs))
    assert got.dtype == dtype and np.array_equal(got, expected.astype(dtype))


def test_hardmax_ties_pick_first():
    x = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [-1, -5, -1, -9]], dtype=np.float32)
    out = check_op("Hardmax", {"x": x}, opset=13)[0]
    assert out.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]


def test_large_values_are_stable():
    x = rand(4, 6) * 1000
    check_op("Softmax", {"x": x}, opset=13)
    check_op("LogSoftmax", {"x": x}, opset=13)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("opset,axis", [(13, 3), (13, -4), (11, 4), (11, -5)])
def test_axis_out_of_range(op, opset, axis):
    model = make_model(op, {"x": rand(2, 3, 4)}, {"axis": axis}, opset=opset)
    with pytest.raises(braze.BrazeError, match=f"{op.lower()}_node.*axis {axis} is out of range"):
        braze.Builder("cpu").build(braze.parse_onnx(model, check=False))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("opset", [11, 13])
def test_bfloat16_matches_float32(op, opset):
    x = rand(3, 4, 5).astype(ml_dtypes.bfloat16)
    expected = check_op(op, {"x": x.astype(np.float32)}, {"axis": 1}, opset=opset)[0]
    (actual,) = run_braze(make_model(op, {"x": x}, {"axis": 1}, opset=opset), {"x": x})
    assert actual.dtype == ml_dtypes.bfloat16
    assert_close(actual, expected, "bfloat16")
