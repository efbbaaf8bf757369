import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

import braze
from braze.ops import resize as resize_ops
from braze.testing import assert_close

from .harness import check_op, make_model, rand, run_braze, run_ort

COORDINATES = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]


def _resize(x, scales=None, sizes=None, roi=None, opset=19, constant=True, **attrs):
    inputs = {"x": x, "roi": roi,
              "scales": None if scales is None else np.array(scales, dtype=np.float32),
              "sizes": None if sizes is None else np.array(sizes, dtype=np.int64)}
    return check_op("Resize", inputs, attrs, opset=opset, constants=("roi", "scales", "sizes") if constant else ())


def _raises(inputs, attrs, match, opset=19, op="Resize"):
    model = make_model(op, inputs, attrs, opset=opset, constants=("roi", "scales", "sizes"))
    with pytest.raises(braze.BrazeError, match=f"{op.lower()}_node.*{match}"):
        braze.Builder("cpu").build(braze.parse_onnx(model, check=False))


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 0.5, 0.6], [1, 1, 1.75, 0.8]])
def test_nearest_scales(nearest_mode, coordinates, scales):
    _resize(rand(1, 2, 4, 5), scales=scales, mode="nearest", nearest_mode=nearest_mode,
            coordinate_transformation_mode=coordinates)


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("sizes", [[2, 3, 7, 9], [2, 3, 3, 2], [1, 3, 5, 1]])
def test_nearest_sizes_every_axis(coordinates, sizes):
    _resize(rand(2, 3, 5, 4), sizes=sizes, mode="nearest", coordinate_transformation_mode=coordinates, opset=13)


@pytest.mark.parametrize("coordinates", COORDINATES + ["tf_half_pixel_for_nn"])
@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "ceil"])
def test_nearest_opset_11(coordinates, nearest_mode):
    _resize(rand(1, 1, 4, 6), scales=[1, 1, 2.5, 0.5], roi=np.array([], np.float32), mode="nearest",
            nearest_mode=nearest_mode, coordinate_transformation_mode=coordinates, opset=11)


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("shape,scales", [((1, 2, 4, 5), [1, 1, 2, 3]), ((1, 2, 6, 8), [1, 1, 0.5, 0.75]),
                                          ((2, 5, 5), [1, 1.6, 0.6]), ((4, 6), [1.5, 0.5]),
                                          ((1, 2, 3, 4, 5), [1, 1, 2, 1.5, 0.8])])
def test_linear_scales(coordinates, shape, scales):
    _resize(rand(*shape), scales=scales, mode="linear", coordinate_transformation_mode=coordinates)


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("sizes", [[1, 2, 9, 7], [1, 2, 3, 2], [1, 2, 1, 8]])
@pytest.mark.parametrize("opset", [11, 13, 18])
def test_linear_sizes(coordinates, sizes, opset):
    roi = np.array([], np.float32) if opset == 11 else None
    scales = np.array([], np.float32) if opset == 11 else None
    inputs = {"x": rand(1, 2, 4, 5), "roi": roi, "scales": scales, "sizes": np.array(sizes)}
    check_op("Resize", inputs, {"mode": "linear", "coordinate_transformation_mode": coordinates}, opset=opset,
             constants=("roi", "scales", "sizes"))


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("a", [-0.75, -0.5])
@pytest.mark.parametrize("exclude_outside", [0, 1])
@pytest.mark.parametrize("scales", [[1, 1, 2, 1.6], [1, 1, 0.5, 0.8]])
def test_cubic(coordinates, a, exclude_outside, scales):
    _resize(rand(1, 2, 6, 5), scales=scales, mode="cubic", coordinate_transformation_mode=coordinates,
            cubic_coeff_a=a, exclude_outside=exclude_outside)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("roi", [[0, 0, 0.2, 0.3, 1, 1, 0.8, 0.9], [0, 0, -0.3, 0.4, 1, 1, 1.2, 1.1]])
