"""Declared dims of -1 or 0 on graph inputs, as Paddle's exporter and others write them, mean "dynamic": a shape
given for them is taken; without one, the error says which dims are dynamic and how to give them."""

from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort
import pytest

import braze
from braze.errors import ShapeError
from braze.testing import assert_close

F = onnx.TensorProto.FLOAT


def paddle_style(shape):
    """x -> Relu -> Conv (3 -> 2 channels, 1x1) as exporters declaring dynamic dims by number write it."""
    w = onnx.numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1) / 6, "w")
    graph = oh.make_graph([oh.make_node("Relu", ["x"], ["r"]), oh.make_node("Conv", ["r", "w"], ["y"])], "g",
                          [oh.make_tensor_value_info("x", F, shape)],
                          [oh.make_tensor_value_info("y", F, [shape[0], 2, shape[2], shape[3]])], [w])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])


def build(model, **shapes):
    return braze.Builder("cpu").build(model, braze.BuilderConfig(shapes=shapes, progress=False))


@pytest.mark.parametrize("declared", [[-1, 3, -1, -1], [0, 3, 0, 0], [-1, 3, 0, -1]])
def test_a_shape_given_for_dims_declared_minus_one_or_zero_is_taken(declared):
    engine = build(paddle_style(declared), x=(2, 3, 5, 7))
    x = np.random.RandomState(0).randn(2, 3, 5, 7).astype(np.float32)
    y = engine.create_execution_context().infer({"x": x})["y"]
    w = np.arange(6, dtype=np.float32).reshape(2, 3) / 6
    assert_close(y, np.einsum("oc,nchw->nohw", w, np.maximum(x, 0)), rtol=1e-5, atol=1e-6)


def test_without_a_shape_the_error_names_the_dynamic_dims_and_how_to_give_them():
    with pytest.raises(ShapeError, match=r"input\(s\) 'x' \[\?,3,\?,\?\] \(dynamic dims 0, 2, 3\) have dims that "
                                         r"are not fixed; give their shapes, e.g. --shapes x:Nx3xNxN"):
        build(paddle_style([-1, 3, -1, -1]))


def test_a_fixed_dim_beside_them_still_has_to_match():
    with pytest.raises(ShapeError, match=r"input 'x' is \[\?,3,\?,\?\] in the model; the shape given, "
                                         r"\[2,4,5,7\], differs in dim 1"):
        build(paddle_style([-1, 3, -1, -1]), x=(2, 4, 5, 7))


PPOCR_CLS = Path(__file__).parents[2] / ".models" / "ppocr_cls.onnx"


@pytest.mark.skipif(not PPOCR_CLS.exists(), reason="run scripts/fetch_models.py ppocr_cls first")
def test_paddle_exported_classifier_declared_minus_one_builds_for_the_shape_given():
    """PaddleOCR's text-direction classifier, as Paddle exports it: input x declared [-1, 3, ?, ?]."""
    with pytest.raises(ShapeError, match=r"'x' \[\?,3,\?,\?\] \(dynamic dims 0, 2, 3\)"):
        build(onnx.load(PPOCR_CLS))
    x = np.random.RandomState(0).rand(2, 3, 48, 192).astype(np.float32)
    (got,) = build(onnx.load(PPOCR_CLS), x=x.shape).create_execution_context().infer({"x": x}).values()
    (expected,) = ort.InferenceSession(str(PPOCR_CLS), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert_close(got, expected, rtol=1e-4, atol=1e-5)
