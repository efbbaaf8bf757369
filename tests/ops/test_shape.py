import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest

import braze
from braze.errors import UnsupportedError
from braze.testing import assert_close

from .harness import check_op, make_model, rand, run_braze, run_ort

DTYPES = [np.float32, np.float16, np.float64, np.int32, np.int64, np.bool_]


def i64(*values):
    return np.array(values, dtype=np.int64)


def _raises(op, inputs, attrs=None, match="", *, opset=17, constants=(), n_outputs=1, error=braze.BrazeError):
    """Building (or, with shape inputs fed at run time, running) the node fails with an error naming it."""
    model = make_model(op, inputs, attrs, opset=opset, constants=constants, n_outputs=n_outputs)
    feeds = {k: v for k, v in dict(inputs).items() if v is not None and k not in constants}
    with pytest.raises(error, match=f"{op.lower()}_node.*{match}"):
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False))
        engine.create_execution_context().infer(feeds)


@pytest.mark.parametrize("shape,axis", [((2, 3, 4), 1), ((2, 3, 4), 0), ((2, 3, 4), 3), ((2, 3, 4), -1),
                                        ((2, 3, 4), -3), ((5,), 1), ((2, 1, 3, 2), 2)])
@pytest.mark.parametrize("opset", [11, 13])
def test_flatten(shape, axis, opset):
    check_op("Flatten", {"x": rand(*shape)}, {"axis": axis}, opset=opset)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flatten_dtypes(dtype):
    check_op("Flatten", {"x": rand(2, 3, 2, dtype=dtype)}, opset=21)


@pytest.mark.parametrize("shape,target", [((2, 3, 4), (4, -1)), ((2, 3, 4), (0, 0, 2, 2)), ((2, 3, 4), (-1,)),
                                          ((2, 3, 4), (0, -1)), ((6,), (1, 2, 1, 3)), ((1, 1), ()),
                                          ((0, 3), (3, -1)), ((2, 3, 4), (4, 0, -1))])
@pytest.mark.parametrize("const,opset", [(True, 11), (True, 14), (False, 14)])
def test_reshape(shape, target, const, opset):
    check_op("Reshape", {"x": rand(*shape), "shape": i64(*target)}, opset=opset,
             constants=("shape",) if const else ())


@pytest.mark.parametrize("shape,target", [((0, 3), (3, 0)), ((2, 0, 4), (0, 8)), ((2, 3), (3, 2))])
def test_reshape_allowzero(shape, target):
    check_op("Reshape", {"x": rand(*shape), "shape": i64(*target)}, {"allowzero": 1}, opset=14, constants=("shape",))


@pytest.mark.parametrize("dtype", DTYPES)
def test_reshape_dtypes(dtype):
    check_op("Reshape", {"x": rand(4, 3, dtype=dtype), "shape": i64(2, -1, 3)}, opset=21, constants=("shape",))


@pytest.mark.parametrize("target,match", [((5, -1), "cannot reshape"), ((-1, -1), "more than one -1"),
                                          ((2, -2, 6), "negative dim"), ((0, 0, 0, 0), "past the input's rank")])
@pytest.mark.parametrize("const", [True, False])
def test_reshape_errors(target, match, const):
    _raises("Reshape", {"x": rand(2, 3, 4), "shape": i64(*target)}, match=match, constants=("shape",) if const else ())


@pytest.mark.parametrize("shape,perm", [((2, 3, 4), None), ((2, 3, 4), [0, 2, 1]), ((2, 3, 4), [2, 0, 1]),
                                        ((5,), None), ((2, 1, 3, 2), [3, 1, 0, 2]), ((), None)])
def test_transpose(shape, perm):
    check_op("Transpose", {"x": rand(*shape)}, None if perm is None else {"perm": perm})


@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose_dtypes(dtype):
    check_op("Transpose", {"x": rand(2, 3, 4, dtype=dtype)}, {"perm": [1, 2, 0]}, opset=13)


def test_transpose_errors():
    _raises("Transpose", {"x": rand(2, 3, 4)}, {"perm": [0, 1, 1]}, "not a permutation")
    _raises("Transpose", {"x": rand(2, 3, 4)}, {"perm": [1, 0]}, "not a permutation")


