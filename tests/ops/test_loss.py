"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against onnxruntime."""

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from braze.testing import assert_close

from .harness import check_op, make_model, rand, run_braze
from .test_attention import expect_build_error

SHAPES = [(4, 5), (3, 4, 6), (2, 3, 4, 5)]


def targets(shape, classes, *, dtype=np.int64, ignore=None, seed=0):
    t = np.random.default_rng(seed).integers(0, classes, size=(shape[0], *shape[2:])).astype(dtype)
    if ignore is not None:
        t.reshape(-1)[::3] = ignore
    return t


def loss_inputs(shape, *, weight=False, ignore=None, dtype=np.float32, target_dtype=np.int64):
    inputs = {"x": rand(*shape, dtype=dtype), "t": targets(shape, shape[1], dtype=target_dtype, ignore=ignore)}
    if weight:
        inputs["w"] = rand(shape[1], dtype=dtype, low=0.2, high=2.0, seed=9)
    return inputs


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weight", [False, True])
@pytest.mark.parametrize("opset", [13, 22])
def test_nll_loss(shape, reduction, weight, opset):
    check_op("NegativeLogLikelihoodLoss", loss_inputs(shape, weight=weight), {"reduction": reduction}, opset=opset)


@pytest.mark.parametrize("ignore", [1, -1, 7])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weight", [False, True])
def test_nll_loss_ignore_index(ignore, reduction, weight):
    inputs = loss_inputs((3, 4, 5), weight=weight, ignore=ignore, target_dtype=np.int32)
    check_op("NegativeLogLikelihoodLoss", inputs, {"reduction": reduction, "ignore_index": ignore}, opset=13)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weight", [False, True])
def test_softmax_cross_entropy(shape, reduction, weight):
    check_op("SoftmaxCrossEntropyLoss", loss_inputs(shape, weight=weight), {"reduction": reduction}, opset=13,
             n_outputs=2)


@pytest.mark.parametrize("ignore", [0, -5])
@pytest.mark.parametrize("weight", [False, True])
@pytest.mark.parametrize("opset", [12, 13])
def test_softmax_cross_entropy_ignore_index(ignore, weight, opset):
    inputs = loss_inputs((3, 4, 2, 2), weight=weight, ignore=ignore)
    check_op("SoftmaxCrossEntropyLoss", inputs, {"ignore_index": ignore}, opset=opset)


@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
def test_losses_float16_and_double(op):
    for dtype in (np.float16, np.float64):
        check_op(op, loss_inputs((4, 6, 3), weight=True, dtype=dtype), {"reduction": "mean"}, opset=13)


def test_softmax_cross_entropy_against_torch():
    inputs = loss_inputs((5, 7, 3), weight=True, ignore=2)
    loss, log_prob = run_braze(make_model("SoftmaxCrossEntropyLoss", inputs, {"ignore_index": 2}, opset=13,
                                          n_outputs=2), inputs)
    x, t, w = (torch.from_numpy(v) for v in inputs.values())
    assert_close(loss, F.cross_entropy(x, t, weight=w, ignore_index=2).numpy())
    assert_close(log_prob, F.log_softmax(x, dim=1).numpy())


def test_nll_loss_bfloat16():
    inputs = loss_inputs((4, 5))
    inputs["x"] = inputs["x"].astype(ml_dtypes.bfloat16)
    y = run_braze(make_model("NegativeLogLikelihoodLoss", inputs, opset=22), inputs)[0]
    assert y.dtype == ml_dtypes.bfloat16
    expected = F.nll_loss(torch.from_numpy(inputs["x"].astype(np.float32)), torch.from_numpy(inputs["t"]))
    assert_close(y, expected.numpy(), "bfloat16")


@pytest.mark.parametrize("op,inputs,attrs,match", [
    ("NegativeLogLikelihoodLoss", loss_inputs((3, 4)), {"reduction": "max"}, "reduction"),
    ("NegativeLogLikelihoodLoss", {"x": rand(3, 4), "t": np.zeros((4,), np.int64)}, {}, "target"),
    ("NegativeLogLikelihoodLoss", {"x": rand(3, 4), "t": np.array([0, 4, 1], np.int64)}, {}, r"\[0, 4\)"),
    ("SoftmaxCrossEntropyLoss", {**loss_inputs((3, 4)), "w": rand(3)}, {}, "weight"),
    ("SoftmaxCrossEntropyLoss", {"x": rand(3, 4), "t": np.array([0, -1, 1], np.int64)}, {"ignore_index": 2},
     "ignore_index"),
])
def test_errors(op, inputs, attrs, match):
    expect_build_error(op, inputs, attrs, opset=13, match=match, n_outputs=1)
