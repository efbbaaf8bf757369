"""ONNX's experimental ops (opsets 1 to 9): ImageScaler, ScaledTanh, ParametricSoftplus, against onnxruntime."""

import numpy as np
import onnx
import pytest

from braze.testing import assert_close

from .harness import make_model, rand, run_braze, run_ort
from .test_elementwise import expect_error

OPSET = 9  # the last opset that had them


def check_experimental(op_type: str, x: np.ndarray, attrs: dict, expected: np.ndarray | None = None) -> None:
    """check_op for an op onnx's shape inference no longer knows (the output is declared like the input),
    against onnxruntime or, where it has no kernel (float64, ImageScaler without bias), `expected`."""
    model = make_model(op_type, {"x": x}, attrs, opset=OPSET)
    model.graph.output[0].type.CopyFrom(model.graph.input[0].type)
    onnx.checker.check_model(model)  # experimental ops pass, with a warning
    if expected is None:
        expected = run_ort(model, {"x": x})[0]
    assert_close(run_braze(model, {"x": x})[0], expected, name=op_type)


def test_image_scaler():
    x = rand(2, 3, 4, 5)
    check_experimental("ImageScaler", x, {"scale": 2.0, "bias": [0.1, -0.2, 0.3]})
    check_experimental("ImageScaler", x, {"bias": [1.0, 2.0, 3.0]})
    check_experimental("ImageScaler", x, {"scale": 0.5}, expected=x * 0.5)


SCALED = {"ScaledTanh": lambda x, a, b: a * np.tanh(b * x),
          "ParametricSoftplus": lambda x, a, b: a * np.logaddexp(0, b * x)}


@pytest.mark.parametrize("op", sorted(SCALED))
@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (0.5, 2.0), (-1.5, 0.25)])  # float32-exact attributes
def test_scaled_activations(op, alpha, beta):
    x = rand(3, 7, low=-30, high=30)
    check_experimental(op, x, {"alpha": alpha, "beta": beta})
    x64 = x.astype(np.float64)
    check_experimental(op, x64, {"alpha": alpha, "beta": beta}, expected=SCALED[op](x64, alpha, beta))


def test_image_scaler_checks_its_input():
    expect_error("ImageScaler", {"x": rand(2, 3, 4)}, {"scale": 2.0}, opset=OPSET, match="NCHW")
    expect_error("ImageScaler", {"x": rand(1, 3, 2, 2)}, {"bias": [1.0, 2.0]}, opset=OPSET,
                 match="2 biases for 3 channels")
