import numpy as np
import onnx.helper as oh
import pytest

import braze
from braze.testing import assert_close

from .harness import check_op, make_model, rand, run_braze
from .test_shape import _check_graph, _graph

DTYPES = [np.float32, np.float16, np.float64, np.int32, np.int64, np.bool_]


def i64(*values):
    return np.array(values, dtype=np.int64)


def _raises(op, inputs, attrs=None, match="", *, opset=18, constants=(), n_outputs=1):
    """Building, or running, the node fails with a BrazeError naming it."""
    model = make_model(op, inputs, attrs, opset=opset, constants=constants, n_outputs=n_outputs)
    feeds = {k: v for k, v in dict(inputs).items() if v is not None and k not in constants}
    with pytest.raises(braze.BrazeError, match=f"{op.lower()}_node.*{match}"):
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False))
        engine.create_execution_context().infer(feeds)


@pytest.mark.parametrize("shape,indices,axis", [((5, 4), [0, 4, -1], 0), ((3, 4, 2), [[1, -4], [3, 0]], 1),
                                                ((3, 4, 2), 1, -1), ((6,), [[-6]], 0), ((2, 3), [], 1)])
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("const", [True, False])
def test_gather(shape, indices, axis, index_dtype, const):
    inputs = {"x": rand(*shape), "i": np.array(indices, dtype=index_dtype)}
    check_op("Gather", inputs, {"axis": axis}, opset=13, constants=("i",) if const else ())


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_dtypes(dtype):
    check_op("Gather", {"x": rand(4, 3, dtype=dtype), "i": i64(3, 0, 0)}, {"axis": 0}, opset=11)


@pytest.mark.parametrize("shape,index_shape,axis", [((3, 4), (3, 4), 1), ((3, 4), (2, 4), 0), ((2, 3, 4), (2, 3, 2), -1),
                                                    ((5,), (7,), 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float16])
def test_gather_elements(shape, index_shape, axis, dtype):
    size = shape[axis]
    indices = rand(*index_shape, dtype=np.int64, low=-size, high=size)
    check_op("GatherElements", {"x": rand(*shape, dtype=dtype), "i": indices}, {"axis": axis}, opset=13)


GATHER_ND = [  # data shape, indices, batch_dims
    ((2, 2), [[0, 0], [1, 1]], 0),
    ((2, 2), [[1], [0]], 0),
    ((2, 3, 4), [[[0, 1]], [[1, -1]]], 0),
    ((2, 3, 4), [[1], [0]], 1),
    ((2, 3, 4), [[[2, 1], [0, 3]], [[1, 0], [-1, -1]]], 1),
    ((2, 3, 4), [[[1], [0], [3]], [[2], [1], [-4]]], 2),
    ((3, 2), [[]], 0),
]


@pytest.mark.parametrize("shape,indices,batch_dims", GATHER_ND)
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_gather_nd(shape, indices, batch_dims, dtype):
    inputs = {"x": rand(*shape, dtype=dtype), "i": np.array(indices, dtype=np.int64).reshape(np.shape(indices))}
    check_op("GatherND", inputs, {"batch_dims": batch_dims}, opset=13)


def test_gather_nd_opset11():
    check_op("GatherND", {"x": rand(3, 4, 2), "i": np.array([[2, -1], [0, 1]], np.int64)}, opset=11)
    _raises("GatherND", {"x": rand(3, 4), "i": i64(0)}, {"batch_dims": 0}, "does not take attribute", opset=11)


def test_gather_errors():
    _raises("Gather", {"x": rand(3, 4), "i": i64(0)}, {"axis": 2}, "out of range")
    _raises("Gather", {"x": rand(3, 4), "i": i64(3)}, {"axis": 0}, "out of range", constants=("i",))
    _raises("Gather", {"x": rand(3, 4), "i": i64(-4)}, {"axis": 0}, "out of range")
    _raises("GatherElements", {"x": rand(3, 4), "i": i64(0, 1)}, {"axis": 0}, "rank")
    _raises("GatherND", {"x": rand(3, 4), "i": i64(0, 1, 2)}, None, "exceed data rank")
    _raises("GatherND", {"x": rand(3, 4), "i": np.array([[3, 0]], np.int64)}, None, "out of range")
    _raises("GatherND", {"x": rand(3, 4), "i": np.zeros((2, 1), np.int64)}, {"batch_dims": 1}, "differ")


@pytest.mark.parametrize("reduction,opset", [(None, 11), (None, 13), ("none", 16), ("add", 16), ("mul", 16),
                                             ("max", 18), ("min", 18)])
@pytest.mark.parametrize("shape,index_shape,axis", [((4, 5), (2, 5), 0), ((4, 5), (4, 3), 1), ((3, 4, 2), (3, 2, 2), -2)])
def test_scatter_elements(reduction, opset, shape, index_shape, axis):
    size = shape[axis]
    rng = np.random.default_rng(len(index_shape) + axis)
    # unique indices along the axis, so that reduction "none" is deterministic
    indices = np.argsort(rng.random(shape), axis=axis)
    indices = np.take(indices, np.arange(index_shape[axis]), axis=axis)[tuple(slice(0, d) for d in index_shape)]
    indices = np.where(rng.random(indices.shape) < 0.3, indices - size, indices)
    attrs = {"axis": axis} if reduction is None else {"axis": axis, "reduction": reduction}
    check_op("ScatterElements", {"x": rand(*shape), "i": indices, "u": rand(*index_shape, seed=5)}, attrs, opset=opset)


def test_scatter_elements_duplicates_reduce():
    indices = np.array([[0, 0, 1], [1, 1, 1]], np.int64)
    for reduction in ("add", "mul", "max", "min"):
        check_op("ScatterElements", {"x": rand(2, 3), "i": indices, "u": rand(2, 3, seed=1)},
                 {"axis": 1, "reduction": reduction}, opset=18)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32, np.int64, np.bool_])