@pytest.mark.parametrize("extrapolation_value", [0.0, -7.5])
def test_tf_crop_and_resize(mode, roi, extrapolation_value):
    _resize(rand(1, 1, 5, 6), sizes=[1, 1, 4, 7], roi=np.array(roi, np.float32), mode=mode,
            coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=extrapolation_value)


def test_tf_crop_and_resize_axes():
    _resize(rand(1, 1, 5, 6), sizes=[3, 3], roi=np.array([0.4, 0.6, 0.6, 0.8], np.float32), axes=[2, 3],
            mode="linear", coordinate_transformation_mode="tf_crop_and_resize", opset=18)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("scales", [[1, 1, 0.5, 0.6], [1, 1, 0.3, 1.5], [1, 1, 0.25, 0.25]])
@pytest.mark.parametrize("exclude_outside", [0, 1])
def test_antialias(mode, scales, exclude_outside):
    x = rand(1, 2, 12, 10)
    attrs = {"mode": mode, "antialias": 1, "exclude_outside": exclude_outside}
    if not (exclude_outside and mode == "linear"):
        _resize(x, scales=scales, opset=18, **attrs)
        return
    # onnxruntime refuses exclude_outside with linear: the ONNX reference is the oracle.
    model = make_model("Resize", {"x": x, "roi": None, "scales": np.array(scales, np.float32)}, attrs, opset=18,
                       constants=("scales",))
    np.testing.assert_allclose(run_braze(model, {"x": x})[0], ReferenceEvaluator(model).run(None, {"x": x})[0],
                               rtol=1e-5, atol=1e-6)


def test_antialias_sizes():
    _resize(rand(1, 1, 16, 16), sizes=[1, 1, 5, 7], mode="linear", antialias=1)
    _resize(rand(1, 1, 16, 16), sizes=[1, 1, 5, 7], mode="cubic", antialias=1)


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("axes,sizes", [([2, 3], [7, 5]), ([3, 2], [3, 8])])
def test_axes_and_aspect_ratio(policy, mode, axes, sizes):
    _resize(rand(1, 2, 4, 6), sizes=sizes, axes=axes, keep_aspect_ratio_policy=policy, mode=mode, opset=18)


def test_negative_axes():
    # onnxruntime indexes with negative axes as they are: the positive axes' result is the oracle.
    x = rand(1, 2, 4, 6)
    (expected,) = _resize(x, sizes=[3, 8], axes=[3, 2], mode="linear", opset=18)
    inputs = {"x": x, "roi": None, "scales": None, "sizes": np.array([3, 8])}
    model = make_model("Resize", inputs, {"axes": [-1, -2], "mode": "linear"}, opset=18, constants=("sizes",))
    (got,) = run_braze(model, {"x": x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_align_corners_uses_the_fractional_output_width(mode):
    # As the ONNX reference (and its conformance tests) has it; onnxruntime uses the floored width.
    x = rand(1, 1, 4, 5)
    inputs = {"x": x, "roi": None, "scales": np.array([1, 1, 0.6, 0.7], np.float32)}
    attrs = {"mode": mode, "coordinate_transformation_mode": "align_corners"}
    model = make_model("Resize", inputs, attrs, opset=19, constants=("scales",))
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    (got,) = run_braze(model, {"x": x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_scales_with_axes():
    _resize(rand(1, 2, 4, 6), scales=[2.0, 0.5], axes=[3, 2], mode="linear", opset=18)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("scales", [[1, 1, 1.7, 2.3], [1, 1, 0.55, 0.7]])
def test_half_pixel_symmetric(mode, scales):
    _resize(rand(1, 1, 5, 6), scales=scales, mode=mode, coordinate_transformation_mode="half_pixel_symmetric")


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int8, np.uint8])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_dtypes(dtype, mode):
    wide = dtype in (np.int32, np.int8, np.uint8)
    x = rand(1, 2, 4, 5, dtype=dtype, low=0 if wide else -2.0, high=100 if wide else 2.0)
    _resize(x, scales=[1, 1, 2, 1.6], mode=mode)
    _resize(x, sizes=[1, 2, 3, 3], mode=mode)


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.bool_])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_types_onnxruntime_lacks(dtype, mode):
    # onnxruntime's Resize lacks these types: the float32 result, cast, is the oracle.
    if dtype == np.bool_ and mode != "nearest":
        return
    x = rand(1, 1, 3, 4, dtype=dtype, low=-50 if dtype == np.int64 else -2.0, high=50 if dtype == np.int64 else 2.0)
    scales = np.array([1, 1, 2, 0.5], np.float32)
    (expected,) = _resize(x.astype(np.float32), scales=scales, mode=mode)
    model = make_model("Resize", {"x": x, "roi": None, "scales": scales}, {"mode": mode}, opset=19,
                       constants=("scales",))
    (got,) = run_braze(model, {"x": x})
    assert got.dtype == x.dtype
    if dtype == np.float64:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    else:
        assert np.array_equal(got, expected.astype(dtype))


