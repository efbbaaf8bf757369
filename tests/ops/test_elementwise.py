import ml_dtypes
import numpy as np
import onnx
import pytest

import braze
from braze.testing import assert_close

from .harness import check_op, make_model, rand, run_braze

FLOATS = [np.float32, np.float16, np.float64]
INTS = [np.int8, np.int32, np.int64, np.uint8, np.uint32, np.uint64]
BROADCAST = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((3, 1, 5), (1, 4, 1)), ((), (2, 3)), ((2, 1), ())]


def nonzero(x: np.ndarray) -> np.ndarray:
    return np.where(x == 0, np.ones_like(x), x)


def expect_error(op_type: str, inputs, attrs=None, *, opset: int = 17, match: str | None = None) -> str:
    """Build and run the single-node model in braze; it must fail with a BrazeError naming the node."""
    model = make_model(op_type, inputs, attrs, opset=opset)
    for out in model.graph.output:  # ONNX's own inference gave up on the bad node: declare a type
        if out.type.tensor_type.elem_type == onnx.TensorProto.UNDEFINED:
            out.type.tensor_type.elem_type = model.graph.input[0].type.tensor_type.elem_type
            out.type.tensor_type.shape.SetInParent()
    with pytest.raises(braze.BrazeError, match=match) as info:
        run_braze(model, {k: v for k, v in dict(inputs).items() if v is not None})
    assert f"{op_type.lower()}_node" in str(info.value)
    return str(info.value)


def run_only_braze(op_type: str, inputs, attrs=None, *, opset: int = 17) -> np.ndarray:
    return run_braze(make_model(op_type, inputs, attrs, opset=opset), dict(inputs))[0]


# -- arithmetic ----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("dtype", FLOATS + INTS)
def test_arithmetic_dtypes(op, dtype):
    a, b = rand(2, 3, 4, dtype=dtype, seed=1), rand(3, 4, dtype=dtype, seed=2)
    check_op(op, {"a": a, "b": nonzero(b) if op == "Div" else b}, opset=14)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("shapes", BROADCAST)
@pytest.mark.parametrize("opset", [7, 13, 14])
def test_arithmetic_broadcast(op, shapes, opset):
    check_op(op, {"a": rand(*shapes[0]), "b": rand(*shapes[1], seed=3)}, opset=opset)


@pytest.mark.parametrize("op,fn,opset", [("Add", np.add, 14), ("Sub", np.subtract, 14), ("Mul", np.multiply, 14),
                                         ("Div", np.divide, 14), ("Max", np.maximum, 13), ("Min", np.minimum, 13),
                                         ("Sum", np.add, 13), ("Less", np.less, 13), ("Equal", np.equal, 13)])
def test_bfloat16(op, fn, opset):
    """onnxruntime's Python API takes no bfloat16: compare with float32 math rounded to bfloat16."""
    a = rand(3, 4).astype(ml_dtypes.bfloat16)
    b = rand(4, seed=2).astype(ml_dtypes.bfloat16)
    b[0] = a[0, 0]
    expected = fn(a.astype(np.float32), b.astype(np.float32))
    if expected.dtype != bool:
        expected = expected.astype(ml_dtypes.bfloat16)
    out = run_only_braze(op, {"a": a, "b": b}, opset=opset)
    assert out.dtype == expected.dtype
    assert_close(out, expected, name=op)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_integer_division_truncates(dtype):
    a = np.array([7, -7, 7, -7, 0, 9, -9, 1], dtype)
    b = np.array([2, 2, -2, -2, 3, 3, 3, -1], dtype)
    out = check_op("Div", {"a": a, "b": b}, opset=14)[0]
    np.testing.assert_array_equal(out, np.array([3, -3, -3, 3, 0, 3, -3, -1], dtype))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
