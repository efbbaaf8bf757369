import ml_dtypes
import numpy as np
import pytest

import braze

from braze.testing import assert_close

from .harness import check_op, make_model, rand, run_braze, run_ort

REDUCE = ["ReduceSum", "ReduceSumSquare", "ReduceMean", "ReduceProd", "ReduceMax", "ReduceMin",
          "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"]
AXES_INPUT_FROM = {op: 13 if op == "ReduceSum" else 18 for op in REDUCE}
POSITIVE = ("ReduceLogSum",)  # log of a sum: keep the sums positive


def _x(op, *shape, dtype=np.float32):
    return rand(*shape, dtype=dtype, low=0.1 if op in POSITIVE else -2.0)


def _reduce(op, x, axes, opset, keepdims=None, **attrs):
    if keepdims is not None:
        attrs["keepdims"] = keepdims
    if opset >= AXES_INPUT_FROM[op]:
        inputs = {"x": x, "axes": None if axes is None else np.array(axes, dtype=np.int64)}
        return check_op(op, inputs, attrs, opset=opset, constants=("axes",))
    if axes is not None:
        attrs["axes"] = axes
    return check_op(op, {"x": x}, attrs, opset=opset)


def _raises(op, inputs, attrs, opset, match, constants=(), n_outputs=1):
    model = make_model(op, inputs, attrs, opset=opset, constants=constants, n_outputs=n_outputs)
    with pytest.raises(braze.BrazeError, match=f"{op.lower()}_node.*{match}"):
        braze.Builder("cpu").build(braze.parse_onnx(model, check=False))


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("opset", [11, 13, 18])
@pytest.mark.parametrize("axes,keepdims", [(None, None), ([1], 1), ([0, 2], 0), ([-1], 0), ([2, 0, 1], 1)])
def test_reduce(op, opset, axes, keepdims):
    _reduce(op, _x(op, 3, 4, 5), axes, opset, keepdims)


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("shape,axes", [((6,), [0]), ((2, 3, 2, 4), [1, 3]), ((), None)])
def test_reduce_shapes(op, shape, axes):
    _reduce(op, _x(op, *shape), axes, 18, keepdims=0)


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_reduce_float_dtypes(op, dtype):
    _reduce(op, _x(op, 4, 6, dtype=dtype), [1], 18)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceSumSquare", "ReduceMean", "ReduceProd", "ReduceMax",
                                "ReduceMin", "ReduceL1", "ReduceL2"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_reduce_int_dtypes(op, dtype):
    x = rand(3, 5, dtype=dtype, low=-7, high=7)
    _reduce(op, x, [1], 18)
    _reduce(op, x, None, 13, keepdims=0)


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.bool_])
def test_reduce_max_min_small_types(op, dtype):
    _reduce(op, rand(3, 5, dtype=dtype, low=0 if dtype == np.uint8 else -9, high=9), [0], 20)


@pytest.mark.parametrize("op", REDUCE)
def test_noop_with_empty_axes(op):
    x = _x(op, 3, 4)
    _reduce(op, x, None, 18, noop_with_empty_axes=1)
    _reduce(op, x, [], 18, noop_with_empty_axes=1)
    _reduce(op, x, [], 18)


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([1], 0), (None, 1), ([0], 1)])
def test_empty_set(op, axes, keepdims):
    _reduce(op, np.zeros((2, 0, 3), np.float32), axes, 18, keepdims)


