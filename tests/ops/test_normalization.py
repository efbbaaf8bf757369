import numpy as np
import onnx.helper as oh
import pytest

import braze
from braze.testing import assert_close

from .harness import check_bfloat16, check_op, check_reference, feeds_of, make_model, rand, run_braze, run_ort

F16, F64 = np.float16, np.float64




def typed_outputs(model, dtypes, rank):
    """Give outputs that ONNX's shape inference left without a type or shape one (the checkers need it)."""
    for out, dtype in zip(model.graph.output, dtypes):
        tt = out.type.tensor_type
        if not tt.elem_type or not tt.HasField("shape"):
            out.CopyFrom(oh.make_tensor_value_info(out.name, oh.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                                   [f"d{i}" for i in range(rank)]))
    return model


def check_typed(op_type, inputs, attrs, opset, check=True):
    """check_op for ops whose outputs ONNX's shape inference leaves untyped (function ops)."""
    x = inputs["x"]
    model = typed_outputs(make_model(op_type, inputs, attrs, opset=opset), [x.dtype], x.ndim)
    feeds = feeds_of(inputs)
    engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=check), braze.BuilderConfig())
    actual = engine.create_execution_context().infer(feeds)["y0"]
    assert_close(actual, run_ort(model, feeds)[0], name=op_type)




def expect_error(op_type, inputs, attrs, match, **kw):
    model = typed_outputs(make_model(op_type, inputs, attrs, **kw), [np.float32] * 3, len(inputs["x"].shape))
    with pytest.raises(braze.BrazeError, match=match) as info:
        braze.Builder("cpu").build(braze.parse_onnx(model, check=False), braze.BuilderConfig())
    assert f"{op_type.lower()}_node" in str(info.value)


def bn_inputs(shape, dtype=np.float32, param_dtype=None):
    c, p = shape[1], param_dtype or dtype
    return {"x": rand(*shape, dtype=dtype), "scale": rand(c, dtype=p), "b": rand(c, dtype=p),
            "mean": rand(c, dtype=p), "var": rand(c, dtype=p, low=0.2, high=2.0)}


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)])
@pytest.mark.parametrize("opset", [7, 9, 15])
def test_batch_norm(shape, opset):
    check_op("BatchNormalization", bn_inputs(shape), {"epsilon": 1e-3}, opset=opset,
             constants=("scale", "b", "mean", "var"))


@pytest.mark.parametrize("dtype", [F16, F64])
def test_batch_norm_dtypes(dtype):
    check_op("BatchNormalization", bn_inputs((2, 3, 4, 5), dtype), opset=15)


def test_batch_norm_mixed_dtypes():
    check_reference("BatchNormalization", bn_inputs((2, 3, 4, 5), F16, np.float32), {}, opset=15)


def test_batch_norm_per_activation():  # spatial=0: one parameter per channel and position
    inputs = {"x": rand(2, 3, 4), "scale": rand(3, 4), "b": rand(3, 4), "mean": rand(3, 4),
              "var": rand(3, 4, low=0.2, high=2.0)}
    x, scale, b, mean, var = inputs.values()
    expected = (x - mean) / np.sqrt(var + 1e-5) * scale + b
    actual = run_braze(make_model("BatchNormalization", inputs, {"spatial": 0}, opset=7), inputs)[0]
    assert_close(actual, expected)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 5)])
def test_batch_norm_training(shape):
    check_op("BatchNormalization", bn_inputs(shape), {"training_mode": 1, "momentum": 0.8}, opset=15, n_outputs=3)


def test_batch_norm_bad_shapes():
    inputs = bn_inputs((2, 3, 4))
    inputs["mean"] = rand(4)
    expect_error("BatchNormalization", inputs, {}, "mean has shape", opset=15)
    expect_error("BatchNormalization", {**bn_inputs((2, 3)), "x": rand(2, 3).astype(np.int32)}, {}, "floating",
                 opset=15)


