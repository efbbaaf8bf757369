import math

import ml_dtypes
import numpy as np
import pytest

from braze.testing import assert_close

from .harness import check_op, rand
from .test_elementwise import expect_error, run_only_braze

FLOATS = [np.float32, np.float16, np.float64]
SHAPES = [(7,), (2, 3, 5), (1, 4, 3, 3), ()]

# op -> the opset of its newest definition in onnx 1.23, and attribute sets to try
ACTIVATIONS = {
    "Relu": (14, [{}]),
    "Sigmoid": (13, [{}]),
    "Tanh": (13, [{}]),
    "Softsign": (22, [{}]),
    "Softplus": (22, [{}]),
    "LeakyRelu": (16, [{}, {"alpha": 0.3}, {"alpha": -1.5}]),
    "HardSigmoid": (22, [{}, {"alpha": 0.5, "beta": 0.1}, {"alpha": -0.25}]),
    "HardSwish": (22, [{}]),
    "Elu": (22, [{}, {"alpha": 0.5}, {"alpha": 2.0}]),
    "Selu": (22, [{}, {"alpha": 2.0}, {"alpha": 1.5, "gamma": 0.7}]),
    "Celu": (12, [{}, {"alpha": 0.5}, {"alpha": 3.0}]),
    "ThresholdedRelu": (22, [{}, {"alpha": 0.5}, {"alpha": -0.5}]),
    "Mish": (22, [{}]),
    "Gelu": (20, [{}, {"approximate": "none"}, {"approximate": "tanh"}]),
}
FIRST_OPSET = {"Relu": 6, "Sigmoid": 6, "Tanh": 6, "Softsign": 1, "Softplus": 1, "LeakyRelu": 6, "HardSigmoid": 6,
               "HardSwish": 14, "Elu": 6, "Selu": 6, "Celu": 12, "ThresholdedRelu": 10, "Mish": 18, "Gelu": 20}


@pytest.mark.parametrize("op", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape", SHAPES)
def test_activation_shapes(op, shape):
    check_op(op, {"x": rand(*shape, low=-4, high=4)}, opset=ACTIVATIONS[op][0])


def reference(op: str, x: np.ndarray, attrs: dict) -> np.ndarray:
    """The activation in float64 numpy, for the dtypes onnxruntime lacks at the newest opsets."""
    x = x.astype(np.float64)
    alpha = attrs.get("alpha")
    softplus = np.log1p(np.exp(x))
    if op == "Relu":
        return np.maximum(x, 0)
    if op == "Sigmoid":
        return 1 / (1 + np.exp(-x))
    if op == "Tanh":
        return np.tanh(x)
    if op == "Softsign":
        return x / (1 + np.abs(x))
    if op == "Softplus":
        return softplus
    if op == "LeakyRelu":
        return np.where(x < 0, (0.01 if alpha is None else alpha) * x, x)
    if op == "HardSigmoid":
        return np.clip((0.2 if alpha is None else alpha) * x + attrs.get("beta", 0.5), 0, 1)
    if op == "HardSwish":
        return x * np.clip(x / 6 + 0.5, 0, 1)
    if op == "Elu":
        return np.where(x < 0, (1.0 if alpha is None else alpha) * np.expm1(x), x)
    if op == "Selu":
        a = 1.67326319217681884765625 if alpha is None else alpha
        return attrs.get("gamma", 1.05070102214813232421875) * np.where(x <= 0, a * np.expm1(x), x)
    if op == "Celu":
        a = 1.0 if alpha is None else alpha
        return np.maximum(x, 0) + np.minimum(0, a * np.expm1(x / a))
    if op == "ThresholdedRelu":
        return np.where(x > (1.0 if alpha is None else alpha), x, 0)
    if op == "Mish":
        return x * np.tanh(softplus)
    if op == "Gelu":
        if attrs.get("approximate", "none") == "tanh":
            return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))
    raise KeyError(op)


@pytest.mark.parametrize("op,attrs", [(op, a) for op, (_, sets) in sorted(ACTIVATIONS.items()) for a in sets])
def test_activation_attributes(op, attrs):
    check_op(op, {"x": rand(3, 4, 5, low=-4, high=4)}, attrs, opset=ACTIVATIONS[op][0])


@pytest.mark.parametrize("op,attrs", [(op, a) for op, (_, sets) in sorted(ACTIVATIONS.items()) for a in sets])
@pytest.mark.parametrize("dtype", FLOATS)
def test_activation_dtypes(op, attrs, dtype):
    x = rand(3, 4, 5, dtype=dtype, low=-4, high=4)
    out = run_only_braze(op, {"x": x}, attrs, opset=ACTIVATIONS[op][0])
    assert out.dtype == dtype
    assert_close(out, reference(op, x, attrs).astype(dtype), name=op)


@pytest.mark.parametrize("op", sorted(ACTIVATIONS))
def test_activation_bfloat16(op):
    x = rand(3, 7, low=-4, high=4).astype(ml_dtypes.bfloat16)
    out = run_only_braze(op, {"x": x}, opset=ACTIVATIONS[op][0])
    assert out.dtype == x.dtype
    assert_close(out, reference(op, x, {}).astype(ml_dtypes.bfloat16), name=op)


@pytest.mark.parametrize("op,dtype,opset", [
    ("Relu", np.float16, 14), ("Relu", np.float64, 14), ("Sigmoid", np.float16, 13), ("Sigmoid", np.float64, 13),
    ("Tanh", np.float16, 13), ("Tanh", np.float64, 13), ("LeakyRelu", np.float16, 16), ("LeakyRelu", np.float64, 16),
    ("Softsign", np.float16, 22), ("Softplus", np.float16, 22), ("HardSigmoid", np.float16, 22),
    ("HardSwish", np.float16, 22), ("Elu", np.float16, 22), ("Selu", np.float16, 22), ("Mish", np.float16, 22),
    ("Mish", np.float64, 18), ("ThresholdedRelu", np.float16, 22), ("Gelu", np.float16, 20)])
