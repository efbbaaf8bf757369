"""Matrix-product fusions (braze/passes/fuse_gemm.py): Gemm and MatMul with a constant weight, plus
bias, activation and residual, become one FusedGemm: act(x @ w + b) + residual."""

from __future__ import annotations

import math

import numpy as np
import pytest

from .helpers import Net, check


@pytest.mark.parametrize("attrs, bias_shape", [
    ({"transB": 1, "alpha": 0.5, "beta": 2.0}, [4]),
    ({}, [1, 4]),
    ({"transB": 1}, None),
])
def test_gemm_with_constant_weights_becomes_fused_gemm(attrs, bias_shape):
    net = Net()
    w = net.weight(4, 8) if attrs.get("transB") else net.weight(8, 4)
    y = net.op("Gemm", net.input("x", [3, 8]), w, *([net.weight(*bias_shape)] if bias_shape else []), **attrs)
    engine = check(net.model(y), fired={"gemm_as_fused_gemm": 1}, ops=["FusedGemm"])
    assert engine.graph.nodes[0].inputs[1].shape == (8, 4)


@pytest.mark.parametrize("case", ["transA", "full-size C", "C computed at run time", "B computed at run time"])
def test_gemm_that_does_not_fit_stays(case):
    net = Net()
    x = net.input("x", [8, 3] if case == "transA" else [3, 8])
    b = net.input("b", [8, 4]) if case == "B computed at run time" else net.weight(8, 4)
    c = {"full-size C": lambda: net.weight(3, 4), "C computed at run time": lambda: net.input("c", [4])}.get(
        case, lambda: net.weight(4))()
    y = net.op("Gemm", x, b, c, transA=int(case == "transA"))
    check(net.model(y), fired={"gemm_as_fused_gemm": 0}, ops=["Gemm"])


@pytest.mark.parametrize("bias_shape, constant_first", [([4], False), ([4], True), ([1, 1, 4], False)])
def test_bias_add_after_matmul(bias_shape, constant_first):
    net = Net()
    mm, b = net.op("MatMul", net.input("x", [2, 3, 8]), net.weight(8, 4)), net.weight(*bias_shape)
    y = net.op("Add", *((b, mm) if constant_first else (mm, b)))
    check(net.model(y), fired={"matmul_bias": 1}, ops=["FusedGemm"])


def test_an_add_along_another_axis_is_not_a_bias():
    """[4, 1] has as many elements as the 4 output features, but adds along the rows."""
    net = Net()
    y = net.op("Add", net.op("MatMul", net.input("x", [4, 3]), net.weight(3, 4)), net.weight(4, 1))
    check(net.model(y), fired={"matmul_bias": 0, "matmul_residual": 0}, ops=["MatMul", "Add"])


@pytest.mark.parametrize("case", ["weight computed at run time", "3-D weight"])
def test_matmul_whose_weight_does_not_fit_is_not_fused(case):
    net = Net()
    if case == "3-D weight":
        mm = net.op("MatMul", net.input("x", [2, 3, 8]), net.weight(2, 8, 4))
    else:
        mm = net.op("MatMul", net.input("x", [2, 3, 8]), net.input("w", [8, 4]))
    y = net.op("Relu", net.op("Add", mm, net.weight(4)))
    check(net.model(y), fired={"matmul_bias": 0, "matmul_activation": 0}, ops=["MatMul", "Pointwise"])


ACTIVATIONS = [("Relu", {}, "relu"), ("Sigmoid", {}, "sigmoid"), ("LeakyRelu", {"alpha": 0.1}, "leaky_relu"),
               ("Tanh", {}, "tanh"), ("HardSwish", {}, "hardswish")]