def test_scatter_elements_dtypes(dtype):
    check_op("ScatterElements", {"x": rand(3, 3, dtype=dtype), "i": i64(2, 0).reshape(1, 2),
                                 "u": rand(1, 2, dtype=dtype, seed=2)}, {"axis": 1}, opset=13)


def test_scatter_deprecated():
    check_op("Scatter", {"x": rand(3, 3), "i": np.array([[1, 0, 2]], np.int64), "u": rand(1, 3, seed=1)},
             {"axis": 0}, opset=10)


SCATTER_ND = [  # data shape, indices, updates shape
    ((8,), [[4], [3], [1], [7]], (4,)),
    ((4, 4, 4), [[0], [2]], (2, 4, 4)),
    ((3, 4), [[0, 1], [2, -1], [-3, 2]], (3,)),
    ((2, 3, 2), [[[1, 2]], [[0, 0]]], (2, 1, 2)),
]


@pytest.mark.parametrize("shape,indices,updates_shape", SCATTER_ND)
@pytest.mark.parametrize("reduction,opset", [(None, 11), (None, 13), ("add", 16), ("mul", 16), ("max", 18), ("min", 18)])
def test_scatter_nd(shape, indices, updates_shape, reduction, opset):
    attrs = None if reduction is None else {"reduction": reduction}
    inputs = {"x": rand(*shape), "i": np.array(indices, np.int64), "u": rand(*updates_shape, seed=3)}
    check_op("ScatterND", inputs, attrs, opset=opset)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32, np.int64, np.bool_])
def test_scatter_nd_dtypes(dtype):
    inputs = {"x": rand(3, 2, dtype=dtype), "i": np.array([[2], [0]], np.int64), "u": rand(2, 2, dtype=dtype, seed=4)}
    check_op("ScatterND", inputs, opset=13)


def test_scatter_nd_duplicates_add():
    inputs = {"x": rand(5), "i": np.array([[1], [1], [4], [1]], np.int64), "u": rand(4, seed=1)}
    check_op("ScatterND", inputs, {"reduction": "add"}, opset=16)


def test_scatter_errors():
    base = {"x": rand(3, 4), "i": i64(0, 1).reshape(1, 2), "u": rand(1, 2)}
    _raises("ScatterElements", base, {"reduction": "max"}, "reduction", opset=16)
    _raises("ScatterElements", base, {"reduction": "sum"}, "reduction", opset=18)
    _raises("ScatterElements", {**base, "u": rand(2, 2)}, None, "one shape", opset=13)
    _raises("ScatterElements", {**base, "i": i64(0, 4).reshape(1, 2)}, {"axis": 1}, "out of range", opset=13)
    _raises("ScatterND", {**base, "u": rand(2)}, None, "updates are", opset=13)
    _raises("ScatterND", {"x": rand(3, 4), "i": i64(0, 1, 2).reshape(1, 3), "u": rand(1)}, None, "do not index",
            opset=13)
    _raises("ScatterND", {**base, "i": i64(3, 0).reshape(1, 2), "u": rand(1)}, None, "out of range", opset=13)