def test_empty_set_integer_identity():
    x = np.zeros((2, 0), np.int32)
    assert _reduce("ReduceMax", x, [1], 18)[0].tolist() == [[-2**31], [-2**31]]
    assert _reduce("ReduceMin", x, [1], 18)[0].tolist() == [[2**31 - 1], [2**31 - 1]]
    assert _reduce("ReduceProd", x, [1], 18)[0].tolist() == [[1], [1]]


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax"])
def test_axes_as_runtime_input(op):
    # The output's shape depends on the axes' value: neither ONNX nor braze know it before run time.
    feeds = {"x": _x(op, 3, 4, 5), "axes": np.array([0, -1])}
    model = make_model(op, feeds, {"keepdims": 0}, opset=AXES_INPUT_FROM[op])
    model.graph.output[0].type.tensor_type.shape.dim.add().dim_param = "n"
    (expected,) = run_ort(model, feeds)
    (actual,) = run_braze(model, feeds)
    assert_close(actual, expected)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceL2"])
@pytest.mark.parametrize("axes,match", [([3], "axis 3 is out of range"), ([-4], "out of range"),
                                        ([1, -2], "twice")])
def test_bad_axes(op, axes, match):
    x = rand(2, 3, 4)
    _raises(op, {"x": x}, {"axes": axes}, 11, match)
    _raises(op, {"x": x, "axes": np.array(axes)}, {}, 18, match, constants=("axes",))


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("shape,axis,keepdims", [((5,), 0, 1), ((3, 4), 1, 0), ((2, 3, 4), -2, 1), ((2, 3, 4), 0, 0)])
def test_arg(op, opset, shape, axis, keepdims):
    check_op(op, {"x": rand(*shape)}, {"axis": axis, "keepdims": keepdims}, opset=opset)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("select_last_index", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int32, np.int64, np.uint8])
def test_arg_ties_and_dtypes(op, select_last_index, dtype):
    x = rand(4, 6, dtype=dtype, low=0, high=3)  # few distinct values: many ties
    check_op(op, {"x": x}, {"axis": 1, "select_last_index": select_last_index}, opset=13)


def test_arg_empty_axis_is_an_error():
    _raises("ArgMax", {"x": np.zeros((2, 0), np.float32)}, {"axis": 1}, 13, "empty")


@pytest.mark.parametrize("shape,k,axis", [((7,), 3, -1), ((3, 5), 5, 1), ((4, 3, 5), 2, 0), ((4, 3, 5), 0, 1)])
@pytest.mark.parametrize("largest", [0, 1])
def test_topk(shape, k, axis, largest):
    x = rand(*shape)
    check_op("TopK", {"x": x, "k": np.array([k])}, {"axis": axis, "largest": largest}, n_outputs=2,
             opset=11, constants=("k",))


@pytest.mark.parametrize("opset", [10, 11])
def test_topk_k_at_run_time(opset):
    check_op("TopK", {"x": rand(3, 6), "k": np.array([4])}, {}, n_outputs=2, opset=opset)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("largest", [0, 1])
def test_topk_dtypes_and_ties(dtype, largest):
    x = rand(5, 8, dtype=dtype, low=0, high=4)
    check_op("TopK", {"x": x, "k": np.array([5])}, {"largest": largest}, n_outputs=2, opset=11, constants=("k",))


def test_topk_unsorted_gives_the_same_set():
    # With sorted=0 the order is undefined (onnxruntime's differs); braze sorts anyway.
    inputs = {"x": rand(3, 9), "k": np.array([4])}
    expected = check_op("TopK", inputs, {"sorted": 1}, n_outputs=2, opset=11, constants=("k",))
    model = make_model("TopK", inputs, {"sorted": 0}, n_outputs=2, opset=11, constants=("k",))
    actual = run_braze(model, {"x": inputs["x"]})
    for a, e in zip(actual, expected):
        assert np.array_equal(a, e)


@pytest.mark.parametrize("k", [7, -1])
def test_topk_bad_k(k):
    _raises("TopK", {"x": rand(3, 6), "k": np.array([k])}, {}, 11, "out of range", constants=("k",), n_outputs=2)


