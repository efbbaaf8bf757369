import numpy as np
import onnx.helper as oh
import pytest
from onnx import TensorProto

import braze
from braze.testing import assert_close

from .harness import check_bfloat16, check_op, feeds_of, make_model, rand, run_braze

F16, F64 = np.float16, np.float64




def expect_error(op_type, inputs, attrs, match, **kw):
    model = make_model(op_type, inputs, attrs, **kw)
    for out in model.graph.output:  # ONNX's inference gives up on bad nodes; the checker needs a type
        out.CopyFrom(oh.make_tensor_value_info(out.name, TensorProto.FLOAT, ["d0", "d1"]))
    with pytest.raises(braze.BrazeError, match=match) as info:
        run_braze(model, feeds_of(inputs))
    assert f"{op_type.lower()}_node" in str(info.value)


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 6)),
    ((4,), (2, 3, 4, 5)),
    ((2, 3, 4, 5), (5,)),
    ((1, 7, 64), (64, 32)),
]


@pytest.mark.parametrize("a,b", MATMUL_SHAPES)
def test_matmul(a, b):
    check_op("MatMul", {"a": rand(*a), "b": rand(*b)})


@pytest.mark.parametrize("dtype", [F16, F64, np.int32, np.int64])
@pytest.mark.parametrize("a,b", MATMUL_SHAPES[4:7])
def test_matmul_dtypes(a, b, dtype):
    check_op("MatMul", {"a": rand(*a, dtype=dtype), "b": rand(*b, dtype=dtype)})


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_matmul_unsigned(dtype):  # onnxruntime has no kernel for these; numpy wraps around the same way
    a, b = rand(2, 3, 4, dtype=dtype, low=0, high=1 << 20), rand(4, 5, dtype=dtype, low=0, high=1 << 20)
    got = run_braze(make_model("MatMul", {"a": a, "b": b}), {"a": a, "b": b})[0]
    np.testing.assert_array_equal(got, np.matmul(a, b))


@pytest.mark.parametrize("opset", [1, 9, 13])
def test_matmul_opsets(opset):
    check_op("MatMul", {"a": rand(2, 3, 4), "b": rand(4, 5)}, opset=opset, constants=("b",))


def test_matmul_errors():
    expect_error("MatMul", {"a": rand(3, 4), "b": rand(5, 6)}, {}, "inner dimensions")
    expect_error("MatMul", {"a": rand(2, 3, 4), "b": rand(3, 4, 5)}, {}, "do not broadcast")
    expect_error("MatMul", {"a": rand(3, 4), "b": rand(4, 5).astype(F64)}, {}, "dtype")


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("c_shape", [None, (), (1,), (5,), (1, 5), (3, 1), (3, 5)])
def test_gemm(trans_a, trans_b, c_shape):
    a = rand(4, 3) if trans_a else rand(3, 4)
    b = rand(5, 4) if trans_b else rand(4, 5)
    c = None if c_shape is None else rand(*c_shape)
    check_op("Gemm", {"a": a, "b": b, "c": c}, {"transA": trans_a, "transB": trans_b, "alpha": 0.7, "beta": -1.3},
             constants=("b", "c"))


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (2.0, 0.0), (0.5, 2.5)])
def test_gemm_alpha_beta(alpha, beta):
    check_op("Gemm", {"a": rand(6, 8), "b": rand(8, 3), "c": rand(3)}, {"alpha": alpha, "beta": beta})


@pytest.mark.parametrize("opset", [7, 9, 11, 13])
def test_gemm_opsets(opset):
    check_op("Gemm", {"a": rand(3, 4), "b": rand(5, 4), "c": rand(5)}, {"transB": 1}, opset=opset)


def test_gemm_opset_6_broadcast():  # onnxruntime has no Gemm-6 kernel
    feeds = {"a": rand(3, 4), "b": rand(4, 5), "c": rand(5)}
    got = run_braze(make_model("Gemm", feeds, {"broadcast": 1, "beta": 0.5}, opset=6), feeds)[0]
    assert_close(got, feeds["a"] @ feeds["b"] + 0.5 * feeds["c"])


@pytest.mark.parametrize("dtype", [F16, F64])
def test_gemm_dtypes(dtype):
    check_op("Gemm", {"a": rand(3, 4, dtype=dtype), "b": rand(4, 5, dtype=dtype), "c": rand(3, 5, dtype=dtype)},
             {"alpha": 0.5, "transA": 0})


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32])
def test_gemm_integers(dtype):  # onnxruntime has no integer Gemm
    a, b, c = rand(3, 4, dtype=dtype, low=0), rand(5, 4, dtype=dtype, low=0), rand(5, dtype=dtype, low=0)
    feeds = {"a": a, "b": b, "c": c}
    got = run_braze(make_model("Gemm", feeds, {"transB": 1, "alpha": 2.0, "beta": 3.0}), feeds)[0]
    np.testing.assert_array_equal(got, (2 * a @ b.T + 3 * c).astype(dtype))


