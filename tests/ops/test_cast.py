import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx.reference import ReferenceEvaluator

import braze
from braze.testing import assert_close

from .harness import check_op, feeds_of, make_model, rand, run_braze
from .test_elementwise import expect_error

NUMERIC = {
    TP.FLOAT: np.float32, TP.FLOAT16: np.float16, TP.DOUBLE: np.float64, TP.INT8: np.int8, TP.INT16: np.int16,
    TP.INT32: np.int32, TP.INT64: np.int64, TP.UINT8: np.uint8, TP.UINT32: np.uint32, TP.BOOL: np.bool_,
}
FLOAT8 = {TP.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn, TP.FLOAT8E4M3FNUZ: ml_dtypes.float8_e4m3fnuz,
          TP.FLOAT8E5M2: ml_dtypes.float8_e5m2, TP.FLOAT8E5M2FNUZ: ml_dtypes.float8_e5m2fnuz}
SPECIAL = np.array([0.0, -0.0, 1e-9, 0.3, -1.7, 100.25, 239.0, 250.0, 448.0, 463.9, 464.0, 470.0, -1000.0,
                    57344.0, 61440.0, 1e6, np.inf, -np.inf, np.nan], np.float32)


def source(dtype, nonnegative: bool) -> np.ndarray:
    """Random values of `dtype` with fractions where it has them and a zero; `nonnegative` for what
    becomes unsigned (a negative float cast to an unsigned type is undefined)."""
    if dtype == np.bool_:
        return rand(3, 4, dtype=bool)
    x = rand(3, 4, low=0 if nonnegative else -100, high=100).astype(dtype)
    x.flat[0] = 0
    return x


def check_reference(op_type: str, inputs, attrs, *, opset: int, constants=()) -> np.ndarray:
    """Compare with ONNX's reference evaluator, exactly (onnxruntime's Python API has no bfloat16 or float8)."""
    model = make_model(op_type, inputs, attrs, opset=opset, constants=constants)
    feeds = feeds_of(inputs, constants)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    actual = run_braze(model, feeds)[0]
    assert actual.dtype == expected.dtype
    assert_close(actual, expected, rtol=0, atol=0, name=f"{op_type} output")
    return actual


@pytest.mark.parametrize("to", sorted(NUMERIC))
@pytest.mark.parametrize("src", sorted(NUMERIC))
def test_cast_numeric(src, to):
    unsigned = (np.uint8, np.uint32)
    x = source(NUMERIC[src], nonnegative=NUMERIC[src] in unsigned or NUMERIC[to] in unsigned)
    out = check_op("Cast", {"x": x}, {"to": to}, opset=13)[0]
    assert out.dtype == NUMERIC[to]


@pytest.mark.parametrize("opset", [6, 9, 13, 19, 21, 23, 24])
def test_cast_opsets(opset):
    check_op("Cast", {"x": rand(2, 3, 4)}, {"to": TP.INT32}, opset=opset)
    check_op("Cast", {"x": rand(5, dtype=np.int64)}, {"to": TP.FLOAT16}, opset=opset)


def test_cast_narrowing_integers_wraps():
    x = np.array([200, 300, -129, 2**40 + 7, -1], np.int64)
    check_op("Cast", {"x": x}, {"to": TP.INT8}, opset=13)
    check_op("Cast", {"x": x}, {"to": TP.UINT8}, opset=13)
    check_op("Cast", {"x": x}, {"to": TP.UINT32}, opset=13)


def test_cast_to_same_type():
    check_op("Cast", {"x": rand(3, 3)}, {"to": TP.FLOAT}, opset=13)


def test_cast_of_a_constant_folds():
    check_op("Cast", {"x": rand(2, 3)}, {"to": TP.INT64}, opset=13, constants=("x",))
    check_reference("Cast", {"x": SPECIAL}, {"to": TP.FLOAT8E4M3FN, "saturate": 0}, opset=19, constants=("x",))


@pytest.mark.parametrize("to", sorted(FLOAT8))
@pytest.mark.parametrize("saturate", [0, 1])
@pytest.mark.parametrize("src", [np.float32, np.float16, np.float64])
def test_cast_to_float8(to, saturate, src):
    with np.errstate(over="ignore"):  # float16 has no 1e6: it becomes inf
        x = SPECIAL.astype(src)
    out = check_reference("Cast", {"x": x}, {"to": to, "saturate": saturate}, opset=19)
    assert out.dtype == FLOAT8[to]


@pytest.mark.parametrize("to", sorted(FLOAT8))
def test_cast_to_float8_saturates_by_default(to):
    check_reference("Cast", {"x": SPECIAL}, {"to": to}, opset=21)


