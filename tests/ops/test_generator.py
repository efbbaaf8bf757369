import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest

import braze
from braze.errors import UnsupportedError

from .harness import check_op, make_model, rand

TP = onnx.TensorProto


def i64(*values):
    return np.array(values, dtype=np.int64)


def _raises(op, inputs, attrs=None, match="", *, opset=18, constants=(), error=braze.BrazeError):
    """Building, or running, the node fails with an error naming it."""
    model = make_model(op, inputs, attrs, opset=opset, constants=constants)
    feeds = {k: v for k, v in dict(inputs).items() if v is not None and k not in constants}
    with pytest.raises(error, match=f"{op.lower()}_node.*{match}"):
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False))
        engine.create_execution_context().infer(feeds)


def _engine(op, inputs, attrs=None, opset=18):
    model = make_model(op, inputs, attrs, opset=opset)
    return braze.Builder("cpu").build(braze.parse_onnx(model)).create_execution_context()


@pytest.mark.parametrize("value", [rand(2, 3), rand(4, dtype=np.float16), rand(3, dtype=np.float64), rand(2, 2, dtype=np.int32),
                                   rand(5, dtype=np.int64), rand(3, dtype=np.bool_), np.array(2.5, np.float32),
                                   np.zeros((0, 3), np.float32)])
def test_constant_value(value):
    check_op("Constant", {}, {"value": onh.from_array(value)}, opset=13)


def test_constant_opset11():
    check_op("Constant", {}, {"value": onh.from_array(rand(2, 3))}, opset=11)
    _raises("Constant", {}, {"value_int": 1}, "does not take attribute", opset=11)


@pytest.mark.parametrize("attrs", [{"value_float": 1.25}, {"value_floats": [1.0, -2.5, 3.0]}, {"value_int": -7},
                                   {"value_ints": [4, 5, -6]}])
def test_constant_scalar_attributes(attrs):
    check_op("Constant", {}, attrs, opset=13)


def test_constant_unsupported():
    _raises("Constant", {}, {"value_string": "hello"}, "string constants", opset=13, error=UnsupportedError)
    _raises("Constant", {}, {"value_strings": ["a", "b"]}, "string constants", opset=13, error=UnsupportedError)
    _raises("Constant", {}, {"value_int": 1, "value_float": 2.0}, "exactly one", opset=13)
    _raises("Constant", {}, {}, "exactly one", opset=13)
    sparse = oh.make_sparse_tensor(onh.from_array(np.array([1.0], np.float32)), onh.from_array(i64(2)), [4])
    _raises("Constant", {}, {"sparse_value": sparse}, "sparse_value", opset=13, error=UnsupportedError)


@pytest.mark.parametrize("shape", [(2, 3), (4,), (), (0, 2), (1, 1, 3)])
@pytest.mark.parametrize("value", [None, np.array([1.5], np.float32), np.array([7], np.int64), np.array([3], np.int32),
                                   np.array([True]), np.array([-1.0], np.float64), np.array([2.0], np.float16)])
@pytest.mark.parametrize("const", [True, False])
def test_constant_of_shape(shape, value, const):
    attrs = None if value is None else {"value": onh.from_array(value)}
    check_op("ConstantOfShape", {"shape": i64(*shape)}, attrs, opset=20, constants=("shape",) if const else ())


def test_constant_of_shape_errors():
    _raises("ConstantOfShape", {"shape": i64(2, -1)}, None, "negative", constants=("shape",))
    _raises("ConstantOfShape", {"shape": i64(2)}, {"value": onh.from_array(np.ones(2, np.float32))}, "one element",
            constants=("shape",))


RANGES = [(0, 10, 3), (10, 4, -2), (3, 9, 3), (5, 5, 1), (5, 0, 1), (-7, 8, 4), (1, 2, 100)]


@pytest.mark.parametrize("start,limit,delta", RANGES)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("const", [True, False])
def test_range(start, limit, delta, dtype, const):
    inputs = {"start": np.array(start, dtype), "limit": np.array(limit, dtype), "delta": np.array(delta, dtype)}
    check_op("Range", inputs, opset=11, constants=("start", "limit", "delta") if const else ())