def test_scales_at_run_time():
    _resize(rand(1, 2, 4, 5), scales=[1, 1, 2, 0.6], mode="linear", constant=False)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 0.5, 0.6], [1, 1, 1.5, 1.0]])
def test_resize_10(mode, scales):
    check_op("Resize", {"x": rand(1, 2, 4, 5), "scales": np.array(scales, np.float32)}, {"mode": mode}, opset=10,
             constants=("scales",))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 1.5, 2.5]])
def test_upsample(mode, scales):
    x = rand(1, 2, 3, 4)
    for opset, inputs, attrs in [(9, {"x": x, "scales": np.array(scales, np.float32)}, {"mode": mode}),
                                 (7, {"x": x}, {"mode": mode, "scales": [float(v) for v in scales]})]:
        model = make_model("Upsample", inputs, attrs, opset=opset, constants=("scales",))
        output = model.graph.output[0].type.tensor_type  # ONNX infers nothing here
        output.elem_type = onnx.TensorProto.FLOAT
        for name in "nchw":
            output.shape.dim.add().dim_param = name
        assert_close(run_braze(model, {"x": x})[0], run_ort(model, {"x": x})[0])


@pytest.mark.parametrize("mode,coordinates,a", [
    ("linear", "half_pixel", -0.75), ("linear", "align_corners", -0.75), ("linear", "pytorch_half_pixel", -0.75),
    ("cubic", "half_pixel", -0.75), ("cubic", "align_corners", -0.75)])
@pytest.mark.parametrize("shape,scales,sizes", [
    ((2, 3, 5, 8), [1, 1, 2, 1.5], None), ((2, 3, 8, 10), [1, 1, 0.5, 0.6], None),
    ((2, 3, 5, 7), None, [2, 3, 9, 4]), ((3, 10), [1, 1.7], None), ((2, 2, 3, 4, 6), [1, 1, 2, 1, 0.5], None)])
