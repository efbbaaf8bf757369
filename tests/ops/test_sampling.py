import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

import braze

from .harness import check_op, feeds_of, make_model, rand, run_braze


def i64(*v):
    return np.array(v, np.int64)


def _raises(op_type, inputs, attrs, match, *, opset=20, constants=()):
    model = make_model(op_type, inputs, attrs, opset=opset, constants=constants)
    with pytest.raises(braze.BrazeError, match=f"{op_type.lower()}_node.*{match}"):
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False), braze.BuilderConfig())
        engine.create_execution_context().infer(feeds_of(inputs, constants))


def check_reference(op_type, inputs, attrs, *, opset, atol=1e-5):
    """Against ONNX's reference evaluator (onnxruntime has no kernel for this case)."""
    model = make_model(op_type, inputs, attrs, opset=opset)
    feeds = feeds_of(inputs)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    np.testing.assert_allclose(run_braze(model, feeds)[0], expected, rtol=1e-4, atol=atol)


# -- GridSample --------------------------------------------------------------------------------

PADDING = ["zeros", "border", "reflection"]


@pytest.mark.parametrize("padding", PADDING)
@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
@pytest.mark.parametrize("align", [0, 1])
def test_grid_sample_2d(mode, padding, align):
    x, grid = rand(2, 3, 5, 6), rand(2, 4, 7, 2, low=-1.4, high=1.4, seed=1)
    check_op("GridSample", {"x": x, "grid": grid}, {"mode": mode, "padding_mode": padding, "align_corners": align},
             opset=20)


@pytest.mark.parametrize("padding", PADDING)
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
def test_grid_sample_16(mode, padding):
    x, grid = rand(1, 2, 4, 4), rand(1, 3, 5, 2, low=-1.2, high=1.2, seed=2)
    check_op("GridSample", {"x": x, "grid": grid}, {"mode": mode, "padding_mode": padding}, opset=16)


@pytest.mark.parametrize("padding", PADDING)
@pytest.mark.parametrize("mode", ["linear", "nearest"])
@pytest.mark.parametrize("align", [0, 1])
def test_grid_sample_3d(mode, padding, align):
    x, grid = rand(1, 2, 3, 4, 5), rand(1, 2, 3, 4, 3, low=-1.3, high=1.3, seed=3)
    check_op("GridSample", {"x": x, "grid": grid}, {"mode": mode, "padding_mode": padding, "align_corners": align},
             opset=20)


@pytest.mark.parametrize("padding", ["zeros", "reflection"])
def test_grid_sample_3d_cubic(padding):
    x, grid = rand(1, 1, 3, 4, 4), rand(1, 2, 2, 3, 3, low=-1.3, high=1.3, seed=4)
    check_reference("GridSample", {"x": x, "grid": grid}, {"mode": "cubic", "padding_mode": padding}, opset=20)