@pytest.mark.parametrize("shapes,axis", [([(2, 3), (4, 3)], 0), ([(2, 3), (2, 1), (2, 5)], 1), ([(2, 3), (2, 4)], -1),
                                         ([(3,), (0,), (2,)], 0), ([(2, 3, 4)], 2), ([(1, 2, 2), (1, 2, 2)], -3)])
@pytest.mark.parametrize("opset", [11, 13])
def test_concat(shapes, axis, opset):
    inputs = {f"x{i}": rand(*s, seed=i) for i, s in enumerate(shapes)}
    check_op("Concat", inputs, {"axis": axis}, opset=opset)


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_dtypes(dtype):
    check_op("Concat", {"a": rand(2, 3, dtype=dtype), "b": rand(2, 2, dtype=dtype, seed=1)}, {"axis": 1})


def test_concat_errors():
    _raises("Concat", {"a": rand(2, 3), "b": rand(3, 3)}, {"axis": 1}, "differ off axis")
    _raises("Concat", {"a": rand(2, 3), "b": rand(2, 3)}, {"axis": 2}, "out of range")
    _raises("Concat", {"a": rand(2, 3), "b": rand(2, 3, 1)}, {"axis": 0}, "rank")


@pytest.mark.parametrize("shape,axis,split,n", [((6, 2), 0, None, 3), ((2, 6), 1, [1, 2, 3], 3), ((2, 6), -1, [6], 1),
                                                ((4, 5), 1, [2, 0, 3], 3), ((3, 4, 2), -2, [3, 1], 2)])
@pytest.mark.parametrize("opset", [11, 13, 18])
def test_split(shape, axis, split, n, opset):
    x = rand(*shape)
    if opset < 13:
        attrs = {"axis": axis} if split is None else {"axis": axis, "split": split}
        check_op("Split", {"x": x}, attrs, n_outputs=n, opset=opset)
    else:
        split_input = None if split is None else i64(*split)
        attrs = {"axis": axis, "num_outputs": n} if split is None and opset >= 18 else {"axis": axis}
        check_op("Split", {"x": x, "split": split_input}, attrs, n_outputs=n, opset=opset, constants=("split",))


@pytest.mark.parametrize("size,n", [(7, 3), (5, 2), (7, 4), (3, 3)])
def test_split_uneven(size, n):
    check_op("Split", {"x": rand(2, size)}, {"axis": 1, "num_outputs": n}, n_outputs=n, opset=18)


def test_split_runtime_sizes():
    x = rand(3, 7)
    node = oh.make_node("Split", ["x", "split"], ["a", "b", "c"], axis=1)
    model = _graph([node], {"x": x, "split": i64(4, 1, 2)}, {"a": (np.float32, 2), "b": (np.float32, 2),
                                                             "c": (np.float32, 2)}, opset=13)
    _check_graph(model, {"x": x, "split": i64(4, 1, 2)})


@pytest.mark.parametrize("dtype", DTYPES)
def test_split_dtypes(dtype):
    check_op("Split", {"x": rand(4, 2, dtype=dtype)}, n_outputs=2, opset=13)


def test_split_errors():
    _raises("Split", {"x": rand(5, 2)}, match="equal parts", n_outputs=2, opset=13)
    _raises("Split", {"x": rand(6, 2), "split": i64(2, 2)}, match="add up", n_outputs=2, opset=13, constants=("split",))
    _raises("Split", {"x": rand(6, 2)}, {"num_outputs": 3}, "num_outputs", n_outputs=2, opset=18)
    _raises("Split", {"x": rand(5, 2)}, {"num_outputs": 4}, "add up", n_outputs=4, opset=18)


SLICES = [  # starts, ends, axes, steps on a (5, 6, 7) input
    ((1,), (4,), None, None),
    ((0, 1), (-1, 1000), (1, 2), None),
    ((-100, 2), (100, -2), (0, -1), (2, 3)),
    ((4,), (-100,), (0,), (-1,)),
    ((-1, 5), (-7, 0), (2, 1), (-2, -3)),
    ((3,), (1,), (1,), None),
    ((2,), (5,), (-2,), (-1,)),
    ((9, 0), (100, 7), (0, 2), (1, 7)),
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES)
@pytest.mark.parametrize("const", [True, False])
@pytest.mark.parametrize("opset", [11, 13])
def test_slice(starts, ends, axes, steps, const, opset):
    inputs = {"x": rand(5, 6, 7), "starts": i64(*starts), "ends": i64(*ends),
              "axes": None if axes is None else i64(*axes), "steps": None if steps is None else i64(*steps)}
    check_op("Slice", inputs, opset=opset, constants=("starts", "ends", "axes", "steps") if const else ())