@pytest.mark.parametrize("shape,lens,time_axis", [((4, 3), (4, 1, 2), 0), ((3, 4), (1, 4, 0), 1), ((5, 2, 3), (5, 3), 0),
                                                  ((2, 5, 3), (2, 5), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float16])
def test_reverse_sequence(shape, lens, time_axis, dtype):
    attrs = {"time_axis": time_axis, "batch_axis": 1 - time_axis}
    check_op("ReverseSequence", {"x": rand(*shape, dtype=dtype), "lens": i64(*lens)}, attrs, opset=10)


def test_reverse_sequence_errors():
    _raises("ReverseSequence", {"x": rand(3, 2), "lens": i64(1, 2)}, {"time_axis": 0, "batch_axis": 0}, "batch_axis")
    _raises("ReverseSequence", {"x": rand(3, 2), "lens": i64(1, 2, 3)}, None, "sequence_lens has shape")
    _raises("ReverseSequence", {"x": rand(3, 2), "lens": i64(1, 4)}, None, "must lie in")


@pytest.mark.parametrize("shape,condition,axis", [((3, 2), [0, 1, 1], 0), ((3, 2), [1, 0], 1), ((3, 2), [0, 1, 0, 1], None),
                                                  ((2, 5), [1, 1, 0], -1), ((4,), [0, 0, 0, 0], 0), ((2, 2), [1], None)])
@pytest.mark.parametrize("const", [True, False])
def test_compress(shape, condition, axis, const):
    inputs = {"x": rand(*shape), "c": np.array(condition, dtype=bool)}
    check_op("Compress", inputs, None if axis is None else {"axis": axis}, opset=11, constants=("c",) if const else ())


@pytest.mark.parametrize("dtype", DTYPES)
def test_compress_dtypes(dtype):
    check_op("Compress", {"x": rand(3, 4, dtype=dtype), "c": np.array([1, 0, 1], bool)}, {"axis": 0}, opset=11)


@pytest.mark.parametrize("shape", [(3, 4), (7,), (2, 3, 4), (0, 3), ()])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_, np.int32])
def test_nonzero(shape, dtype):
    x = rand(*shape, dtype=dtype, low=0, high=2) if dtype != np.float32 else np.asarray(np.round(rand(*shape)))
    check_op("NonZero", {"x": x}, opset=13)


def test_nonzero_constant_input_folds():
    check_op("NonZero", {"x": np.array([[1, 0], [0, 3]], np.int64)}, opset=13, constants=("x",))
    check_op("NonZero", {"x": np.zeros((2, 3), np.float32)}, opset=13)


@pytest.mark.parametrize("x,axis", [([2, 1, 1, 3, 4, 3], None), ([[1, 3], [2, 3]], None), ([[1, 0, 0], [1, 0, 0], [2, 3, 4]], 0),
                                    ([[[1, 1], [0, 1], [2, 1], [0, 1]], [[1, 1], [0, 1], [2, 1], [0, 1]]], 1),
                                    ([[1, 0], [1, 0]], -1), ([5], None)])
@pytest.mark.parametrize("sorted_", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_unique(x, axis, sorted_, dtype):
    attrs = {"sorted": sorted_} if axis is None else {"sorted": sorted_, "axis": axis}
    check_op("Unique", {"x": np.array(x, dtype=dtype)}, attrs, n_outputs=4, opset=11)


def test_unique_outputs_used_downstream():
    x = rand(20, dtype=np.int64, low=0, high=6)
    y, indices, inverse, counts = run_braze(make_model("Unique", {"x": x}, {"sorted": 0}, n_outputs=4, opset=11), {"x": x})
    assert_close(y[inverse], x)
    assert_close(x[indices], y)
    assert counts.sum() == x.size


def test_data_dependent_chain():
    """x[mask] as exporters write it: NonZero -> Transpose -> GatherND, then shapes taken of the result."""
    nodes = [oh.make_node("NonZero", ["mask"], ["nz"]),
             oh.make_node("Transpose", ["nz"], ["coords"]),
             oh.make_node("GatherND", ["x", "coords"], ["picked"]),
             oh.make_node("Shape", ["picked"], ["n"]),
             oh.make_node("ConstantOfShape", ["n"], ["zeros"]),
             oh.make_node("Concat", ["picked", "zeros"], ["both"], axis=0),
             oh.make_node("Compress", ["x", "rows"], ["kept"], axis=0),
             oh.make_node("Unique", ["kept"], ["values"])]
    feeds = {"x": rand(4, 3), "mask": rand(4, 3, dtype=np.bool_), "rows": np.array([1, 0, 1, 1], bool)}
    outputs = {"both": (np.float32, 1), "kept": (np.float32, 2), "values": (np.float32, 1)}
    _check_graph(_graph(nodes, feeds, outputs, opset=13), feeds)
