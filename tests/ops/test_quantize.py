import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator

import braze
from braze.testing import assert_close

from .harness import check_op, feeds_of, make_model, rand, run_braze

F8 = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2, "e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
      "e5m2fnuz": ml_dtypes.float8_e5m2fnuz}


def _raises(op_type, inputs, attrs, match, *, error=braze.BrazeError, opset=21, n_outputs=1):
    """Building (or running) the node fails with `error`, naming the node."""
    model = make_model(op_type, inputs, attrs, opset=opset, n_outputs=n_outputs)
    with pytest.raises(error, match=f"{op_type.lower()}_node.*{match}"):
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False), braze.BuilderConfig())
        engine.create_execution_context().infer(feeds_of(inputs))


def check_reference(op_type, inputs, attrs=None, *, opset):
    """Compare with ONNX's reference evaluator, exactly (onnxruntime has no kernel, or its Python API no
    float8 or bfloat16)."""
    model = make_model(op_type, inputs, attrs, opset=opset)
    feeds = feeds_of(inputs)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    actual = run_braze(model, feeds)[0]
    assert actual.dtype == expected.dtype
    assert_close(actual, expected, rtol=0, atol=0, name=f"{op_type} output")
    return actual


def scale(*shape, seed=0):
    return rand(*shape, low=0.01, high=0.2, seed=seed)


def zero_point(*shape, dtype=np.uint8, seed=1):
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min // 2, info.max // 2 + 1, size=shape).astype(dtype)


# -- QuantizeLinear ----------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [10, 13, 19, 21])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("shape", [(6,), (2, 3, 4)])
def test_quantize_per_tensor(opset, dtype, shape):
    check_op("QuantizeLinear", {"x": rand(*shape, low=-20, high=20), "s": scale(), "z": zero_point(dtype=dtype)},
             opset=opset)


@pytest.mark.parametrize("opset", [10, 21])
def test_quantize_defaults_to_uint8(opset):
    check_op("QuantizeLinear", {"x": rand(3, 5, low=-5, high=30), "s": scale()}, opset=opset)


@pytest.mark.parametrize("axis,shape", [(1, (2, 3, 4)), (0, (5, 2)), (-1, (2, 3, 4)), (2, (1, 2, 3, 2))])
@pytest.mark.parametrize("opset", [13, 21])
def test_quantize_per_axis(axis, shape, opset):
    n = shape[axis]
    check_op("QuantizeLinear", {"x": rand(*shape, low=-20, high=20), "s": scale(n), "z": zero_point(n, dtype=np.int8)},
             {"axis": axis}, opset=opset)


@pytest.mark.parametrize("shape,axis,block", [((4, 6), 1, 2), ((4, 7), 1, 3), ((6, 3), 0, 4), ((2, 5, 3), -2, 2)])
def test_quantize_blocked(shape, axis, block):
    s_shape = list(shape)
    s_shape[axis] = -(-shape[axis] // block)
    check_op("QuantizeLinear", {"x": rand(*shape, low=-20, high=20), "s": scale(*s_shape),
                                "z": zero_point(*s_shape)}, {"axis": axis, "block_size": block}, opset=21)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_quantize_16_bit(dtype):
    check_op("QuantizeLinear", {"x": rand(4, 5, low=-3000, high=3000), "s": scale(), "z": zero_point(dtype=dtype)},
             opset=21)


def test_quantize_output_dtype_without_zero_point():
    got = check_op("QuantizeLinear", {"x": rand(3, 4, low=-20, high=20), "s": scale()},
                   {"output_dtype": TensorProto.INT8}, opset=21)
    assert got[0].dtype == np.int8


def test_quantize_saturates_integers():
    x = np.array([-1e9, -300, -1.5, -0.5, 0.5, 1.5, 2.5, 300, 1e9], np.float32)
    check_op("QuantizeLinear", {"x": x, "s": np.array(1, np.float32), "z": np.array(3, np.uint8)}, opset=13)
    check_op("QuantizeLinear", {"x": x, "s": np.array(1, np.float32), "z": np.array(-3, np.int8)}, opset=13)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.int32])