def test_integer_division_of_the_minimum_by_minus_one_wraps(dtype):
    low = np.iinfo(dtype).min
    a, b = np.array([low, low, 5], dtype), np.array([-1, 1, -1], dtype)
    np.testing.assert_array_equal(run_only_braze("Div", {"a": a, "b": b}, opset=14), np.array([low, low, -5], dtype))
    np.testing.assert_array_equal(run_only_braze("Mod", {"a": a, "b": b}, opset=13), np.zeros(3, dtype))


def test_unsigned_64_bit_division_is_exact():
    a = np.array([2**64 - 1, 2**63 + 5, 2**63, 12345678901234567890, 7, 2**64 - 2], np.uint64)
    b = np.array([3, 2**63 + 1, 2**63 + 1, 10**10, 2**64 - 1, 2**64 - 1], np.uint64)
    out = check_op("Div", {"a": a, "b": b}, opset=14)[0]
    np.testing.assert_array_equal(out, a // b)
    out = check_op("Mod", {"a": a, "b": b}, opset=13)[0]
    np.testing.assert_array_equal(out, a % b)


def test_integer_division_by_zero_is_an_error():
    expect_error("Div", {"a": np.array([1, 2], np.int32), "b": np.array([1, 0], np.int32)}, opset=14)


@pytest.mark.parametrize("shapes", [((2, 3), (4,)), ((3, 2), (2, 3))])
def test_arithmetic_shapes_that_do_not_broadcast(shapes):
    expect_error("Add", {"a": rand(*shapes[0]), "b": rand(*shapes[1])}, opset=14, match="cannot broadcast")


def test_arithmetic_mixed_dtypes_is_an_error():
    expect_error("Mul", {"a": rand(3), "b": rand(3, dtype=np.int64)}, opset=14, match="one element type")


def test_arithmetic_on_bool_is_an_error():
    expect_error("Add", {"a": rand(3, dtype=bool), "b": rand(3, dtype=bool)}, opset=14, match="bool")


# -- Pow -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("exp_dtype", [np.float32, np.float64, np.int32, np.int64])
def test_pow_float_base(dtype, exp_dtype):
    x = rand(2, 3, 4, dtype=dtype, low=0.1, high=3.0)
    y = rand(3, 4, dtype=exp_dtype, low=-3, high=3)
    check_op("Pow", {"x": x, "y": y}, opset=15)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("exp_dtype", [np.int32, np.int64, np.float32])
def test_pow_integer_base(dtype, exp_dtype):
    x = np.array([[2, -2, 1, -1, 3, 0], [5, -3, 7, 1, -1, 2]], dtype)
    y = np.array([[-1, 3, -2, -3, 2, 2], [0, 3, 2, 5, 4, 10]], exp_dtype)
    if exp_dtype == np.float32:
        y = np.abs(y) + np.float32(0.5)
    out = check_op("Pow", {"x": x, "y": y}, opset=15)[0]
    assert out.dtype == dtype


@pytest.mark.parametrize("opset", [7, 12, 13, 15])
def test_pow_opsets(opset):
    check_op("Pow", {"x": rand(3, 4, low=0.5, high=2), "y": rand(4, seed=5)}, opset=opset)


# -- Mod -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64])
@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_integers(dtype, fmod):
    a = rand(4, 5, dtype=dtype, seed=7, low=-50, high=50)
    b = nonzero(rand(5, dtype=dtype, seed=8, low=-9, high=9))
    check_op("Mod", {"a": a, "b": b}, {"fmod": fmod}, opset=13)


@pytest.mark.parametrize("dtype", FLOATS)
def test_mod_floats_fmod(dtype):
    a, b = rand(4, 5, dtype=dtype, low=-10, high=10), rand(4, 5, dtype=dtype, seed=9, low=0.5, high=3)
    b = np.where(rand(4, 5, dtype=bool), b, -b)
    check_op("Mod", {"a": a, "b": b}, {"fmod": 1}, opset=13)


@pytest.mark.parametrize("dtype", FLOATS)
def test_mod_floats_floor_from_opset_28(dtype):
    a = np.array([5, -5, 0, -0.0, 7.5, -7.5, 4, 3], dtype)
    b = np.array([3, 3, -2, 2, -2, 2, 2, -1.5], dtype)
    out = check_op("Mod", {"a": a, "b": b}, opset=28)[0]
    np.testing.assert_array_equal(np.signbit(out), np.signbit(b))


def test_mod_float_special_values_opset_28():
    a = np.array([np.inf, 5, 5, -5, 5, np.nan], np.float32)
    b = np.array([2, 0, np.inf, np.inf, -np.inf, 2], np.float32)
    out = check_op("Mod", {"a": a, "b": b}, opset=28)[0]
    np.testing.assert_array_equal(out, np.array([np.nan, np.nan, 5, np.inf, -np.inf, np.nan], np.float32))


def test_mod_float_floor_before_opset_28_is_an_error():
    expect_error("Mod", {"a": rand(3), "b": rand(3)}, opset=13, match="fmod=1")


def test_mod_bad_fmod_is_an_error():
    expect_error("Mod", {"a": rand(3, dtype=np.int32), "b": nonzero(rand(3, dtype=np.int32))}, {"fmod": 2},
                 opset=13, match="fmod")


# -- Min, Max, Sum, Mean -------------------------------------------------------------------------


VARIADIC_SHAPES = [[(2, 3)], [(2, 3), (2, 3)], [(2, 1, 4), (3, 1), (4,)], [(), (2, 2), (1, 2)]]


@pytest.mark.parametrize("op", ["Min", "Max", "Sum", "Mean"])
@pytest.mark.parametrize("shapes", VARIADIC_SHAPES)
@pytest.mark.parametrize("opset", [8, 13])
def test_variadic_broadcast(op, shapes, opset):
    check_op(op, [(f"x{i}", rand(*s, seed=i)) for i, s in enumerate(shapes)], opset=opset)


@pytest.mark.parametrize("op,dtype", [(op, dtype) for op in ("Min", "Max") for dtype in (
    np.float16, np.float64, np.int32, np.int64, np.uint8, np.uint32, np.uint64)] + [("Sum", np.float16), ("Sum", np.float64)])
def test_variadic_dtypes(op, dtype):
    inputs = [(f"x{i}", rand(3, 4, dtype=dtype, seed=10 + i)) for i in range(3)]
    check_op(op, inputs, opset=13)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint64, np.int8])