def test_torch_fast_path_equals_general_path(mode, coordinates, a, shape, scales, sizes):
    x = torch.from_numpy(rand(*shape)).double()
    how = resize_ops._Sampling(mode, coordinates, cubic_a=a)
    geometry = resize_ops._active(resize_ops._geometry(shape, scales, sizes, None, None), how)
    fast = resize_ops._with_torch(x, geometry, how)
    if mode == "cubic" and len(shape) != 4:
        assert fast is None
        return
    assert fast is not None
    torch.testing.assert_close(fast, resize_ops._general(x, geometry, how), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("how,scales,sizes", [
    (dict(mode="linear", antialias=True), [1, 1, 0.5, 0.5], None),
    (dict(mode="cubic", exclude_outside=True), [1, 1, 2, 2], None),
    (dict(mode="cubic", cubic_a=-0.5), [1, 1, 2, 2], None),
    (dict(mode="cubic"), [1, 2, 2, 2], None),
    (dict(mode="linear", coordinates="asymmetric"), [1, 1, 2, 2], None),
    (dict(mode="linear", coordinates="align_corners"), [1, 1, 2, 1.5], None),
    (dict(mode="linear", coordinates="pytorch_half_pixel"), None, [1, 2, 1, 5]),
    (dict(mode="linear", coordinates="tf_crop_and_resize"), [1, 1, 2, 2], None),
])
def test_torch_fast_path_declines(how, scales, sizes):
    how = resize_ops._Sampling(**how)
    geometry = resize_ops._active(resize_ops._geometry((1, 2, 4, 5), scales, sizes, None, None), how)
    assert resize_ops._with_torch(torch.ones(1, 2, 4, 5), geometry, how) is None


@pytest.mark.parametrize("inputs,attrs,match", [
    ({"scales": [1, 1, 2, 2]}, {"mode": "bilinear"}, "mode 'bilinear'"),
    ({"scales": [1, 1, 2, 2]}, {"coordinate_transformation_mode": "corners"}, "coordinate_transformation_mode"),
    ({"scales": [1, 1, 2, 2]}, {"nearest_mode": "round"}, "nearest_mode 'round'"),
    ({"scales": [1, 2, 2]}, {}, "scales has 3 values for 4 axes"),
    ({"scales": [1, 1, 0, 2]}, {}, "greater than 0"),
    ({"scales": [1, 1, 2, 2], "sizes": [1, 1, 4, 4]}, {}, "exactly one of scales and sizes"),
    ({}, {}, "neither scales nor sizes"),
    ({"scales": [1, 1, 0.5, 0.5]}, {"antialias": 1}, "antialias"),
    ({"sizes": [4, 4]}, {"axes": [2, 2]}, "twice"),
    ({"sizes": [4, 4]}, {"axes": [2, 4]}, "out of range"),
    ({"sizes": [1, 1, 4, 4]}, {"keep_aspect_ratio_policy": "fit"}, "keep_aspect_ratio_policy 'fit'"),
    ({"sizes": [1, 1, 4, 4]}, {"coordinate_transformation_mode": "tf_crop_and_resize"}, "needs the roi"),
])
def test_errors(inputs, attrs, match):
    full = {"x": rand(1, 2, 3, 4), "roi": None,
            "scales": np.array(inputs["scales"], np.float32) if "scales" in inputs else None,
            "sizes": np.array(inputs["sizes"], np.int64) if "sizes" in inputs else None}
    _raises(full, attrs, match)


def test_half_pixel_symmetric_needs_opset_19():
    _raises({"x": rand(1, 1, 3, 4), "roi": None, "scales": np.array([1, 1, 2, 2], np.float32)},
            {"coordinate_transformation_mode": "half_pixel_symmetric"}, "half_pixel_symmetric", opset=18)


def test_resize_10_has_no_cubic():
    _raises({"x": rand(1, 1, 3, 4), "scales": np.array([1, 1, 2, 2], np.float32)}, {"mode": "cubic"},
            "mode 'cubic'", opset=10)


def test_upsample_below_1():
    _raises({"x": rand(1, 1, 3, 4), "scales": np.array([1, 1, 0.5, 2], np.float32)}, {}, "at least 1",
            opset=9, op="Upsample")


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_bfloat16_matches_float32(mode):
    x = rand(1, 2, 4, 5).astype(ml_dtypes.bfloat16)
    scales = np.array([1, 1, 2, 0.6], np.float32)
    (expected,) = _resize(x.astype(np.float32), scales=scales, mode=mode)
    model = make_model("Resize", {"x": x, "roi": None, "scales": scales}, {"mode": mode}, opset=19,
                       constants=("scales",))
    (actual,) = run_braze(model, {"x": x})
    assert actual.dtype == ml_dtypes.bfloat16
    assert_close(actual, expected, "bfloat16")