@pytest.mark.parametrize("src", sorted(FLOAT8))
@pytest.mark.parametrize("to", [TP.FLOAT, TP.FLOAT16, TP.DOUBLE, TP.INT32, TP.BOOL])
def test_cast_from_float8(src, to):
    x = rand(3, 5, low=-20, high=20).astype(FLOAT8[src])
    check_reference("Cast", {"x": x}, {"to": to}, opset=19)


@pytest.mark.parametrize("to", sorted(FLOAT8))
def test_cast_integers_to_float8(to):
    check_reference("Cast", {"x": np.array([0, 1, -3, 17, 300, -5000, 70000], np.int64)}, {"to": to}, opset=19)


def test_cast_bfloat16():
    x = np.array([1.0, -2.5, 3.14159, 1e30, -1e-30, np.inf, np.nan], np.float32)
    check_reference("Cast", {"x": x}, {"to": TP.BFLOAT16}, opset=13)
    check_reference("Cast", {"x": x.astype(ml_dtypes.bfloat16)}, {"to": TP.FLOAT}, opset=13)
    check_reference("Cast", {"x": rand(4, dtype=np.int32)}, {"to": TP.BFLOAT16}, opset=13)


@pytest.mark.parametrize("to", [TP.STRING, TP.COMPLEX64, TP.FLOAT6E2M3, TP.FLOAT6E3M2])
def test_cast_to_types_braze_lacks(to):
    message = expect_error("Cast", {"x": rand(3)}, {"to": to}, opset=24)
    assert TP.DataType.Name(to) in message
    with pytest.raises(braze.errors.UnsupportedError):
        run_braze(make_model("Cast", {"x": rand(3)}, {"to": to}, opset=24), {"x": rand(3)})


def test_cast_to_an_unknown_type_is_an_error():
    model = make_model("Cast", {"x": rand(3)}, {"to": 99}, opset=19)
    model.graph.output[0].type.tensor_type.elem_type = TP.FLOAT
    model.graph.output[0].type.tensor_type.shape.SetInParent()
    with pytest.raises(braze.BrazeError, match="cast_node.*not an ONNX element type"):
        run_braze(model, {"x": rand(3)})


def test_cast_bad_round_mode_is_an_error():
    expect_error("Cast", {"x": rand(3)}, {"to": TP.FLOAT16, "round_mode": "sideways"}, opset=24, match="round_mode")


def test_cast_round_mode_is_accepted_from_opset_24():
    """round_mode only concerns FLOAT8E8M0; other casts ignore it (onnxruntime refuses it there)."""
    x = rand(3)
    model = make_model("Cast", {"x": x}, {"to": TP.FLOAT16, "round_mode": "nearest"}, opset=24)
    np.testing.assert_array_equal(run_braze(model, {"x": x})[0], x.astype(np.float16))


def test_cast_saturate_before_opset_19_is_an_error():
    model = make_model("Cast", {"x": rand(3)}, {"to": TP.FLOAT16, "saturate": 0}, opset=13)
    with pytest.raises(braze.BrazeError, match="saturate"):
        run_braze(model, {"x": rand(3)})


@pytest.mark.parametrize("like", [np.float16, np.float64, np.int32, np.int64, np.uint8, np.bool_])
@pytest.mark.parametrize("opset", [15, 19, 21])
def test_cast_like(like, opset):
    x = rand(3, 4, low=0, high=50)
    out = check_op("CastLike", {"x": x, "like": np.zeros(2, like)}, opset=opset)[0]
    assert out.dtype == like


@pytest.mark.parametrize("like", sorted(FLOAT8))
@pytest.mark.parametrize("saturate", [0, 1])
def test_cast_like_float8(like, saturate):
    check_reference("CastLike", {"x": SPECIAL, "like": np.zeros(1, FLOAT8[like])}, {"saturate": saturate}, opset=19)


def test_cast_like_bad_round_mode_is_an_error():
    expect_error("CastLike", {"x": rand(3), "like": np.zeros(1, np.float16)}, {"round_mode": "sideways"},
                 opset=24, match="round_mode")


def test_cast_inside_a_shape_computation():
    """Cast of a value known at build time (the pattern exporters emit around Shape) keeps its value flowing."""
    x = rand(2, 3)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Shape", ["x"], ["s"]),
         onnx.helper.make_node("Cast", ["s"], ["f"], to=TP.FLOAT),
         onnx.helper.make_node("Cast", ["f"], ["i"], to=TP.INT64),
         onnx.helper.make_node("Reshape", ["x", "i"], ["y"])],
        "g", [onnx.helper.make_tensor_value_info("x", TP.FLOAT, [2, 3])],
        [onnx.helper.make_tensor_value_info("y", TP.FLOAT, [2, 3])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 10
    engine = braze.Builder("cpu").build(braze.parse_onnx(model))
    out = engine.create_execution_context().infer({"x": x})["y"]
    np.testing.assert_array_equal(out, x)