@pytest.mark.parametrize("dtype", DTYPES)
def test_slice_dtypes(dtype):
    inputs = {"x": rand(4, 5, dtype=dtype), "starts": np.array([1], np.int32), "ends": np.array([-1], np.int32),
              "axes": np.array([1], np.int32)}
    check_op("Slice", inputs, constants=("starts", "ends", "axes"))


def test_slice_errors():
    base = {"x": rand(5, 6), "starts": i64(0), "ends": i64(3)}
    _raises("Slice", {**base, "axes": i64(0), "steps": i64(0)}, match="step", constants=("starts", "ends", "axes", "steps"))
    _raises("Slice", {**base, "axes": i64(2)}, match="out of range", constants=("starts", "ends", "axes"))
    _raises("Slice", {**base, "axes": i64(0, 1)}, match="differ in length", constants=("starts", "ends", "axes"))


@pytest.mark.parametrize("shape,axes", [((1, 3, 1, 2), None), ((1, 3, 1, 2), [0]), ((1, 3, 1, 2), [-2, 0]),
                                        ((1,), None), ((2, 3), None)])
@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze(shape, axes, opset):
    if opset < 13:
        check_op("Squeeze", {"x": rand(*shape)}, None if axes is None else {"axes": axes}, opset=opset)
    else:
        axes_input = None if axes is None else i64(*axes)
        check_op("Squeeze", {"x": rand(*shape), "axes": axes_input}, opset=opset, constants=("axes",))


@pytest.mark.parametrize("shape,axes", [((3, 2), [0]), ((3, 2), [2, 0]), ((3, 2), [-1]), ((), [0, 1]),
                                        ((2, 3), [1, -1, 3])])
@pytest.mark.parametrize("opset", [11, 13])
def test_unsqueeze(shape, axes, opset):
    if opset < 13:
        check_op("Unsqueeze", {"x": rand(*shape)}, {"axes": axes}, opset=opset)
    else:
        check_op("Unsqueeze", {"x": rand(*shape), "axes": i64(*axes)}, opset=opset, constants=("axes",))


@pytest.mark.parametrize("dtype", DTYPES)
def test_squeeze_unsqueeze_dtypes(dtype):
    check_op("Squeeze", {"x": rand(1, 3, dtype=dtype), "axes": i64(0)}, constants=("axes",))
    check_op("Unsqueeze", {"x": rand(3, dtype=dtype), "axes": i64(1)}, constants=("axes",))


def test_squeeze_unsqueeze_errors():
    _raises("Squeeze", {"x": rand(1, 3), "axes": i64(1)}, match="cannot squeeze", constants=("axes",))
    _raises("Squeeze", {"x": rand(1, 3)}, {"axes": [4]}, "out of range", opset=11)
    _raises("Unsqueeze", {"x": rand(1, 3), "axes": i64(1, 1)}, match="same axis", constants=("axes",))
    _raises("Unsqueeze", {"x": rand(1, 3), "axes": i64(3)}, match="out of range", constants=("axes",))


@pytest.mark.parametrize("shape", [(2, 3, 4), (5,), (), (0, 2)])
@pytest.mark.parametrize("op", ["Shape", "Size"])
def test_shape_size(shape, op):
    check_op(op, {"x": rand(*shape)}, opset=13)