def test_unsigned_min_max_order(dtype):
    a = np.array([0, 1, np.iinfo(dtype).max, 5], dtype)
    b = np.array([np.iinfo(dtype).max, 0, 3, 5], dtype)
    np.testing.assert_array_equal(run_only_braze("Max", {"a": a, "b": b}, opset=13), np.maximum(a, b))
    np.testing.assert_array_equal(run_only_braze("Min", {"a": a, "b": b}, opset=13), np.minimum(a, b))


def test_mean_dtypes():
    check_op("Mean", [(f"x{i}", rand(2, 5, dtype=np.float16, seed=i)) for i in range(3)], opset=13)
    xs = [rand(2, 5, dtype=np.float64, seed=i) for i in range(3)]  # onnxruntime has no float64 Mean
    out = run_only_braze("Mean", [(f"x{i}", x) for i, x in enumerate(xs)], opset=13)
    np.testing.assert_allclose(out, (xs[0] + xs[1] + xs[2]) / 3, rtol=1e-12)


def test_min_max_propagate_nan():
    a, b = np.array([np.nan, 1, 2], np.float32), np.array([1, np.nan, 3], np.float32)
    check_op("Max", {"a": a, "b": b}, opset=13)
    check_op("Min", {"a": a, "b": b}, opset=13)


