"""CumProd, Shrink, Det and BitCast against onnxruntime."""

import ml_dtypes
import numpy as np
import onnx
import pytest

from braze.testing import assert_close

from .harness import check_op, make_model, rand, run_braze
from .test_attention import expect_build_error

TP = onnx.TensorProto


@pytest.mark.parametrize("shape,axis", [((5,), 0), ((3, 4), 1), ((3, 4), -2), ((2, 3, 4), 2)])
@pytest.mark.parametrize("attrs", [{}, {"exclusive": 1}, {"reverse": 1}, {"exclusive": 1, "reverse": 1}])
def test_cumprod(shape, axis, attrs):
    x = rand(*shape, low=0.5, high=1.5)
    check_op("CumProd", {"x": x, "axis": np.array(axis, dtype=np.int64)}, attrs, opset=26)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.uint64, np.float64, np.float16])
@pytest.mark.parametrize("axis_dtype", [np.int32, np.int64])
def test_cumprod_dtypes(dtype, axis_dtype):
    x = rand(3, 6, dtype=dtype, low=1, high=9, seed=2) if np.dtype(dtype).kind in "iu" else rand(3, 6, dtype=dtype)
    check_op("CumProd", {"x": x, "axis": np.array(1, dtype=axis_dtype)}, {"reverse": 1}, opset=26,
             constants=("axis",))


def test_cumprod_integer_overflow_wraps():
    x = np.array([[1 << 20, 1 << 15, 3, -7]], dtype=np.int32)
    y = check_op("CumProd", {"x": x, "axis": np.array(1, dtype=np.int64)}, opset=26)[0]
    assert y.dtype == np.int32


def test_cumprod_bfloat16():
    x = rand(2, 5, low=0.5, high=1.5).astype(ml_dtypes.bfloat16)
    feeds = {"x": x, "axis": np.array(1, dtype=np.int64)}
    y = run_braze(make_model("CumProd", feeds, opset=26), feeds)[0]
    assert y.dtype == ml_dtypes.bfloat16
    assert_close(y, np.cumprod(x.astype(np.float32), axis=1), "bfloat16")


@pytest.mark.parametrize("attrs", [{}, {"lambd": 1.5}, {"lambd": 1.5, "bias": 1.5}, {"lambd": 0.2, "bias": -0.7}])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_shrink(attrs, dtype):
    rtol = 1e-6 if dtype == np.float64 else None  # onnxruntime subtracts the float bias in float32
    check_op("Shrink", {"x": rand(3, 7, dtype=dtype, low=-4, high=4)}, attrs, opset=9, rtol=rtol)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint16])
@pytest.mark.parametrize("attrs", [{"lambd": 1.5, "bias": 0.7}, {"lambd": 2.0, "bias": 1.0}, {"lambd": 0.0}])
def test_shrink_integers(dtype, attrs):
    x = np.arange(-8, 9).astype(dtype) if np.dtype(dtype).kind == "i" else np.arange(1, 18).astype(dtype)
    check_op("Shrink", {"x": x}, attrs, opset=9)


def test_shrink_uint64_is_exact():
    x = np.array([0, 1, 5, (1 << 63) + 5, (1 << 64) - 1], dtype=np.uint64)
    y = run_braze(make_model("Shrink", {"x": x}, {"lambd": 1.0, "bias": 2.5}, opset=9), {"x": x})[0]
    expected = np.array([0, 0, 2, (1 << 63) + 2, (1 << 64) - 4], dtype=np.uint64)  # trunc(x - 2.5)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4), (2, 2, 1, 1), (5, 2, 2)])
@pytest.mark.parametrize("opset", [11, 22])
def test_det(shape, opset):
    check_op("Det", {"x": rand(*shape)}, opset=opset)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_det_against_numpy(dtype):
    """Types onnxruntime's Det lacks."""
    x = rand(2, 3, 3, dtype=dtype, low=-1, high=1)
    y = run_braze(make_model("Det", {"x": x}, opset=22), {"x": x})[0]
    assert y.dtype == dtype
    assert_close(y, np.linalg.det(x.astype(np.float64)).astype(dtype))


@pytest.mark.parametrize("source,to", [(np.float32, TP.INT32), (np.int32, TP.FLOAT), (np.float64, TP.INT64),
                                       (np.uint16, TP.INT16), (np.int8, TP.UINT8), (np.float16, TP.UINT16),
                                       (np.uint64, TP.DOUBLE)])
@pytest.mark.parametrize("shape", [(5,), (2, 3), ()])
def test_bitcast(source, to, shape):
    x = rand(*shape, dtype=source, seed=4)
    check_op("BitCast", {"x": x}, {"to": to}, opset=26)


@pytest.mark.parametrize("x,to,view", [(rand(4).astype(ml_dtypes.bfloat16), TP.INT16, np.int16),
                                       (np.array([True, False, True]), TP.UINT8, np.uint8),
                                       (np.array([1, 0, 2], np.uint8), TP.INT8, np.int8)])
def test_bitcast_against_numpy(x, to, view):
    """Types onnxruntime's BitCast lacks."""
    y = run_braze(make_model("BitCast", {"x": x}, {"to": to}, opset=26), {"x": x})[0]
    assert y.dtype == view
    np.testing.assert_array_equal(y, x.view(view))


@pytest.mark.parametrize("op,inputs,attrs,opset,match", [
    ("CumProd", {"x": rand(3, 4), "axis": np.array(2, np.int64)}, {}, 26, "out of range"),
    ("CumProd", {"x": rand(3, 4), "axis": np.array([0, 1], np.int64)}, {}, 26, "scalar"),
    ("CumProd", {"x": rand(3, 4).astype(np.int8), "axis": np.array(0, np.int64)}, {}, 26, "int8"),
    ("Det", {"x": rand(2, 3)}, {}, 22, r"\[\.\.\., M, M\]"),
    ("BitCast", {"x": rand(4)}, {"to": TP.INT64}, 26, "one width"),
    ("BitCast", {"x": rand(4)}, {"to": TP.STRING}, 26, "STRING"),
])
def test_errors(op, inputs, attrs, opset, match):
    expect_build_error(op, inputs, attrs, opset=opset, match=match)