@pytest.mark.parametrize("op, attrs, activation", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_after_bias(op, attrs, activation):
    net = Net()
    mm = net.op("MatMul", net.input("x", [3, 8]), net.weight(8, 4))
    y = net.op(op, net.op("Add", mm, net.weight(4)), **attrs)
    engine = check(net.model(y), fired={"matmul_bias": 1, "matmul_activation": 1}, ops=["FusedGemm"])
    assert engine.graph.nodes[0].attrs["activation"] == activation


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_recognized_gelu_is_absorbed(approximate):
    net = Net()
    h = net.op("Add", net.op("MatMul", net.input("x", [2, 3, 8]), net.weight(8, 16)), net.weight(16))
    if approximate == "none":
        inner = net.op("Add", net.op("Erf", net.op("Div", h, net.const(math.sqrt(2.0)))), net.const(1.0))
    else:
        cube = net.op("Mul", net.const(0.044715), net.op("Pow", h, net.const(3.0)))
        arg = net.op("Mul", net.op("Add", h, cube), net.const(math.sqrt(2 / math.pi)))
        inner = net.op("Add", net.op("Tanh", arg), net.const(1.0))
    y = net.op("Mul", net.op("Mul", h, net.const(0.5)), inner)
    engine = check(net.model(y), fired={"matmul_activation": 1}, ops=["FusedGemm"])
    assert engine.graph.nodes[0].attrs["activation"] == ("gelu" if approximate == "none" else "gelu_tanh")


def test_residual_after_activation_makes_one_layer():
    net = Net()
    x = net.input("x", [2, 3, 8])
    h = net.op("Relu", net.op("Add", net.op("MatMul", x, net.weight(8, 8)), net.weight(8)))
    y = net.op("Add", x, h)
    engine = check(net.model(y), fired={"matmul_bias": 1, "matmul_activation": 1, "matmul_residual": 1},
                   ops=["FusedGemm"])
    assert engine.graph.nodes[0].inputs[3].name == "x"


def test_two_products_added_make_one_the_residual_of_the_other():
    net = Net()
    x = net.input("x", [3, 8])
    y = net.op("Add", net.op("MatMul", x, net.weight(8, 4)), net.op("MatMul", net.input("z", [3, 6]), net.weight(6, 4)))
    check(net.model(y), fired={"matmul_residual": 1}, ops=["MatMul", "FusedGemm"])


def test_a_residual_of_another_shape_is_not_fused():
    net = Net()
    y = net.op("Add", net.op("MatMul", net.input("x", [3, 8]), net.weight(8, 4)), net.input("r", [1, 4]))
    check(net.model(y), fired={"matmul_residual": 0}, ops=["MatMul", "Add"])


def test_activation_after_the_residual_is_not_absorbed():
    net = Net()
    mm = net.op("MatMul", net.input("x", [3, 8]), net.weight(8, 4))
    y = net.op("Relu", net.op("Add", mm, net.input("r", [3, 4])))
    engine = check(net.model(y), fired={"matmul_residual": 1, "matmul_activation": 0}, ops=["FusedGemm", "Relu"])
    assert engine.graph.nodes[0].attrs["activation"] == "none"


def test_a_product_read_twice_or_returned_is_not_fused():
    net = Net()
    mm = net.op("MatMul", net.input("x", [3, 8]), net.weight(8, 4))
    check(net.model(net.op("Add", mm, net.weight(4)), mm), fired={"matmul_bias": 0}, ops=["MatMul", "Add"])


def test_bias_of_a_gemm_and_a_later_add_combine_only_once():
    """Gemm already has its bias: a second constant Add is left (FusedGemm takes one bias)."""
    net = Net()
    g = net.op("Gemm", net.input("x", [3, 8]), net.weight(8, 4), net.weight(4))
    y = net.op("Add", g, net.const(np.full([4], 0.25)))
    check(net.model(y), fired={"gemm_as_fused_gemm": 1, "matmul_bias": 0}, ops=["FusedGemm", "Add"])


def test_a_constant_residual_reaches_the_kernel():
    """A residual that constant folding made a constant is still added (kernels own only weight and bias)."""
    net = Net()
    h = net.op("Add", net.op("MatMul", net.input("x", [3, 8]), net.weight(8, 5)), net.weight(5))
    engine = check(net.model(net.op("Add", h, net.weight(3, 5))), fired={"matmul_residual": 1}, ops=["FusedGemm"])
    assert engine.graph.nodes[0].inputs[3].is_constant


def test_a_constant_conv_residual_reaches_the_kernel():
    net = Net()
    c = net.op("Conv", net.input("x", [1, 3, 6, 6]), net.weight(4, 3, 3, 3), pads=[1, 1, 1, 1])
    engine = check(net.model(net.op("Relu", net.op("Add", c, net.weight(1, 4, 6, 6)))),
                   fired={"conv_residual": 1, "conv_activation": 1}, ops=["FusedConv"])
    assert engine.graph.nodes[0].inputs[3].is_constant