@pytest.mark.parametrize("shape,axis", [((6,), 0), ((3, 4), 1), ((3, 4), -2), ((2, 3, 4), 1)])
@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum(shape, axis, exclusive, reverse):
    check_op("CumSum", {"x": rand(*shape), "axis": np.array(axis, dtype=np.int64)},
             {"exclusive": exclusive, "reverse": reverse}, opset=14, constants=("axis",))


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int64])
@pytest.mark.parametrize("axis_dtype", [np.int32, np.int64])
def test_cumsum_dtypes(dtype, axis_dtype):
    check_op("CumSum", {"x": rand(4, 5, dtype=dtype), "axis": np.array([1], dtype=axis_dtype)},
             {"exclusive": 1}, opset=11)


def test_cumsum_axis_at_run_time_keeps_static_shape():
    model = make_model("CumSum", {"x": rand(3, 4), "axis": np.array(0)}, opset=14)
    graph = braze.parse_onnx(model)
    braze.Builder("cpu").build(graph)
    check_op("CumSum", {"x": rand(3, 4), "axis": np.array(0)}, {"reverse": 1}, opset=14)


def test_cumsum_bad_axis():
    _raises("CumSum", {"x": rand(3, 4), "axis": np.array(2)}, {}, 14, "out of range", constants=("axis",))


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_unsigned_against_numpy(dtype):
    # onnxruntime implements none of these for unsigned types: numpy is the oracle.
    top = np.iinfo(dtype).max
    x = np.array([[3, top, 0, top - 5], [top // 2 + 7, 1, top // 2, 2]], dtype=dtype)
    k = np.array([3])
    top3 = np.argsort(~x, axis=1, kind="stable")[:, :3]  # ~ reverses the order of unsigned values
    cases = [("ReduceMax", {"x": x}, {"axes": [1]}, 13, [x.max(1, keepdims=True)]),
             ("ReduceMin", {"x": x}, {"axes": [0]}, 13, [x.min(0, keepdims=True)]),
             ("ArgMax", {"x": x}, {"axis": 1}, 13, [x.argmax(1)[:, None]]),
             ("ArgMin", {"x": x}, {"axis": 1}, 13, [x.argmin(1)[:, None]]),
             ("TopK", {"x": x, "k": k}, {}, 11, [np.take_along_axis(x, top3, 1), top3])]
    for op, inputs, attrs, opset, expected in cases:
        model = make_model(op, inputs, attrs, opset=opset, n_outputs=len(expected), constants=("k",))
        actual = run_braze(model, {"x": x})
        for a, e in zip(actual, expected):
            assert a.dtype == e.dtype and np.array_equal(a, e), op


@pytest.mark.parametrize("op,inputs,attrs,opset,n_outputs", [
    ("ReduceSum", {"axes": np.array([1])}, {}, 18, 1), ("ReduceMean", {}, {"axes": [0, 1]}, 13, 1),
    ("ReduceMax", {"axes": np.array([0])}, {}, 18, 1), ("ReduceL2", {"axes": np.array([1])}, {}, 18, 1),
    ("ReduceLogSumExp", {"axes": np.array([1])}, {"keepdims": 0}, 18, 1), ("ArgMin", {}, {"axis": 1}, 13, 1),
    ("TopK", {"k": np.array([3])}, {}, 11, 2), ("CumSum", {"axis": np.array(1)}, {"reverse": 1}, 14, 1)])
def test_bfloat16_matches_float32(op, inputs, attrs, opset, n_outputs):
    x = rand(4, 6).astype(ml_dtypes.bfloat16)
    constants = tuple(inputs)
    expected = check_op(op, {"x": x.astype(np.float32), **inputs}, attrs, opset=opset, n_outputs=n_outputs,
                        constants=constants)
    model = make_model(op, {"x": x, **inputs}, attrs, opset=opset, n_outputs=n_outputs, constants=constants)
    for a, e in zip(run_braze(model, {"x": x}), expected):
        if e.dtype == np.float32:
            assert a.dtype == ml_dtypes.bfloat16
            assert_close(a, e, "bfloat16")
        else:
            assert a.dtype == e.dtype and np.array_equal(a, e)