@pytest.mark.parametrize("shape,axis", [((2, 3, 8), -1), ((2, 3, 8), 1), ((4, 6), 0), ((2, 3, 4, 5), -2), ((7,), 0)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_layer_norm(shape, axis, bias, n_outputs):
    norm = shape[axis:]
    inputs = {"x": rand(*shape), "scale": rand(*norm), "b": rand(*norm) if bias else None}
    check_op("LayerNormalization", inputs, {"axis": axis, "epsilon": 1e-3}, n_outputs=n_outputs)


def test_layer_norm_broadcast_scale():
    inputs = {"x": rand(2, 3, 4, 5), "scale": rand(1, 5), "b": rand(5)}
    check_op("LayerNormalization", inputs, {"axis": -2}, n_outputs=3)


@pytest.mark.parametrize("dtype", [F16, F64])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_layer_norm_dtypes(dtype, n_outputs):
    inputs = {"x": rand(2, 3, 16, dtype=dtype), "scale": rand(16, dtype=dtype), "b": rand(16, dtype=dtype)}
    check_op("LayerNormalization", inputs, {}, n_outputs=n_outputs)


def test_layer_norm_errors():
    expect_error("LayerNormalization", {"x": rand(2, 3), "scale": rand(3)}, {"axis": 2}, "axis")
    expect_error("LayerNormalization", {"x": rand(2, 3), "scale": rand(3)}, {"stash_type": 7}, "stash_type")
    expect_error("LayerNormalization", {"x": rand(2, 3), "scale": rand(4)}, {}, "does not broadcast")


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)])
@pytest.mark.parametrize("opset", [6, 22])
def test_instance_norm(shape, opset):
    inputs = {"x": rand(*shape), "scale": rand(shape[1]), "b": rand(shape[1])}
    check_op("InstanceNormalization", inputs, {"epsilon": 1e-4}, opset=opset)


@pytest.mark.parametrize("dtype", [F16, F64])
def test_instance_norm_dtypes(dtype):
    inputs = {"x": rand(2, 3, 4, 5, dtype=dtype), "scale": rand(3, dtype=dtype), "b": rand(3, dtype=dtype)}
    (check_op if dtype == F16 else check_reference)("InstanceNormalization", inputs, {})


def test_instance_norm_errors():
    expect_error("InstanceNormalization", {"x": rand(2, 3, 4), "scale": rand(2), "b": rand(3)}, {}, "scale has shape")
    expect_error("InstanceNormalization", {"x": rand(2, 3), "scale": rand(3), "b": rand(3)}, {}, "rank")


@pytest.mark.parametrize("shape,groups", [((2, 4, 5), 2), ((2, 6, 4, 5), 3), ((1, 4, 3, 2, 2), 4), ((2, 6, 3, 3), 1)])
@pytest.mark.parametrize("opset", [18, 21])
def test_group_norm(shape, groups, opset):
    n = groups if opset == 18 else shape[1]
    # NOTE: the ONNX checker refuses GroupNormalization-18 as deprecated; braze can still run it unchecked
    check_typed("GroupNormalization", {"x": rand(*shape), "scale": rand(n), "b": rand(n)},
                {"num_groups": groups, "epsilon": 1e-3}, opset, check=opset > 18)


def test_group_norm_float16():
    check_typed("GroupNormalization", {"x": rand(2, 4, 5, 5, dtype=F16), "scale": rand(4, dtype=F16),
                                       "b": rand(4, dtype=F16)}, {"num_groups": 2}, 21)


def test_group_norm_errors():
    inputs = {"x": rand(2, 4, 5), "scale": rand(4), "b": rand(4)}
    expect_error("GroupNormalization", inputs, {"num_groups": 3}, "divide", opset=21)
    expect_error("GroupNormalization", inputs, {"num_groups": 2}, "scale has shape", opset=18)