@pytest.mark.parametrize("padding", PADDING)
def test_grid_sample_3d_cubic_of_a_2d_image(padding):
    """X constant along depth: 3-D cubic sampling is onnxruntime's 2-D cubic sampling, wherever z falls."""
    x2, grid2 = rand(1, 2, 4, 5), rand(1, 3, 4, 2, low=-1.3, high=1.3, seed=8)
    attrs = {"mode": "cubic", "padding_mode": padding}
    expected = check_op("GridSample", {"x": x2, "grid": grid2}, attrs, opset=20)[0]
    x3 = np.repeat(x2[:, :, None], 5, axis=2)
    z = rand(1, 1, 3, 4, 1, low=-0.2, high=0.2, seed=9)  # the 4 depth taps stay inside the 5 planes
    grid3 = np.concatenate([grid2[:, None], z], axis=-1)
    got = run_braze(make_model("GridSample", {"x": x3, "grid": grid3}, attrs, opset=20), {"x": x3, "grid": grid3})[0]
    np.testing.assert_allclose(got[:, :, 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
def test_grid_sample_1d(mode):
    x, grid = rand(2, 2, 7), rand(2, 5, 1, low=-1.5, high=1.5, seed=5)
    check_reference("GridSample", {"x": x, "grid": grid}, {"mode": mode, "padding_mode": "reflection"}, opset=20)


def test_grid_sample_nearest_ties_round_to_even():
    """Pixel coordinates 0.5 and 1.5 (align_corners=1 over 4 pixels) round to 0 and 2."""
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4)
    grid = np.array([[[[-2 / 3, 0.0], [0.0, 0.0]]]], np.float32)  # x = 0.5, 1.5
    got = run_braze(make_model("GridSample", {"x": x, "grid": grid}, {"mode": "nearest", "align_corners": 1},
                               opset=20), {"x": x, "grid": grid})[0]
    np.testing.assert_array_equal(got.reshape(-1), [0.0, 2.0])


def test_grid_sample_float64_and_float16():
    check_op("GridSample", {"x": rand(1, 2, 4, 5, dtype=np.float64), "grid": rand(1, 3, 3, 2, dtype=np.float64)},
             opset=20)
    check_op("GridSample", {"x": rand(1, 2, 4, 5, dtype=np.float16), "grid": rand(1, 3, 3, 2, dtype=np.float16)},
             opset=20)


def test_grid_sample_errors():
    _raises("GridSample", {"x": rand(1, 1, 4, 4), "grid": rand(1, 2, 2, 3)}, {}, "grid must be")
    _raises("GridSample", {"x": rand(1, 1, 4, 4), "grid": rand(2, 2, 2, 2)}, {}, "grid must be")
    _raises("GridSample", {"x": rand(1, 1, 4, 4), "grid": rand(1, 2, 2, 2)}, {"mode": "bilinear"}, "mode")
    _raises("GridSample", {"x": rand(1, 1, 4, 4), "grid": rand(1, 2, 2, 2)}, {"padding_mode": "wrap"}, "padding")
    _raises("GridSample", {"x": rand(1, 1, 2, 4, 4), "grid": rand(1, 2, 2, 2, 3)}, {}, "X must be", opset=16)
    _raises("GridSample", {"x": rand(1, 1, 4, 4, dtype=np.int32), "grid": rand(1, 2, 2, 2)}, {}, "floating")


# -- AffineGrid --------------------------------------------------------------------------------

@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("size", [(2, 3, 5, 6), (1, 1, 2, 4), (2, 1, 3, 4, 5), (1, 2, 4, 2, 3)])
def test_affine_grid(size, align):
    rank = len(size) - 2
    theta = rand(size[0], rank, rank + 1, seed=6)
    check_op("AffineGrid", {"theta": theta, "size": i64(*size)}, {"align_corners": align}, opset=20,
             constants=("size",))


def test_affine_grid_single_pixel_with_align_corners():
    """One pixel between -1 and 1 sits at 0 (PyTorch; onnxruntime puts it at 1, ONNX's reference at -1)."""
    theta = rand(1, 2, 3, seed=6)
    model = make_model("AffineGrid", {"theta": theta, "size": i64(1, 1, 1, 4)}, {"align_corners": 1}, opset=20,
                       constants=("size",))
    got = run_braze(model, {"theta": theta})[0]
    xs = np.linspace(-1, 1, 4)
    expected = theta[0, :, 0][None, :] * xs[:, None] + theta[0, :, 2][None, :]
    np.testing.assert_allclose(got[0, 0], expected, rtol=1e-6, atol=1e-6)


def test_affine_grid_size_known_only_at_run_time():
    theta = rand(2, 2, 3, seed=7)
    model = make_model("AffineGrid", {"theta": theta, "size": i64(2, 1, 3, 4)}, opset=20)
    for size in [(2, 1, 3, 4), (2, 5, 6, 2)]:
        got = run_braze(model, {"theta": theta, "size": i64(*size)})[0]
        expected = ReferenceEvaluator(model).run(None, {"theta": theta, "size": i64(*size)})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_affine_grid_errors():
    _raises("AffineGrid", {"theta": rand(2, 2, 3), "size": i64(2, 1, 4)}, {}, "size must be", constants=("size",))
    _raises("AffineGrid", {"theta": rand(2, 3, 4), "size": i64(2, 1, 4, 4)}, {}, "theta must be",
            constants=("size",))
    _raises("AffineGrid", {"theta": rand(1, 2, 3), "size": i64(2, 1, 4, 4)}, {}, "theta must be",
            constants=("size",))