def test_quantize_input_types(dtype):
    x = rand(3, 4, low=-30, high=30).astype(dtype)
    s = np.array(0.25, np.float32) if dtype == np.int32 else np.array(0.25, dtype)
    check = check_op if dtype == np.float16 else check_reference  # onnxruntime has no kernel for the others
    check("QuantizeLinear", {"x": x, "s": s, "z": zero_point(dtype=np.int8)}, opset=19)


@pytest.mark.parametrize("kind", sorted(F8))
@pytest.mark.parametrize("saturate", [0, 1])
def test_quantize_float8(kind, saturate):
    x = np.concatenate([rand(20, low=-100, high=100), np.array([1e5, -1e5, 0.0, 3.3], np.float32)])
    check_reference("QuantizeLinear", {"x": x, "s": np.array(0.5, np.float32), "z": np.zeros((), F8[kind])},
                    {"saturate": saturate}, opset=19)


# -- DequantizeLinear --------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [10, 13, 19, 21])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_dequantize_per_tensor(opset, dtype):
    info = np.iinfo(dtype)
    x = rand(2, 3, 4, dtype=dtype, low=info.min, high=info.max)
    check_op("DequantizeLinear", {"x": x, "s": scale(), "z": zero_point(dtype=dtype)}, opset=opset)


def test_dequantize_int32_without_zero_point():
    x = rand(3, 4, dtype=np.int32, low=-100000, high=100000)
    check_op("DequantizeLinear", {"x": x, "s": scale()}, opset=10)


@pytest.mark.parametrize("axis,shape", [(1, (2, 3, 4)), (0, (5, 2)), (-1, (2, 3, 4))])
def test_dequantize_per_axis(axis, shape):
    n = shape[axis]
    x = rand(*shape, dtype=np.uint8, low=0, high=255)
    check_op("DequantizeLinear", {"x": x, "s": scale(n), "z": zero_point(n)}, {"axis": axis}, opset=13)


@pytest.mark.parametrize("shape,axis,block", [((4, 6), 1, 2), ((4, 7), 1, 3), ((6, 3), 0, 4)])
def test_dequantize_blocked(shape, axis, block):
    s_shape = list(shape)
    s_shape[axis] = -(-shape[axis] // block)
    x = rand(*shape, dtype=np.int8, low=-128, high=127)
    check_op("DequantizeLinear", {"x": x, "s": scale(*s_shape), "z": zero_point(*s_shape, dtype=np.int8)},
             {"axis": axis, "block_size": block}, opset=21)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_dequantize_16_bit(dtype):
    info = np.iinfo(dtype)
    x = rand(4, 5, dtype=dtype, low=info.min, high=info.max)
    check_op("DequantizeLinear", {"x": x, "s": scale(), "z": zero_point(dtype=dtype)}, opset=21)


@pytest.mark.parametrize("kind", sorted(F8))
@pytest.mark.parametrize("scale_dtype", [np.float32, np.float16])
def test_dequantize_float8(kind, scale_dtype):
    x = rand(4, 5, low=-200, high=200).astype(F8[kind])
    got = check_reference("DequantizeLinear", {"x": x, "s": np.array(0.75, scale_dtype)}, opset=19)
    assert got[0].dtype == scale_dtype


def test_dequantize_bfloat16_scale():
    x = rand(3, 4, dtype=np.int8, low=-128, high=127)
    got = check_reference("DequantizeLinear", {"x": x, "s": np.array(0.125, ml_dtypes.bfloat16),
                                               "z": zero_point(dtype=np.int8)}, opset=19)
    assert got.dtype == ml_dtypes.bfloat16


def test_dequantize_output_dtype():
    """output_dtype (opset 23): the product in float32, rounded once into the output type."""
    x = rand(3, 4, dtype=np.uint8, low=0, high=255)
    s, z = scale(), zero_point()
    model = make_model("DequantizeLinear", {"x": x, "s": s, "z": z}, {"output_dtype": TensorProto.FLOAT16}, opset=23)
    got = run_braze(model, {"x": x, "s": s, "z": z})[0]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, ((x.astype(np.float32) - z) * s).astype(np.float16))