def lrn_expected(x, size, alpha, beta, bias):
    """LRN by the spec's formula: channels c - floor((size-1)/2) to c + ceil((size-1)/2)."""
    out = np.empty(x.shape, np.float64)
    squares = x.astype(np.float64) ** 2
    for c in range(x.shape[1]):
        lo, hi = max(0, c - (size - 1) // 2), min(x.shape[1], c + size // 2 + 1)
        out[:, c] = x[:, c] / (bias + alpha / size * squares[:, lo:hi].sum(axis=1)) ** beta
    return out.astype(x.dtype)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn(size):
    check_op("LRN", {"x": rand(2, 6, 4, 3)}, {"size": size, "alpha": 0.01, "beta": 0.6, "bias": 1.5}, opset=13)


@pytest.mark.parametrize("size", [2, 3, 4])
@pytest.mark.parametrize("shape", [(2, 6, 5), (2, 5, 4, 3), (1, 4, 2, 3, 2)])
def test_lrn_any_size_and_rank(size, shape):  # onnxruntime takes odd sizes of 4-D inputs only
    x = rand(*shape)
    attrs = {"size": size, "alpha": 0.01, "beta": 0.6, "bias": 1.5}
    assert_close(run_braze(make_model("LRN", {"x": x}, attrs), {"x": x})[0], lrn_expected(x, **attrs))


def test_lrn_float16():
    check_op("LRN", {"x": rand(2, 5, 4, 3, dtype=F16)}, {"size": 3})


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("shape,axis", [((3, 4), -1), ((2, 3, 4), 1), ((2, 3, 4), 0), ((5,), 0)])
def test_lp_normalization(p, shape, axis):
    check_op("LpNormalization", {"x": rand(*shape)}, {"p": p, "axis": axis})


@pytest.mark.parametrize("dtype", [F16, F64])
def test_lp_normalization_dtypes(dtype):
    check_op("LpNormalization", {"x": rand(3, 4, dtype=dtype)}, {})


@pytest.mark.parametrize("shape,axes", [((2, 3, 4, 5), None), ((2, 3, 4, 5), [1]), ((2, 3, 4), [0, 2]),
                                        ((3, 4), [0, 1])])
@pytest.mark.parametrize("opset", [9, 13])
def test_mean_variance_normalization(shape, axes, opset):
    check_typed("MeanVarianceNormalization", {"x": rand(*shape)}, {} if axes is None else {"axes": axes}, opset)


def test_mean_variance_normalization_float16():  # onnxruntime's expansion of the function fails for float16
    x = rand(2, 3, 4, 5, dtype=F16)
    wide = x.astype(np.float64)
    mean = wide.mean(axis=(0, 2, 3), keepdims=True)
    expected = (wide - mean) / (np.sqrt(((wide - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)) + 1e-9)
    model = typed_outputs(make_model("MeanVarianceNormalization", {"x": x}, {}), [F16], 4)
    assert_close(run_braze(model, {"x": x})[0], expected.astype(F16))


def test_normalization_errors():
    expect_error("LRN", {"x": rand(2, 3, 4)}, {"size": 0}, "size")
    expect_error("LpNormalization", {"x": rand(2, 3)}, {"p": 3}, "p must be")
    expect_error("MeanVarianceNormalization", {"x": rand(2, 3)}, {"axes": [2]}, "axes")


@pytest.mark.parametrize("op_type,inputs,n_outputs", [
    ("LayerNormalization", {"x": rand(2, 3, 8), "scale": rand(8), "b": rand(8)}, 3),
    ("BatchNormalization", bn_inputs((2, 3, 4)), 1),
    ("InstanceNormalization", {"x": rand(2, 3, 4), "scale": rand(3), "b": rand(3)}, 1),
])
def test_bfloat16(op_type, inputs, n_outputs):
    check_bfloat16(op_type, inputs, opset=22, n_outputs=n_outputs)