@pytest.mark.parametrize("start,end", [(0, None), (1, None), (-1, None), (0, -1), (1, 2), (-10, 10), (2, 1)])
def test_shape_start_end(start, end):
    attrs = {"start": start} if end is None else {"start": start, "end": end}
    check_op("Shape", {"x": rand(2, 3, 4)}, attrs, opset=15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_shape_size_dtypes(dtype):
    check_op("Shape", {"x": rand(3, 1, dtype=dtype)}, opset=21)
    check_op("Size", {"x": rand(3, 1, dtype=dtype)}, opset=21)


@pytest.mark.parametrize("shape,target", [((3, 1), (2, 3, 6)), ((3, 1), (3, 4)), ((2, 3), (1,)), ((2, 3), (2, 1, 1)),
                                          ((1,), (0,)), ((), (2, 2)), ((4, 1, 2), (4, 3, 2))])
@pytest.mark.parametrize("const", [True, False])
def test_expand(shape, target, const):
    check_op("Expand", {"x": rand(*shape), "shape": i64(*target)}, opset=13, constants=("shape",) if const else ())


@pytest.mark.parametrize("dtype", DTYPES)
def test_expand_dtypes(dtype):
    check_op("Expand", {"x": rand(2, 1, dtype=dtype), "shape": i64(2, 3)}, constants=("shape",))


@pytest.mark.parametrize("shape,repeats", [((2, 3), (1, 2)), ((2, 3), (3, 1)), ((4,), (3,)), ((2, 1, 2), (2, 0, 3))])
@pytest.mark.parametrize("const", [True, False])
def test_tile(shape, repeats, const):
    check_op("Tile", {"x": rand(*shape), "repeats": i64(*repeats)}, opset=13, constants=("repeats",) if const else ())


@pytest.mark.parametrize("dtype", DTYPES)
def test_tile_identity_dtypes(dtype):
    check_op("Tile", {"x": rand(2, 3, dtype=dtype), "repeats": i64(2, 2)}, constants=("repeats",))
    check_op("Identity", {"x": rand(2, 3, dtype=dtype)}, opset=21)


def test_expand_tile_errors():
    _raises("Expand", {"x": rand(2, 3), "shape": i64(4, 3, 2)}, match="broadcast", constants=("shape",))
    _raises("Expand", {"x": rand(2, 3), "shape": i64(4, 3, 2)}, match="broadcast")
    _raises("Tile", {"x": rand(2, 3), "repeats": i64(2)}, match="repeats", constants=("repeats",))


@pytest.mark.parametrize("opset", [11, 12, 13, 22])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_dropout_inference(opset, dtype):
    check_op("Dropout", {"x": rand(3, 4, dtype=dtype)}, opset=opset)
    x = rand(2, 3, dtype=dtype)
    y, mask = run_braze(make_model("Dropout", {"x": x}, {"ratio": 0.2} if opset < 12 else None, n_outputs=2,
                                   opset=opset), {"x": x})
    assert_close(y, x)
    # NOTE: the mask is all true (nothing dropped), as ONNX's reference gives; onnxruntime returns all false
    # for opsets 10 and 11.
    assert mask.dtype == np.bool_ and mask.shape == x.shape and mask.all()


@pytest.mark.parametrize("training,ratio", [(False, 0.5), (True, 0.0), (None, 0.3)])
@pytest.mark.parametrize("const", [True, False])
def test_dropout_modes(training, ratio, const):
    inputs = {"x": rand(2, 5), "ratio": np.array(ratio, np.float32),
              "training_mode": None if training is None else np.array(training)}
    check_op("Dropout", inputs, n_outputs=2, opset=13, constants=("ratio", "training_mode") if const else ())


@pytest.mark.parametrize("const", [True, False])
def test_dropout_training_unsupported(const):
    inputs = {"x": rand(2, 5), "ratio": np.array(0.5, np.float32), "training_mode": np.array(True)}
    error = UnsupportedError if const else braze.BrazeError  # at run time, wrapped in an ExecutionError
    _raises("Dropout", inputs, {"seed": 3}, "training-mode dropout", opset=13, n_outputs=2, error=error,
            constants=("ratio", "training_mode") if const else ())
    _raises("Dropout", {"x": rand(2, 5), "ratio": None, "training_mode": np.array(True)}, None, "training-mode",
            opset=13, error=error, constants=("training_mode",) if const else ())


@pytest.mark.parametrize("blocksize,mode", [(2, "DCR"), (2, "CRD"), (3, "DCR"), (1, "CRD")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depth_to_space(blocksize, mode, dtype):
    x = rand(2, 2 * blocksize * blocksize, 3, 2, dtype=dtype)
    check_op("DepthToSpace", {"x": x}, {"blocksize": blocksize, "mode": mode}, opset=13)


@pytest.mark.parametrize("blocksize", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_space_to_depth(blocksize, dtype):
    check_op("SpaceToDepth", {"x": rand(2, 3, 6, 3 * blocksize, dtype=dtype)}, {"blocksize": blocksize}, opset=13)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.bool_, np.float16])
def test_depth_space_other_dtypes(mode, dtype):
    """Types onnxruntime has no kernel for: the float64 result, cast, is the reference."""
    x = rand(1, 8, 2, 3, dtype=dtype)
    for op, attrs in (("DepthToSpace", {"blocksize": 2, "mode": mode}), ("SpaceToDepth", {"blocksize": 1})):
        (expected,) = run_ort(make_model(op, {"x": x.astype(np.float64)}, attrs, opset=13), {"x": x.astype(np.float64)})
        (actual,) = run_braze(make_model(op, {"x": x}, attrs, opset=13), {"x": x})
        assert_close(actual, expected.astype(dtype))


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_space_to_depth_inverts_depth_to_space(mode):
    x = rand(1, 12, 3, 4)
    nodes = [oh.make_node("DepthToSpace", ["x"], ["s"], blocksize=2, mode=mode),
             oh.make_node("SpaceToDepth", ["s"], ["y"], blocksize=2, mode=mode)]
    model = _graph(nodes, {"x": x}, {"y": (np.float32, 4)}, opset=28)
    assert_close(run_braze(model, {"x": x})[0], x)


def test_depth_space_errors():
    _raises("DepthToSpace", {"x": rand(1, 6, 2, 2)}, {"blocksize": 2}, "multiple of blocksize")
    _raises("DepthToSpace", {"x": rand(1, 4, 2)}, {"blocksize": 2}, "4-D")
    _raises("DepthToSpace", {"x": rand(1, 4, 2, 2)}, {"blocksize": 2, "mode": "XYZ"}, "mode")
    _raises("SpaceToDepth", {"x": rand(1, 2, 3, 4)}, {"blocksize": 2}, "multiples of blocksize")
    _raises("SpaceToDepth", {"x": rand(1, 2, 4, 4)}, {"blocksize": 2, "mode": "CRD"}, "does not take attribute")
    _raises("SpaceToDepth", {"x": rand(1, 2, 4, 4)}, {"blocksize": 2, "mode": "XYZ"}, "mode", opset=28)


@pytest.mark.parametrize("shape", [(4, 5), (3, 3), (2, 3, 6), (1, 4)])
@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, 0, 2, -1, 7, -9])
def test_trilu(shape, upper, k):
    inputs = {"x": rand(*shape), "k": None if k is None else np.array(k, np.int64)}
    check_op("Trilu", inputs, {"upper": upper}, opset=14, constants=("k",))


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.float16])
def test_trilu_dtypes_and_runtime_k(dtype):
    check_op("Trilu", {"x": rand(3, 4, dtype=dtype), "k": np.array(1, np.int64)}, {"upper": 0}, opset=14)