@pytest.mark.parametrize("op", ["Sum", "Mean"])
def test_sum_and_mean_of_integers_is_an_error(op):
    expect_error(op, {"a": rand(3, dtype=np.int32), "b": rand(3, dtype=np.int32)}, opset=13, match="int32")


# -- comparison and logic ------------------------------------------------------------------------


COMPARISONS = [("Equal", 13), ("Less", 13), ("LessOrEqual", 16), ("Greater", 13), ("GreaterOrEqual", 16)]


@pytest.mark.parametrize("op,opset", COMPARISONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint64])
def test_comparisons(op, opset, dtype):
    a = rand(3, 4, dtype=dtype, low=-3, high=3, seed=11)
    b = rand(4, dtype=dtype, low=-3, high=3, seed=12)
    if dtype in (np.float32, np.float64):
        a, b = np.round(a), np.round(b)  # ties, so the "or equal" half matters
    check_op(op, {"a": a, "b": b}, opset=opset)


@pytest.mark.parametrize("op,opset,dtype", [("Equal", 7, np.int32), ("Less", 7, np.float32),
                                            ("Greater", 9, np.int64), ("LessOrEqual", 12, np.float32)])
def test_comparisons_old_opsets(op, opset, dtype):
    check_op(op, {"a": rand(2, 3, dtype=dtype).round(), "b": rand(2, 1, dtype=dtype, seed=4).round()}, opset=opset)


def test_equal_bool():
    check_op("Equal", {"a": rand(5, 2, dtype=bool), "b": rand(2, dtype=bool, seed=1)}, opset=13)


def test_unsigned_64_bit_comparison_order():
    a = np.array([2**64 - 1, 0, 2**63, 5], np.uint64)
    b = np.array([1, 2**63, 2**63 - 1, 5], np.uint64)
    check_op("Less", {"a": a, "b": b}, opset=13)
    check_op("GreaterOrEqual", {"a": a, "b": b}, opset=16)


def test_comparison_of_mixed_dtypes_is_an_error():
    expect_error("Less", {"a": rand(3), "b": rand(3, dtype=np.float64)}, opset=13, match="one element type")


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5))])
def test_logic(op, shapes):
    check_op(op, {"a": rand(*shapes[0], dtype=bool), "b": rand(*shapes[1], dtype=bool, seed=6)}, opset=7)


def test_not():
    check_op("Not", {"x": rand(3, 4, dtype=bool)}, opset=1)


def test_logic_on_numbers_is_an_error():
    expect_error("And", {"a": rand(3, dtype=np.int32), "b": rand(3, dtype=np.int32)}, opset=7, match="bool")


# -- Where ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int32, np.int64, np.uint8, np.uint32])
def test_where_dtypes(dtype):
    check_op("Where", {"c": rand(3, 4, dtype=bool), "x": rand(3, 4, dtype=dtype, seed=1),
                       "y": rand(3, 4, dtype=dtype, seed=2)}, opset=16)


@pytest.mark.parametrize("dtype", [bool, np.uint16, np.uint64])
def test_where_dtypes_onnxruntime_lacks(dtype):
    c, x, y = rand(3, 4, dtype=bool), rand(3, 4, dtype=dtype, seed=1), rand(4, dtype=dtype, seed=2)
    np.testing.assert_array_equal(run_only_braze("Where", {"c": c, "x": x, "y": y}, opset=16), np.where(c, x, y))


@pytest.mark.parametrize("shapes", [((2, 3, 4), (4,), (3, 1)), ((1, 4), (3, 1), ()), ((), (2, 2), (2, 2))])
@pytest.mark.parametrize("opset", [9, 16])
def test_where_broadcast(shapes, opset):
    check_op("Where", {"c": rand(*shapes[0], dtype=bool), "x": rand(*shapes[1], seed=1),
                       "y": rand(*shapes[2], seed=2)}, opset=opset)