def test_quantize_dequantize_opset_28():
    x = rand(2, 8, low=-10, high=10)
    s = scale(2, 4)
    model = make_model("QuantizeLinear", {"x": x, "s": s}, {"axis": 1, "block_size": 2,
                                                         "output_dtype": TensorProto.INT16}, opset=28)
    q = run_braze(model, {"x": x, "s": s})[0]
    expected = np.clip(np.rint(x / np.repeat(s, 2, axis=1)), -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(q, expected)
    model = make_model("DequantizeLinear", {"q": q, "s": s}, {"axis": 1, "block_size": 2}, opset=28)
    np.testing.assert_allclose(run_braze(model, {"q": q, "s": s})[0], q * np.repeat(s, 2, axis=1), rtol=1e-6)


# -- DynamicQuantizeLinear ---------------------------------------------------------------------

@pytest.mark.parametrize("low,high", [(-3, 5), (1, 4), (-6, -2)])
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5)])
def test_dynamic_quantize(low, high, shape):
    check_op("DynamicQuantizeLinear", {"x": rand(*shape, low=low, high=high)}, n_outputs=3, opset=11)


def test_dynamic_quantize_of_zeros():
    check_op("DynamicQuantizeLinear", {"x": np.zeros((2, 3), np.float32)}, n_outputs=3, opset=11)


# -- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [TensorProto.FLOAT6E2M3, TensorProto.FLOAT6E3M2])
def test_6_bit_output_dtype_is_unsupported(code):
    _raises("QuantizeLinear", {"x": rand(4), "s": scale()}, {"output_dtype": code}, "not supported",
            error=braze.errors.UnsupportedError, opset=23)


def test_quantize_errors():
    _raises("QuantizeLinear", {"x": rand(2, 3), "s": scale(4)}, {"axis": 1}, "vector of 3")
    _raises("QuantizeLinear", {"x": rand(2, 3), "s": scale(3)}, {}, "scalar before opset 13", opset=10)
    _raises("QuantizeLinear", {"x": rand(2, 6), "s": scale(2, 2)}, {"axis": 1, "block_size": 2}, "blocks of 2")
    _raises("QuantizeLinear", {"x": rand(2, 6), "s": scale(2, 3)}, {"axis": 1}, "vector")
    _raises("QuantizeLinear", {"x": rand(2, 3), "s": scale(3), "z": zero_point(2)}, {"axis": 1}, "shape")
    _raises("QuantizeLinear", {"x": rand(2, 3), "s": scale(3)}, {"axis": 2}, "axis")
    _raises("QuantizeLinear", {"x": rand(4), "s": scale(), "z": zero_point(dtype=np.int8)},
            {"output_dtype": TensorProto.UINT8}, "output_dtype")
    _raises("QuantizeLinear", {"x": rand(4), "s": scale(), "z": zero_point(dtype=np.int16)}, {}, "cannot quantize",
            opset=19)
    _raises("QuantizeLinear", {"x": rand(4).astype(np.float64), "s": scale()}, {}, "does not take")


def test_dequantize_errors():
    x = rand(2, 3, dtype=np.uint8, low=0, high=255)
    _raises("DequantizeLinear", {"x": x, "s": scale(), "z": zero_point(dtype=np.int8)}, {}, "must agree")
    _raises("DequantizeLinear", {"x": x, "s": scale(2)}, {"axis": 1}, "vector of 3")
    _raises("DequantizeLinear", {"x": x, "s": scale()}, {"output_dtype": TensorProto.INT32}, "output_dtype", opset=23)
    _raises("DequantizeLinear", {"x": rand(2, 3), "s": scale()}, {}, "does not take")
    _raises("DequantizeLinear", {"x": rand(4, dtype=np.int16), "s": scale()}, {}, "does not take", opset=19)
    _raises("DynamicQuantizeLinear", {"x": rand(4).astype(np.float64)}, {}, "float32", opset=11, n_outputs=3)
