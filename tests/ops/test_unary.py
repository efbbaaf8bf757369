import math

import ml_dtypes
import numpy as np
import pytest

from braze.testing import assert_close

from .harness import check_op, rand
from .test_elementwise import expect_error, run_only_braze

# op -> (input range, numpy reference for the dtypes onnxruntime lacks, opset it appeared in)
FLOAT_OPS = {
    "Sqrt": ((0.01, 4), np.sqrt, 6),
    "Exp": ((-3, 3), np.exp, 6),
    "Log": ((0.01, 4), np.log, 6),
    "Reciprocal": ((0.1, 3), np.reciprocal, 6),
    "Erf": ((-3, 3), np.vectorize(math.erf), 9),
    "Floor": ((-4, 4), np.floor, 6),
    "Ceil": ((-4, 4), np.ceil, 6),
    "Round": ((-4, 4), np.round, 11),
    "Sin": ((-4, 4), np.sin, 7),
    "Cos": ((-4, 4), np.cos, 7),
    "Tan": ((-1.4, 1.4), np.tan, 7),
    "Asin": ((-0.99, 0.99), np.arcsin, 7),
    "Acos": ((-0.99, 0.99), np.arccos, 7),
    "Atan": ((-4, 4), np.arctan, 7),
    "Sinh": ((-3, 3), np.sinh, 9),
    "Cosh": ((-3, 3), np.cosh, 9),
    "Asinh": ((-4, 4), np.arcsinh, 9),
    "Acosh": ((1.01, 5), np.arccosh, 9),
    "Atanh": ((-0.99, 0.99), np.arctanh, 9),
}
NO_FLOAT64_IN_ORT = {"Erf", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"}
SHAPES = [(7,), (2, 3, 5), ()]


@pytest.mark.parametrize("op", sorted(FLOAT_OPS))
@pytest.mark.parametrize("shape", SHAPES)
def test_float_ops_shapes(op, shape):
    (low, high), _, _ = FLOAT_OPS[op]
    check_op(op, {"x": rand(*shape, low=low, high=high)}, opset=13 if op in ("Sqrt", "Exp", "Log") else 17)


@pytest.mark.parametrize("op", sorted(FLOAT_OPS))
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_float_ops_dtypes(op, dtype):
    (low, high), reference, _ = FLOAT_OPS[op]
    x = rand(3, 4, dtype=dtype, low=low, high=high)
    if dtype == np.float64 and op in NO_FLOAT64_IN_ORT:
        np.testing.assert_allclose(run_only_braze(op, {"x": x}, opset=22), reference(x), rtol=1e-12, atol=1e-14)
    else:
        check_op(op, {"x": x}, opset=22)


@pytest.mark.parametrize("op", sorted(FLOAT_OPS))
def test_float_ops_first_opset(op):
    (low, high), _, since = FLOAT_OPS[op]
    check_op(op, {"x": rand(2, 4, low=low, high=high)}, opset=max(since, 7))


@pytest.mark.parametrize("op", sorted(FLOAT_OPS) + ["Neg", "Abs", "Sign", "IsNaN"])
def test_bfloat16(op):
    """onnxruntime's Python API takes no bfloat16: compare with float64 math rounded to bfloat16."""
    others = {"Neg": np.negative, "Abs": np.abs, "Sign": np.sign, "IsNaN": np.isnan}
    (low, high), reference, _ = FLOAT_OPS[op] if op in FLOAT_OPS else ((-4, 4), others[op], 0)
    x = rand(3, 4, low=low, high=high).astype(ml_dtypes.bfloat16)
    if op == "IsNaN":
        x[0, 0] = np.nan
    expected = reference(x.astype(np.float64))
    expected = expected if expected.dtype == bool else expected.astype(ml_dtypes.bfloat16)
    out = run_only_braze(op, {"x": x}, opset=22 if op != "IsNaN" else 20)
    assert out.dtype == expected.dtype
    assert_close(out, expected, name=op)


@pytest.mark.parametrize("op", ["Sqrt", "Sin", "Round", "Erf"])
def test_float_ops_refuse_integers(op):
    expect_error(op, {"x": rand(4, dtype=np.int32)}, opset=13, match="int32")


def test_round_halves_to_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6, -2.6], np.float32)
    out = check_op("Round", {"x": x}, opset=11)[0]
    np.testing.assert_array_equal(out, np.array([0, 2, 2, -0, -2, -2, 2, 3, -3], np.float32))


def test_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30], np.float32)
    for op in ("Sqrt", "Exp", "Log", "Reciprocal", "Floor", "Ceil", "Round", "Erf"):
        check_op(op, {"x": x}, opset=13)


@pytest.mark.parametrize("op", ["Neg", "Abs", "Sign"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int8, np.int16, np.int32, np.int64])
def test_signed_ops(op, dtype):
    x = rand(3, 5, dtype=dtype, low=-20, high=20)
    x.flat[0] = 0
    check_op(op, {"x": x}, opset=13)


@pytest.mark.parametrize("op", ["Abs", "Sign"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_unsigned_abs_and_sign(op, dtype):
    x = rand(3, 5, dtype=dtype, low=-20, high=20)
    x.flat[0] = 0
    check_op(op, {"x": x}, opset=13)


def test_integer_extremes():
    x = np.array([np.iinfo(np.int8).min, np.iinfo(np.int8).max, -1, 0], np.int8)
    for op in ("Neg", "Abs", "Sign"):
        check_op(op, {"x": x}, opset=13)


def test_neg_refuses_unsigned():
    expect_error("Neg", {"x": rand(4, dtype=np.uint8)}, opset=13, match="uint8")


@pytest.mark.parametrize("opset", [9, 13, 20])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_is_nan(opset, dtype):
    x = rand(3, 4, dtype=dtype)
    x[0, :2] = np.nan
    x[1, 1] = np.inf
    check_op("IsNaN", {"x": x}, opset=opset)


@pytest.mark.parametrize("detect_negative", [0, 1])
@pytest.mark.parametrize("detect_positive", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_is_inf(detect_negative, detect_positive, dtype):
    x = np.array([[np.inf, -np.inf, np.nan, 0.0], [1.5, -np.inf, np.inf, -2.0]], dtype)
    attrs = {"detect_negative": detect_negative, "detect_positive": detect_positive}
    check_op("IsInf", {"x": x}, attrs, opset=20)


@pytest.mark.parametrize("opset", [10, 20])
def test_is_inf_default(opset):
    check_op("IsInf", {"x": np.array([np.inf, -np.inf, np.nan, 3.0], np.float32)}, opset=opset)