def test_where_condition_must_be_bool():
    expect_error("Where", {"c": rand(3, dtype=np.int32), "x": rand(3), "y": rand(3)}, opset=16, match="bool")


# -- bits ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
@pytest.mark.parametrize("opset", [11, 18])
def test_bit_shift_unsigned(direction, dtype, opset):
    bits = np.dtype(dtype).itemsize * 8
    x = rand(3, 4, dtype=dtype, low=0, high=200)
    y = rand(4, dtype=dtype, low=0, high=bits, seed=1)
    check_op("BitShift", {"x": x, "y": y}, {"direction": direction}, opset=opset)


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64])
def test_bit_shift_opset_28(direction, dtype):
    """Opset 28: signed types (arithmetic right shift), and shifts out of range leave only the sign fill."""
    bits = np.dtype(dtype).itemsize * 8
    x = rand(4, 6, dtype=dtype, low=-100, high=100)
    x[0, 0] = np.iinfo(dtype).max
    x[0, 1] = np.iinfo(dtype).min if np.iinfo(dtype).min else 1
    y = rand(4, 6, dtype=dtype, low=-2 if np.iinfo(dtype).min else 0, high=bits + 3, seed=2)
    check_op("BitShift", {"x": x, "y": y}, {"direction": direction}, opset=28)


def test_bit_shift_bad_direction_is_an_error():
    x = rand(3, dtype=np.uint8, low=0, high=5)
    expect_error("BitShift", {"x": x, "y": x}, {"direction": "UP"}, opset=18, match="direction")


@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64])
def test_bitwise_binary(op, dtype):
    check_op(op, {"a": rand(2, 3, 4, dtype=dtype, low=-100, high=100),
                  "b": rand(3, 1, dtype=dtype, low=-100, high=100, seed=3)}, opset=18)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint16, np.uint64])
def test_bitwise_not(dtype):
    check_op("BitwiseNot", {"x": rand(3, 5, dtype=dtype, low=-100, high=100)}, opset=18)


def test_bitwise_on_floats_is_an_error():
    expect_error("BitwiseAnd", {"a": rand(3), "b": rand(3)}, opset=18, match="float32")


# -- outputs whose shape is known only at run time -----------------------------------------------


def test_dtypes_of_outputs_with_data_dependent_shapes():
    """After NonZero the shapes are unknown at build time, but the bindings still have the right dtypes."""
    h = onnx.helper
    nodes = [h.make_node("NonZero", ["x"], ["nz"]),
             h.make_node("Equal", ["nz", "nz"], ["eq"]),
             h.make_node("Where", ["c", "nz", "nz"], ["where"]),
             h.make_node("CastLike", ["nz", "x"], ["like"]),
             h.make_node("Cast", ["nz"], ["f"], to=onnx.TensorProto.FLOAT),
             h.make_node("IsNaN", ["f"], ["nan"]),
             h.make_node("IsInf", ["f"], ["inf"])]
    outputs = {"eq": onnx.TensorProto.BOOL, "where": onnx.TensorProto.INT64, "like": onnx.TensorProto.FLOAT,
               "nan": onnx.TensorProto.BOOL, "inf": onnx.TensorProto.BOOL}
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3, 4]),
                                      h.make_tensor_value_info("c", onnx.TensorProto.BOOL, [1])],
                         [h.make_tensor_value_info(name, t, None) for name, t in outputs.items()])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 10
    engine = braze.Builder("cpu").build(braze.parse_onnx(onnx.shape_inference.infer_shapes(model)))
    declared = {b.name: b.dtype for b in engine.outputs}
    x = np.array([[1, 0, 2, 0], [0, 0, 3, 1], [1, 1, 0, 0]], np.float32)
    got = engine.create_execution_context().infer({"x": x, "c": np.array([True])})
    for name in outputs:
        assert str(declared[name]) == str(got[name].dtype), name
    assert got["eq"].shape == (2, 6) and got["eq"].all()