def test_gemm_errors():
    expect_error("Gemm", {"a": rand(3, 4), "b": rand(5, 4)}, {}, "inner dimensions")
    expect_error("Gemm", {"a": rand(3, 4), "b": rand(4, 5), "c": rand(4)}, {}, "does not broadcast")
    expect_error("Gemm", {"a": rand(2, 3, 4), "b": rand(4, 5)}, {}, "matrices")


EINSUM = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhid,bhjd->bhij", [(2, 3, 4, 8), (2, 3, 5, 8)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("i,i", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("ba,cb", [(3, 4), (5, 3)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,jk", [(2, 3, 4), (4, 5)]),
    (" ij , jk -> ik ", [(3, 4), (4, 5)]),
    ("Ab,bA->A", [(3, 4), (4, 3)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
]


@pytest.mark.parametrize("equation,shapes", EINSUM)
def test_einsum(equation, shapes):
    inputs = {f"x{i}": rand(*s, seed=i) for i, s in enumerate(shapes)}
    check_op("Einsum", inputs, {"equation": equation}, opset=12)


@pytest.mark.parametrize("dtype", [F16, F64, np.int32, np.int64])
@pytest.mark.parametrize("equation,shapes", [EINSUM[1], EINSUM[3], EINSUM[12]])
def test_einsum_dtypes(equation, shapes, dtype):
    inputs = {f"x{i}": rand(*s, dtype=dtype, seed=i) for i, s in enumerate(shapes)}
    check_op("Einsum", inputs, {"equation": equation}, opset=12)


def test_einsum_errors():
    expect_error("Einsum", {"x0": rand(3, 4)}, {"equation": "ij,jk->ik"}, "operand terms", opset=12)
    expect_error("Einsum", {"x0": rand(3, 4), "x1": rand(5, 6)}, {"equation": "ij,jk->ik"}, "einsum", opset=12)


@pytest.mark.parametrize("a_type,b_type", [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)])
@pytest.mark.parametrize("zero_points", ["none", "scalar", "per_column"])
def test_matmul_integer(a_type, b_type, zero_points):
    a = rand(3, 4, dtype=a_type, low=0 if a_type == np.uint8 else -100, high=100)
    b = rand(4, 5, dtype=b_type, low=0 if b_type == np.uint8 else -100, high=100)
    inputs = {"a": a, "b": b}
    if zero_points == "scalar":
        inputs.update(a_zp=np.array(3, a_type), b_zp=np.array(5, b_type))
    elif zero_points == "per_column":
        inputs.update(a_zp=np.array(3, a_type), b_zp=np.array([4, 0, 2, 1, 7], b_type))
    check_op("MatMulInteger", inputs, opset=10, constants=("a_zp", "b_zp"))


def test_matmul_integer_per_row():  # onnxruntime takes scalar A zero points only
    a, b = rand(3, 4, dtype=np.uint8, low=0, high=255), rand(4, 5, dtype=np.int8, low=-128, high=127)
    a_zp = np.array([1, 2, 3], np.uint8)
    inputs = {"a": a, "b": b, "a_zp": a_zp}
    got = run_braze(make_model("MatMulInteger", inputs, opset=10), inputs)[0]
    np.testing.assert_array_equal(got, (a.astype(np.int32) - a_zp[:, None]) @ b.astype(np.int32))


def test_matmul_integer_batched():
    a, b = rand(2, 3, 4, dtype=np.uint8, low=0, high=255), rand(4, 5, dtype=np.uint8, low=0, high=255)
    check_op("MatMulInteger", {"a": a, "b": b, "a_zp": np.array(128, np.uint8)}, opset=10, constants=("a_zp",))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("opset", [10, 21])
def test_qlinear_matmul(dtype, opset):
    low, high = (0, 255) if dtype == np.uint8 else (-128, 127)
    zp = np.array(7 if dtype == np.uint8 else -3, dtype)
    inputs = {"a": rand(2, 3, 8, dtype=dtype, low=low, high=high), "a_scale": np.array(0.02, np.float32), "a_zp": zp,
              "b": rand(8, 5, dtype=dtype, low=low, high=high), "b_scale": np.array(0.03, np.float32), "b_zp": zp,
              "y_scale": np.array(0.05, np.float32), "y_zp": zp}
    check_op("QLinearMatMul", inputs, opset=opset, constants=("a_scale", "a_zp", "b_scale", "b_zp", "y_scale", "y_zp"))


def test_quantized_matmul_errors():
    expect_error("MatMulInteger", {"a": rand(3, 4), "b": rand(4, 5)}, {}, "int8 or uint8", opset=10)


@pytest.mark.parametrize("op_type,inputs,attrs", [
    ("MatMul", {"a": rand(2, 3, 8), "b": rand(8, 4)}, {}),
    ("Gemm", {"a": rand(3, 8), "b": rand(8, 4), "c": rand(4)}, {"transA": 0}),
    ("Einsum", {"a": rand(2, 3, 8), "b": rand(2, 8, 4)}, {"equation": "bij,bjk->bik"}),
])
def test_bfloat16(op_type, inputs, attrs):
    check_bfloat16(op_type, inputs, attrs, opset=28)