def test_trilu_errors():
    _raises("Trilu", {"x": rand(4)}, None, "rank >= 2", opset=14)


@pytest.mark.parametrize("shape,target,axes", [((5, 6), (3, 4), None), ((2, 3), (5, 4), None), ((4, 3), (2, 6), None),
                                               ((3, 5, 4), (2, 7), [0, -1]), ((3, 5, 4), (1,), [1]),
                                               ((2, 4), (2, 4), None)])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_center_crop_pad(shape, target, axes, dtype):
    attrs = None if axes is None else {"axes": axes}
    check_op("CenterCropPad", {"x": rand(*shape, dtype=dtype), "shape": i64(*target)}, attrs, opset=18,
             constants=("shape",))


def test_center_crop_pad_errors():
    _raises("CenterCropPad", {"x": rand(3, 4), "shape": i64(2)}, match="one non-negative size", opset=18,
            constants=("shape",))


# -- chains of shape computations, as exporters write them ----------------------------------------------------

def _graph(nodes, inputs, outputs, opset=17, initializers=None):
    """A model of `nodes`; `outputs` maps each output name to its (numpy dtype, rank)."""
    def info(name, dtype, shape):
        return oh.make_tensor_value_info(name, onh.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)

    graph = oh.make_graph(nodes, "chain", [info(k, v.dtype, v.shape) for k, v in inputs.items()],
                          [info(k, dtype, [None] * rank) for k, (dtype, rank) in outputs.items()],
                          [onh.from_array(v, k) for k, v in (initializers or {}).items()])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    return model


