import ml_dtypes
import numpy as np
import pytest

import braze
from braze.testing import assert_close

from .harness import check_op, make_model, rand, run_braze

MODES = ["constant", "reflect", "edge"]


def _pad(x, pads, mode="constant", value=None, axes=None, opset=18, constant=True):
    inputs = {"x": x, "pads": np.array(pads, dtype=np.int64), "value": value,
              "axes": None if axes is None else np.array(axes, dtype=np.int64)}
    return check_op("Pad", inputs, {"mode": mode}, opset=opset,
                    constants=("pads", "axes") if constant else ("axes",))


def _raises(inputs, attrs, match, opset=18, constants=("pads", "axes")):
    model = make_model("Pad", inputs, attrs, opset=opset, constants=constants)
    with pytest.raises(braze.BrazeError, match=f"pad_node.*{match}"):
        braze.Builder("cpu").build(braze.parse_onnx(model, check=False))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,pads", [((5,), [2, 3]), ((3, 4), [1, 2, 2, 1]), ((3, 4), [0, 0, 0, 3]),
                                        ((2, 3, 4, 5), [0, 0, 1, 2, 0, 0, 2, 1]), ((3, 4), [0, 0, 0, 0])])
@pytest.mark.parametrize("opset", [11, 13, 18])
def test_pad(mode, shape, pads, opset):
    _pad(rand(*shape), pads, mode, opset=opset)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pads", [[-1, 2, 1, -2], [-2, -1, 0, -1], [2, -2, -1, 3]])
def test_negative_pads_crop(mode, pads):
    _pad(rand(5, 6), pads, mode)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32, np.int64, np.uint8, np.int8])
@pytest.mark.parametrize("mode", MODES)
def test_dtypes(dtype, mode):
    x = rand(3, 4, dtype=dtype, low=0 if dtype == np.uint8 else -2.0, high=9 if dtype == np.uint8 else 2.0)
    _pad(x, [1, 2, 2, 1], mode, value=np.array(7, dtype=dtype) if mode == "constant" else None)


def test_bool_constant():
    _pad(rand(3, 4, dtype=np.bool_), [1, 0, 0, 2], value=np.array(True))


@pytest.mark.parametrize("value", [np.array(2.5, np.float32), np.array([-1.5], np.float32)])
def test_constant_value(value):
    _pad(rand(3, 4), [1, 1, 2, 0], value=value)


def test_pads_and_value_at_run_time():
    _pad(rand(3, 4), [1, -1, 0, 2], value=np.array(3.0, np.float32), opset=13, constant=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axes,pads", [([1], [2, 1]), ([-1, 0], [1, 0, 2, 1]), ([2], [-1, 2])])
def test_axes(mode, axes, pads):
    _pad(rand(3, 4, 5), pads, mode, axes=axes)


@pytest.mark.parametrize("shape,pads,axes", [((5,), [3, 7], None), ((3, 4), [1, 2, 9, 0], None),
                                             ((2, 3, 4), [-1, 5], [2])])
def test_wrap(shape, pads, axes):
    _pad(rand(*shape), pads, "wrap", axes=axes, opset=19)


@pytest.mark.parametrize("mode", MODES)
def test_pad_2_attributes(mode):
    check_op("Pad", {"x": rand(3, 4)}, {"pads": [1, 0, 2, 2], "mode": mode, "value": 1.5}, opset=7)


def test_edge_of_single_element_axis():
    _pad(rand(1, 4), [2, 1, 3, 0], "edge")


def test_bad_mode():
    _raises({"x": rand(3, 4), "pads": np.zeros(4, np.int64)}, {"mode": "mirror"}, "mode 'mirror'")


def test_wrap_needs_opset_19():
    _raises({"x": rand(3, 4), "pads": np.ones(4, np.int64)}, {"mode": "wrap"}, "needs opset 19")


def test_pads_of_the_wrong_length():
    _raises({"x": rand(3, 4), "pads": np.ones(3, np.int64)}, {}, "pads has 3 values")


def test_crop_past_the_end():
    _raises({"x": rand(3, 4), "pads": np.array([-2, 0, -2, 0])}, {}, "remove 4 elements from axis 0")


def test_bad_axes():
    _raises({"x": rand(3, 4), "pads": np.ones(2, np.int64), "value": None, "axes": np.array([2])}, {},
            "axis 2 is out of range")


def test_reflect_an_empty_axis():
    _raises({"x": np.zeros((0, 3), np.float32), "pads": np.array([1, 0, 1, 0])}, {"mode": "reflect"}, "empty")


def test_reflect_further_than_the_axis_repeats_like_numpy():
    # onnxruntime refuses reflect pads longer than the axis; braze reflects again, as numpy does.
    x = rand(3, 2)
    inputs = {"x": x, "pads": np.array([4, 1, 5, 3])}
    (got,) = run_braze(make_model("Pad", inputs, {"mode": "reflect"}, opset=18, constants=("pads",)), {"x": x})
    assert np.array_equal(got, np.pad(x, [(4, 5), (1, 3)], mode="reflect"))


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16(mode):
    x = rand(3, 4).astype(ml_dtypes.bfloat16)
    inputs = {"pads": np.array([1, -1, 2, 2])}
    expected = check_op("Pad", {"x": x.astype(np.float32), **inputs}, {"mode": mode}, opset=18, constants=("pads",))
    (actual,) = run_braze(make_model("Pad", {"x": x, **inputs}, {"mode": mode}, opset=18, constants=("pads",)),
                          {"x": x})
    assert actual.dtype == ml_dtypes.bfloat16
    assert_close(actual, expected[0], "bfloat16")