def test_activation_dtypes_against_onnxruntime(op, dtype, opset):
    check_op(op, {"x": rand(4, 6, dtype=dtype, low=-4, high=4)}, opset=opset)


@pytest.mark.parametrize("op", sorted(FIRST_OPSET))
def test_activation_first_opset(op):
    check_op(op, {"x": rand(2, 6, low=-4, high=4)}, opset=FIRST_OPSET[op])


@pytest.mark.parametrize("dtype", [np.int8, np.int32])
def test_relu_integers(dtype):
    check_op("Relu", {"x": rand(3, 5, dtype=dtype)}, opset=14)


def test_relu_int64():
    x = rand(3, 5, dtype=np.int64)
    np.testing.assert_array_equal(run_only_braze("Relu", {"x": x}, opset=14), np.maximum(x, 0))


@pytest.mark.parametrize("op", ["Sigmoid", "LeakyRelu", "Gelu", "Softplus"])
def test_float_activations_refuse_integers(op):
    expect_error(op, {"x": rand(4, dtype=np.int32)}, opset=ACTIVATIONS[op][0], match="int32")


def test_gelu_bad_approximation_is_an_error():
    expect_error("Gelu", {"x": rand(4)}, {"approximate": "fast"}, opset=20, match="approximate")


# -- PRelu ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (1,), (4,), (2, 3, 5, 4), ()])
@pytest.mark.parametrize("opset", [9, 16])
def test_prelu_slope_broadcast(slope_shape, opset):
    check_op("PRelu", {"x": rand(2, 3, 5, 4), "slope": rand(*slope_shape, low=0.01, high=0.5, seed=3)}, opset=opset)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32, np.int64])
def test_prelu_dtypes(dtype):
    check_op("PRelu", {"x": rand(2, 3, 4, dtype=dtype), "slope": rand(3, 1, dtype=dtype, seed=4)}, opset=16)


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_prelu_unsigned_is_identity(dtype):
    x = rand(2, 3, dtype=dtype)
    np.testing.assert_array_equal(run_only_braze("PRelu", {"x": x, "slope": rand(3, dtype=dtype, seed=4)}, opset=16), x)


def test_prelu_slope_as_initializer():
    check_op("PRelu", {"x": rand(1, 4, 3, 3), "slope": rand(4, 1, 1, seed=5)}, opset=16, constants=("slope",))


@pytest.mark.parametrize("slope_shape", [(5,), (2, 2, 3, 4)])
def test_prelu_slope_that_does_not_broadcast_to_x_is_an_error(slope_shape):
    expect_error("PRelu", {"x": rand(2, 3, 4), "slope": rand(*slope_shape)}, opset=16, match="slope")


# -- Clip ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("attrs", [{}, {"min": -0.5}, {"max": 0.7}, {"min": -1.0, "max": 1.5}])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_clip_attributes_before_opset_11(attrs, dtype):
    check_op("Clip", {"x": rand(3, 4, dtype=dtype)}, attrs, opset=6)


def test_clip_attributes_float64():
    x = rand(3, 4, dtype=np.float64)
    out = run_only_braze("Clip", {"x": x}, {"min": -0.5, "max": 0.25}, opset=6)
    np.testing.assert_array_equal(out, np.clip(x, -0.5, 0.25))


CLIP_BOUNDS = [(None, None), (-0.5, None), (None, 0.7), (-1.0, 1.5), (1.0, 0.0)]


@pytest.mark.parametrize("bounds", CLIP_BOUNDS)
@pytest.mark.parametrize("opset", [11, 12, 13])
@pytest.mark.parametrize("constant", [False, True])
def test_clip_inputs(bounds, opset, constant):
    lo, hi = (None if b is None else np.array(b, np.float32) for b in bounds)
    inputs = [("x", rand(2, 3, 4)), ("min", lo), ("max", hi)]
    check_op("Clip", inputs, opset=opset, constants=("min", "max") if constant else ())


def test_clip_max_only_with_min_omitted_in_the_middle():
    check_op("Clip", [("x", rand(3, 4)), ("min", None), ("max", np.array(0.25, np.float32))], opset=13)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int8, np.int32, np.int64, np.uint8, np.uint32, np.uint64])
def test_clip_dtypes(dtype):
    x = rand(3, 5, dtype=dtype, low=-20 if dtype != np.uint8 else 0, high=20)
    lo, hi = np.array(-3 if np.dtype(dtype).kind != "u" else 3, dtype), np.array(7, dtype)
    if dtype in (np.uint32, np.uint64):  # onnxruntime has no Clip for these
        x[0, 0] = np.iinfo(dtype).max
        out = run_only_braze("Clip", {"x": x, "min": lo, "max": hi}, opset=13)
        np.testing.assert_array_equal(out, np.clip(x, lo, hi))
    else:
        check_op("Clip", {"x": x, "min": lo, "max": hi}, opset=13)


def test_clip_bounds_of_shape_one():
    check_op("Clip", {"x": rand(2, 3), "min": np.array([-0.5], np.float32), "max": np.array([0.5], np.float32)},
             opset=13)


def test_clip_bounds_that_are_not_scalars_are_an_error():
    expect_error("Clip", {"x": rand(2, 3), "min": rand(3)}, opset=13, match="min")


def test_clip_bound_of_another_dtype_is_an_error():
    expect_error("Clip", {"x": rand(2, 3), "min": np.array(0, np.int64)}, opset=13, match="int64")