def _check_graph(model, feeds):
    expected = run_ort(model, feeds)
    for actual, exp in zip(run_braze(model, feeds), expected):
        assert_close(actual, exp)


def test_chain_shape_gather_unsqueeze_concat_reshape():
    """x: [B, T, C] -> reshape to [B, T, heads, C // heads], with the batch and time dims read from x."""
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("Gather", ["shape", "zero"], ["b"], axis=0),
        oh.make_node("Gather", ["shape", "one"], ["t"], axis=0),
        oh.make_node("Unsqueeze", ["b", "axes0"], ["b1"]),
        oh.make_node("Unsqueeze", ["t", "axes0"], ["t1"]),
        oh.make_node("Concat", ["b1", "t1", "tail"], ["target"], axis=0),
        oh.make_node("Reshape", ["x", "target"], ["y"]),
        oh.make_node("Transpose", ["y"], ["z"], perm=[0, 2, 1, 3]),
    ]
    inits = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64), "axes0": i64(0), "tail": i64(4, -1)}
    x = rand(2, 5, 8)
    model = _graph(nodes, {"x": x}, {"z": (np.float32, 4)}, opset=13, initializers=inits)
    _check_graph(model, {"x": x})
    engine = braze.Builder("cpu").build(braze.parse_onnx(model))
    assert engine.outputs[0].shape == (2, 4, 5, 2)  # the shape arithmetic folded at build time


def test_chain_slice_concat_expand_constant_of_shape_range():
    """Shape -> Slice -> Concat -> Expand; ConstantOfShape and Range sized from the input's shape."""
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("Slice", ["shape", "s0", "s1"], ["lead"]),
        oh.make_node("Concat", ["lead", "three", "last"], ["target"], axis=0),
        oh.make_node("Unsqueeze", ["x", "axes1"], ["x1"]),
        oh.make_node("Expand", ["x1", "target"], ["expanded"]),
        oh.make_node("ConstantOfShape", ["target"], ["ones"], value=onh.from_array(np.array([1.5], np.float32))),
        oh.make_node("Shape", ["x"], ["t"], start=-1),
        oh.make_node("Squeeze", ["t"], ["t0"]),
        oh.make_node("Range", ["zero", "t0", "one"], ["positions"]),
        oh.make_node("Size", ["x"], ["n"]),
    ]
    inits = {"s0": i64(0), "s1": i64(1), "three": i64(3), "last": i64(4),
             "zero": np.array(0, np.int64), "one": np.array(1, np.int64), "axes1": i64(1)}
    x = rand(2, 4)
    outputs = {"expanded": (np.float32, 3), "ones": (np.float32, 3), "positions": (np.int64, 1), "n": (np.int64, 0)}
    model = _graph(nodes, {"x": x}, outputs, opset=18, initializers=inits)
    _check_graph(model, {"x": x})


def test_chain_with_runtime_shape_values():
    """Shapes computed from data fed at run time: every shape downstream is only known when the engine runs."""
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("Gather", ["shape", "idx"], ["picked"], axis=0),
        oh.make_node("Concat", ["picked", "extra"], ["target"], axis=0),
        oh.make_node("Reshape", ["x", "target"], ["y"]),
        oh.make_node("Slice", ["y", "starts", "ends"], ["z"]),
        oh.make_node("Tile", ["z", "reps"], ["w"]),
    ]
    x = rand(3, 4, 2)
    feeds = {"x": x, "idx": i64(2, 0), "extra": i64(-1), "starts": i64(0, 1), "ends": i64(1, 3), "reps": i64(2, 1, 1)}
    _check_graph(_graph(nodes, feeds, {"w": (np.float32, 2)}, opset=13), feeds)


def test_runtime_reshape_of_an_activation_survives_memory_reuse():
    """A Reshape whose shape is fed at run time returns a view of its input's arena memory; a later layer
    reusing that memory must not change it."""
    nodes = [oh.make_node("Relu", ["x"], ["a"]), oh.make_node("Reshape", ["a", "s"], ["y"]),
             oh.make_node("Sigmoid", ["x"], ["b"]), oh.make_node("Reshape", ["b", "s"], ["c"]),
             oh.make_node("Concat", ["y", "c"], ["z"], axis=0)]
    feeds = {"x": rand(4, 6), "s": i64(6, 4)}
    _check_graph(_graph(nodes, feeds, {"z": (np.float32, 2)}), feeds)
