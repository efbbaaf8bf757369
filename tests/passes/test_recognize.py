"""Recognition (braze/passes/recognize.py) of the decomposed forms exporters write, written out by
hand and exported from tiny torch modules: LayerNormalization, GELU (erf and tanh), SiLU, HardSwish
and Softmax; and the near-misses that must stay as they are."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from .helpers import Net, check, export, layer_ops, torch_feeds

SQRT2 = math.sqrt(2.0)


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def exported(module: nn.Module, opset: int = 17, shape=(2, 5, 8)):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    return export(module, x, opset=opset), torch_feeds(x)


# -- LayerNormalization ------------------------------------------------------------------------------

def layer_norm(net: Net, x: str, axes=(-1,), square: str = "Pow", opset_axes_input: bool = False,
               eps: float = 1e-5) -> tuple[str, str]:
    """(x - mean) / sqrt(var + eps) written out; returns (the result, the centered x)."""

    def reduce_mean(t: str) -> str:
        if opset_axes_input:
            return net.op("ReduceMean", t, net.const(list(axes), np.int64))
        return net.op("ReduceMean", t, axes=list(axes))

    d = net.op("Sub", x, reduce_mean(x))
    sq = net.op("Pow", d, net.const(2.0)) if square == "Pow" else net.op("Mul", d, d)
    std = net.op("Sqrt", net.op("Add", reduce_mean(sq), net.const(eps)))
    return net.op("Div", d, std), d


@pytest.mark.parametrize("square, opset", [("Pow", 17), ("Mul", 17), ("Pow", 18)])
def test_layer_norm_written_out_becomes_one_layer(square, opset):
    net = Net(opset=opset)
    normed, _ = layer_norm(net, net.input("x", [2, 5, 8]), square=square, opset_axes_input=opset >= 18)
    y = net.op("Add", net.op("Mul", normed, net.weight(8)), net.weight(8))
    engine = check(net.model(y), fired={"layer_norm": 1, "layer_norm_scale": 1, "layer_norm_bias": 1},
                   ops=["LayerNormalization"])
    ln = engine.graph.nodes[0]
    assert ln.attrs["axis"] == 2 and ln.attrs["epsilon"] == pytest.approx(1e-5) and len(ln.inputs) == 3


def test_layer_norm_over_the_last_two_axes_with_scale_and_bias_in_either_order():
    net = Net()
    normed, _ = layer_norm(net, net.input("x", [2, 5, 8]), axes=(1, 2))
    y = net.op("Mul", net.weight(1, 8), net.op("Add", net.weight(5, 8), normed))
    check(net.model(y), fired={"layer_norm": 1, "layer_norm_scale": 1, "layer_norm_bias": 1},
          ops=["LayerNormalization"])


@pytest.mark.parametrize("opset", [13, 17])
def test_exported_torch_layer_norm(opset):
    module = nn.LayerNorm(8)
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-1, 1)
    model, feeds = exported(module, opset)
    assert (opset < 17) == ("ReduceMean" in {n.op_type for n in model.graph.node})
    check(model, feeds, ops=["LayerNormalization"])


def test_layer_norm_without_affine_parameters():
    model, feeds = exported(nn.LayerNorm(8, elementwise_affine=False), opset=13)
    check(model, feeds, fired={"layer_norm": 1}, ops=["LayerNormalization"])


def test_scale_and_bias_after_a_layer_normalization_node_are_absorbed():
    net = Net()
    ln = net.op("LayerNormalization", net.input("x", [2, 5, 8]), net.weight(8), net.weight(8), axis=-2)
    y = net.op("Add", net.op("Mul", ln, net.weight(5, 8)), net.weight(1, 8))
    engine = check(net.model(y), fired={"layer_norm_scale": 1, "layer_norm_bias": 1}, ops=["LayerNormalization"])
    assert [t.shape for t in engine.graph.nodes[0].inputs[1:]] == [(5, 8), (5, 8)]


def test_layer_norm_over_a_non_trailing_axis_is_not_recognized():
    net = Net()
    normed, _ = layer_norm(net, net.input("x", [2, 5, 8]), axes=(1,))
    engine = check(net.model(net.op("Mul", normed, net.weight(1, 8))), fired={"layer_norm": 0})
    assert "LayerNormalization" not in layer_ops(engine)


def test_layer_norm_whose_centered_x_is_read_elsewhere_is_not_recognized():
    net = Net()
    normed, d = layer_norm(net, net.input("x", [2, 5, 8]))
    engine = check(net.model(normed, net.op("Softmax", d)), fired={"layer_norm": 0})
    assert "LayerNormalization" not in layer_ops(engine)


@pytest.mark.parametrize("case", ["cube", "mean and var over other axes"])
def test_layer_norm_lookalikes_are_not_recognized(case):
    net = Net()
    x = net.input("x", [2, 5, 8])
    d = net.op("Sub", x, net.op("ReduceMean", x, axes=[-1]))
    if case == "cube":
        var = net.op("ReduceMean", net.op("Pow", d, net.const(3.0)), axes=[-1])
    else:
        var = net.op("ReduceMean", net.op("Pow", d, net.const(2.0)), axes=[1, 2])
    y = net.op("Div", d, net.op("Sqrt", net.op("Add", var, net.const(1e-5))))
    engine = check(net.model(y), fired={"layer_norm": 0})
    assert "LayerNormalization" not in layer_ops(engine)


def test_scale_or_bias_that_varies_along_a_non_normalized_axis_is_not_absorbed():
    net = Net()
    normed, _ = layer_norm(net, net.input("x", [2, 5, 8]))
    y = net.op("Add", net.op("Mul", normed, net.weight(5, 8)), net.weight(5, 1))
    check(net.model(y), fired={"layer_norm": 1, "layer_norm_scale": 0, "layer_norm_bias": 0},
          ops=["LayerNormalization", "Pointwise"])


def test_scale_that_is_an_input_is_not_absorbed():
    net = Net()
    normed, _ = layer_norm(net, net.input("x", [2, 5, 8]))
    y = net.op("Softmax", net.op("Mul", normed, net.input("gamma", [8])))
    check(net.model(y), fired={"layer_norm": 1, "layer_norm_scale": 0}, ops=["LayerNormalization", "Mul", "Softmax"])


# -- GELU ----------------------------------------------------------------------------------------------

def gelu_erf(net: Net, x: str, order: str, arg: str | None = None) -> str:
    arg = arg or x
    scaled = net.op("Div", arg, net.const(SQRT2)) if order != "mul 1/sqrt2" else net.op("Mul", arg, net.const(1 / SQRT2))
    one_plus = net.op("Add", net.const(1.0), net.op("Erf", scaled))
    if order == "half last":
        return net.op("Mul", net.op("Mul", x, one_plus), net.const(0.5))
    return net.op("Mul", net.op("Mul", net.const(0.5), x), one_plus)


@pytest.mark.parametrize("order", ["half last", "half first", "mul 1/sqrt2"])
def test_gelu_erf_written_out(order):
    net = Net()
    y = gelu_erf(net, net.input("x", [2, 5, 8]), order)
    engine = check(net.model(y), fired={"gelu_erf": 1}, ops=["Gelu"])
    assert engine.graph.nodes[0].attrs["approximate"] == "none"


@pytest.mark.parametrize("module", [nn.GELU(), Lambda(lambda x: x * 0.5 * (1.0 + torch.erf(x / SQRT2)))],
                         ids=["nn.GELU", "hf"])
def test_exported_gelu_erf(module):
    model, feeds = exported(module)
    assert "Erf" in {n.op_type for n in model.graph.node}
    check(model, feeds, fired={"gelu_erf": 1}, ops=["Gelu"])


@pytest.mark.parametrize("module", [
    nn.GELU(approximate="tanh"),  # cube as x * (x * x)
    Lambda(lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))),
], ids=["nn.GELU-tanh", "hf-new-gelu"])
def test_exported_gelu_tanh(module):
    model, feeds = exported(module)
    assert "Tanh" in {n.op_type for n in model.graph.node}
    engine = check(model, feeds, fired={"gelu_tanh": 1}, ops=["Gelu"])
    assert engine.graph.nodes[0].attrs["approximate"] == "tanh"


@pytest.mark.parametrize("case", ["wrong half", "erf of another tensor", "half broadcasts x larger"])
def test_gelu_lookalikes_are_not_recognized(case):
    net = Net()
    x = net.input("x", [4, 1])
    if case == "wrong half":
        y = net.op("Mul", net.op("Mul", x, net.op("Add", net.op("Erf", net.op("Div", x, net.const(SQRT2))),
                                                    net.const(1.0))), net.const(0.6))
    elif case == "erf of another tensor":
        y = gelu_erf(net, x, "half last", arg=net.input("other", [4, 1]))
    else:
        one_plus = net.op("Add", net.op("Erf", net.op("Div", x, net.const(SQRT2))), net.const(1.0))
        y = net.op("Mul", net.op("Mul", x, one_plus), net.const(np.full([3], 0.5)))
    engine = check(net.model(y), fired={"gelu_erf": 0})
    assert "Gelu" not in layer_ops(engine)


@pytest.mark.parametrize("kappa, cube_of", [(0.05, "x"), (0.044715, "other")])
def test_gelu_tanh_lookalikes_are_not_recognized(kappa, cube_of):
    net = Net()
    x, other = net.input("x", [2, 8]), net.input("other", [2, 8])
    cube = net.op("Pow", x if cube_of == "x" else other, net.const(3.0))
    arg = net.op("Mul", net.op("Add", x, net.op("Mul", cube, net.const(kappa))), net.const(math.sqrt(2 / math.pi)))
    y = net.op("Mul", net.op("Mul", x, net.op("Add", net.op("Tanh", arg), net.const(1.0))), net.const(0.5))
    engine = check(net.model(y), fired={"gelu_tanh": 0})
    assert "Gelu" not in layer_ops(engine)


# -- SiLU, HardSwish -------------------------------------------------------------------------------------

def test_exported_silu():
    model, feeds = exported(nn.SiLU())
    check(model, feeds, fired={"silu": 1}, ops=["SiLU"])


def test_silu_of_two_tensors_is_not_recognized():
    net = Net()
    y = net.op("Mul", net.input("x", [2, 3]), net.op("Sigmoid", net.input("z", [2, 3])))
    check(net.model(y), fired={"silu": 0}, ops=["Pointwise"])


@pytest.mark.parametrize("module, opset, form", [
    (nn.Hardswish(), 13, "HardSigmoid"),
    (Lambda(lambda x: x * F.relu6(x + 3) / 6), 17, "Clip"),
], ids=["hardsigmoid", "clip"])
def test_exported_hardswish(module, opset, form):
    model, feeds = exported(module, opset)
    assert form in {n.op_type for n in model.graph.node}
    check(model, feeds, fired={"hardswish": 1}, ops=["HardSwish"])


@pytest.mark.parametrize("case", ["hardsigmoid defaults", "clip to 5"])
def test_hardswish_lookalikes_are_not_recognized(case):
    net = Net()
    x = net.input("x", [2, 3])
    if case == "hardsigmoid defaults":
        y = net.op("Mul", x, net.op("HardSigmoid", x))
    else:
        clipped = net.op("Clip", net.op("Add", x, net.const(3.0)), net.const(0.0), net.const(5.0))
        y = net.op("Div", net.op("Mul", x, clipped), net.const(6.0))
    engine = check(net.model(y), fired={"hardswish": 0})
    assert "HardSwish" not in layer_ops(engine)


# -- Softmax ---------------------------------------------------------------------------------------------

def _stable_softmax(x):
    e = torch.exp(x - x.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


@pytest.mark.parametrize("fn", [_stable_softmax, lambda x: torch.exp(x) / torch.exp(x).sum(1, keepdim=True)],
                         ids=["stable", "plain"])
def test_exported_softmax(fn):
    model, feeds = exported(Lambda(fn))
    engine = check(model, feeds, fired={"softmax": 1}, ops=["Softmax"])
    assert engine.graph.nodes[0].attrs["axis"] == (2 if fn is _stable_softmax else 1)


@pytest.mark.parametrize("case", ["exp read elsewhere", "sum over two axes", "sum without keepdims"])
def test_softmax_lookalikes_are_not_recognized(case):
    net = Net()
    e = net.op("Exp", net.input("x", [2, 3, 4]))
    if case == "sum over two axes":
        total = net.op("ReduceSum", e, net.const([1, 2], np.int64))
    elif case == "sum without keepdims":
        total = net.op("ReduceSum", e, net.const([0], np.int64), keepdims=0)
    else:
        total = net.op("ReduceSum", e, net.const([2], np.int64))
    outputs = [net.op("Div", e, total)] + ([net.op("Softmax", e)] if case == "exp read elsewhere" else [])
    engine = check(net.model(*outputs), fired={"softmax": 0})
    assert layer_ops(engine).count("Softmax") == len(outputs) - 1