@pytest.mark.parametrize("start,limit,delta", [(0.5, 3.2, 0.3), (1.0, -2.0, -0.7), (0.1, 0.1, 0.1), (-1.5, 20.0, 1.25)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_range_fractional(start, limit, delta, dtype):
    inputs = {"start": np.array(start, dtype), "limit": np.array(limit, dtype), "delta": np.array(delta, dtype)}
    check_op("Range", inputs, opset=11, constants=("start", "limit", "delta"))


def test_range_float16_stash():
    inputs = {"start": np.array(1000, np.float16), "limit": np.array(1010, np.float16), "delta": np.array(1, np.float16)}
    model = make_model("Range", inputs, opset=27, constants=tuple(inputs))
    (out,) = braze.Builder("cpu").build(braze.parse_onnx(model)).create_execution_context().infer({}).values()
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, np.arange(1000, 1010, dtype=np.float16))


def test_range_errors():
    _raises("Range", {"start": np.array(0, np.int64), "limit": np.array(5, np.int64), "delta": np.array(0, np.int64)},
            match="delta is 0", opset=11, constants=("start", "limit", "delta"))
    _raises("Range", {"start": np.array(0, np.int64), "limit": np.array(5, np.int64), "delta": np.array(0, np.int64)},
            match="delta is 0", opset=11)


@pytest.mark.parametrize("shape", [(3, 3), (2, 5), (5, 2), (1, 1)])
@pytest.mark.parametrize("k", [0, 1, -1, 4, -7])
def test_eye_like(shape, k):
    check_op("EyeLike", {"x": rand(*shape)}, {"k": k}, opset=9)


@pytest.mark.parametrize("in_dtype", [np.float32, np.int32, np.int64, np.float64])
@pytest.mark.parametrize("dtype", [None, TP.FLOAT, TP.INT64, TP.DOUBLE, TP.INT32])
def test_eye_like_dtypes(in_dtype, dtype):
    check_op("EyeLike", {"x": rand(3, 4, dtype=in_dtype)}, None if dtype is None else {"dtype": dtype}, opset=9)


def test_eye_like_errors():
    _raises("EyeLike", {"x": rand(3)}, None, "2-D")
    _raises("EyeLike", {"x": rand(2, 2)}, {"dtype": 8}, "dtype 8")


@pytest.mark.parametrize("shape,axis", [((2, 3), -1), ((2, 3), 0), ((2, 3), 1), ((4,), -2), ((2, 2, 2), 2), ((1,), 0)])
@pytest.mark.parametrize("const", [True, False])
def test_one_hot(shape, axis, const):
    indices = rand(*shape, dtype=np.int64, low=-6, high=7)  # some out of [-5, 5): all off
    inputs = {"i": indices, "depth": np.array(5, np.int64), "values": np.array([-1.5, 2.0], np.float32)}
    check_op("OneHot", inputs, {"axis": axis}, opset=11, constants=("depth",) if const else ())


@pytest.mark.parametrize("index_dtype,depth_dtype,values_dtype", [  # the combinations onnxruntime has kernels for
    (np.int32, np.int32, np.float32), (np.int32, np.float32, np.float32), (np.int64, np.int32, np.float32),
    (np.int64, np.int64, np.int64), (np.int64, np.float32, np.int32), (np.float32, np.int64, np.int64),
    (np.float32, np.float32, np.float32)])
def test_one_hot_dtypes(index_dtype, depth_dtype, values_dtype):
    inputs = {"i": np.array([[0, 3], [-1, 2]], index_dtype), "depth": np.array(4, depth_dtype),
              "values": np.array([0, 7], values_dtype)}
    check_op("OneHot", inputs, opset=11, constants=("depth",))


def test_one_hot_errors():
    base = {"i": i64(1, 2), "depth": np.array(3, np.int64), "values": np.array([0, 1], np.float32)}
    _raises("OneHot", base, {"axis": 3}, "out of range", opset=11, constants=("depth",))
    _raises("OneHot", {**base, "values": np.array([0, 1, 2], np.float32)}, None, "pair", opset=11, constants=("depth",))
    _raises("OneHot", {**base, "depth": np.array(0, np.int64)}, None, "positive", opset=11, constants=("depth",))


# -- random generators: shapes, dtypes and statistics, never element values -----------------------------------------

N = 20000


@pytest.mark.parametrize("dtype", [None, TP.FLOAT, TP.DOUBLE, TP.FLOAT16])
def test_random_normal(dtype):
    attrs = {"shape": [N // 100, 100], "mean": 2.0, "scale": 0.5, **({} if dtype is None else {"dtype": dtype})}
    y = _engine("RandomNormal", {}, attrs).infer({})["y0"]
    assert y.shape == (N // 100, 100) and y.dtype == onh.helper.tensor_dtype_to_np_dtype(dtype or TP.FLOAT)
    assert abs(y.astype(np.float64).mean() - 2.0) < 0.03 and abs(y.astype(np.float64).std() - 0.5) < 0.03


@pytest.mark.parametrize("dtype", [None, TP.FLOAT, TP.DOUBLE, TP.FLOAT16])
def test_random_uniform(dtype):
    attrs = {"shape": [N], "low": -1.0, "high": 3.0, **({} if dtype is None else {"dtype": dtype})}
    y = _engine("RandomUniform", {}, attrs).infer({})["y0"].astype(np.float64)
    assert y.shape == (N,) and y.min() >= -1.0 and y.max() <= 3.0
    assert abs(y.mean() - 1.0) < 0.05 and abs(y.var() - 16 / 12) < 0.05


@pytest.mark.parametrize("in_dtype,dtype", [(np.float32, None), (np.float64, None), (np.float16, None),
                                            (np.float32, TP.DOUBLE), (np.int64, TP.FLOAT)])
def test_random_like(in_dtype, dtype):
    x = rand(100, N // 100, dtype=in_dtype)
    extra = {} if dtype is None else {"dtype": dtype}
    expected = onh.helper.tensor_dtype_to_np_dtype(dtype) if dtype is not None else x.dtype
    y = _engine("RandomNormalLike", {"x": x}, {"mean": -1.0, "scale": 2.0, **extra}).infer({"x": x})["y0"]
    assert y.shape == x.shape and y.dtype == expected
    assert abs(y.astype(np.float64).mean() + 1.0) < 0.06 and abs(y.astype(np.float64).std() - 2.0) < 0.06
    y = _engine("RandomUniformLike", {"x": x}, {"low": 5.0, "high": 6.0, **extra}).infer({"x": x})["y0"]
    assert y.shape == x.shape and y.dtype == expected and y.min() >= 5.0 and y.max() <= 6.0
    assert abs(y.astype(np.float64).mean() - 5.5) < 0.02


@pytest.mark.parametrize("in_dtype,dtype", [(np.float32, None), (np.float64, None), (np.float32, TP.BOOL),
                                            (np.float64, TP.INT32), (np.float16, None)])
def test_bernoulli(in_dtype, dtype):
    p = np.tile(np.array([0.0, 0.25, 1.0, 0.7], in_dtype), (N // 4, 1))
    y = _engine("Bernoulli", {"p": p}, None if dtype is None else {"dtype": dtype}).infer({"p": p})["y0"]
    assert y.shape == p.shape and y.dtype == (p.dtype if dtype is None else onh.helper.tensor_dtype_to_np_dtype(dtype))
    y = y.astype(np.float64)
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert (y[:, 0] == 0).all() and (y[:, 2] == 1).all()
    assert abs(y[:, 1].mean() - 0.25) < 0.03 and abs(y[:, 3].mean() - 0.7) < 0.03


def test_random_draws_differ_per_run_unless_seeded():
    context = _engine("RandomUniform", {}, {"shape": [64]})
    assert not np.array_equal(context.infer({})["y0"], context.infer({})["y0"])
    seeded = _engine("RandomUniform", {}, {"shape": [64], "seed": 7.0})
    first = seeded.infer({})["y0"]
    np.testing.assert_array_equal(first, seeded.infer({})["y0"])
    np.testing.assert_array_equal(first, _engine("RandomUniform", {}, {"shape": [64], "seed": 7.0}).infer({})["y0"])
    x = rand(4, 8)
    seeded_like = _engine("RandomNormalLike", {"x": x}, {"seed": 3.0})
    np.testing.assert_array_equal(seeded_like.infer({"x": x})["y0"], seeded_like.infer({"x": x})["y0"])


def test_random_errors():
    _raises("RandomNormal", {}, {"shape": [2], "dtype": TP.INT32}, "floating-point")
    _raises("RandomUniformLike", {"x": rand(2, dtype=np.int64)}, None, "floating-point")
    _raises("Bernoulli", {"x": rand(2, dtype=np.int64)}, None, "floating point")


@pytest.mark.parametrize("node,initializers", [
    (oh.make_node("ConstantOfShape", ["shape"], ["big"]), [onh.from_array(np.array([10**6, 10**6], np.int64), "shape")]),
    (oh.make_node("Range", ["a", "b", "c"], ["big"]), [onh.from_array(np.array(v, np.int64), n)
                                                       for n, v in (("a", 0), ("b", 10**12), ("c", 1))]),
    (oh.make_node("RandomNormal", [], ["big"], shape=[10**6, 10**6]), []),
])
def test_a_huge_generated_tensor_is_sized_not_allocated(node, initializers):
    """Shape inference sizes a generator's output on the meta device: a size the model declares (terabytes here)
    is refused by the memory check, naming the tensor, and never allocated while inferring."""
    reduce = oh.make_node("ReduceMax", ["big"], ["y"], keepdims=0)
    graph = oh.make_graph([node, reduce], "g", [], [oh.make_tensor_value_info("y", onnx.TensorProto.UNDEFINED, [])],
                          initializers)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(braze.BrazeError, match=r"tensor 'big' \S+ alone needs .* GiB of cpu memory.*available"):
        braze.Builder("cpu").build(braze.parse_onnx(model))
