"""Horizontal fusion (braze/passes/horizontal.py): sibling FusedGemms (or bias-free MatMuls) or FusedConvs that
read the same input with constant weights and the same epilogue become one wider layer and a Split of views."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import Net, check


def projections(net: Net, x: str, widths, activation: str | None = "Relu", bias=lambda i: True) -> list[str]:
    outs = []
    for i, width in enumerate(widths):
        h = net.op("MatMul", x, net.weight(8, width))
        if bias(i):
            h = net.op("Add", h, net.weight(width))
        outs.append(net.op(activation, h) if activation else h)
    return outs


def consume(net: Net, outs: list[str], axis: int = -1) -> str:
    """Read each branch through a Softmax (not fusable with anything) and join them."""
    return net.op("Concat", *[net.op("Softmax", o) for o in outs], axis=axis)


def test_qkv_projections_become_one_gemm_and_a_split_of_views():
    net = Net()
    y = consume(net, projections(net, net.input("x", [2, 5, 8]), [4, 4, 6], activation=None))
    engine = check(net.model(y), fired={"horizontal_gemm": 1},
                   ops=["FusedGemm", "Split", "Softmax", "Softmax", "Softmax", "ConcatInPlace"])
    wide, split = engine.graph.nodes[:2]
    assert wide.inputs[1].shape == (8, 14) and wide.outputs[0].shape == (2, 5, 14)
    assert engine.plan.layers[split.name].tactic == "view"


def test_branches_with_and_without_bias_fuse_with_zeros_for_the_missing_bias():
    net = Net()
    y = consume(net, projections(net, net.input("x", [3, 8]), [4, 2, 5], bias=lambda i: i != 1))
    engine = check(net.model(y), fired={"horizontal_gemm": 1})
    np.testing.assert_array_equal(engine.graph.nodes[0].inputs[2].value[4:6].numpy(), [0, 0])


def test_projections_without_bias_fuse_as_well():
    net = Net()
    y = consume(net, projections(net, net.input("x", [2, 5, 8]), [4, 4, 6], activation=None, bias=lambda i: False))
    engine = check(net.model(y), fired={"horizontal_gemm": 1},
                   ops=["FusedGemm", "Split", "Softmax", "Softmax", "Softmax", "ConcatInPlace"])
    assert engine.graph.nodes[0].input(2) is None and engine.graph.nodes[0].inputs[1].shape == (8, 14)


def test_only_branches_with_the_same_activation_fuse():
    net = Net()
    x = net.input("x", [3, 8])
    outs = projections(net, x, [4, 4]) + projections(net, x, [4], activation="Sigmoid")
    check(net.model(consume(net, outs)), fired={"horizontal_gemm": 1},
          ops=["FusedGemm", "Split", "FusedGemm", "Softmax", "Softmax", "Softmax", "ConcatInPlace"])


@pytest.mark.parametrize("case", ["residual", "weight computed at run time", "different inputs"])
def test_siblings_that_do_not_fit_stay_apart(case):
    net = Net()
    x = net.input("x", [3, 8])
    first = net.op("Add", net.op("MatMul", x, net.weight(8, 4)), net.weight(4))
    if case == "residual":
        second = net.op("Add", net.op("MatMul", x, net.weight(8, 4)), net.input("r", [3, 4]))
    elif case == "weight computed at run time":
        second = net.op("MatMul", x, net.input("w", [8, 4]))
    else:
        second = net.op("MatMul", net.input("z", [3, 8]), net.weight(8, 4))
    engine = check(net.model(consume(net, [first, second])), fired={"horizontal_gemm": 0})
    assert "Split" not in [n.op for n in engine.graph.nodes]


def branch(net: Net, x: str, out_channels: int, activation: str = "Relu", **attrs) -> str:
    attrs.setdefault("pads", [1, 1, 1, 1])
    c = net.op("Conv", x, net.weight(out_channels, 3, 3, 3), net.weight(out_channels), **attrs)
    return net.op(activation, c)


def test_inception_style_conv_branches_become_one_conv():
    net = Net()
    x = net.input("x", [1, 3, 8, 8])
    y = consume(net, [branch(net, x, 4), branch(net, x, 2), branch(net, x, 6)], axis=1)
    engine = check(net.model(y), fired={"conv_activation": 3, "horizontal_conv": 1},
                   ops=["FusedConv", "Split", "Softmax", "Softmax", "Softmax", "ConcatInPlace"])
    assert engine.graph.nodes[0].inputs[1].shape == (12, 3, 3, 3)


@pytest.mark.parametrize("case", ["strides", "activation", "group"])
def test_conv_branches_that_differ_stay_apart(case):
    net = Net()
    x = net.input("x", [1, 3, 8, 8])
    first = branch(net, x, 4)
    if case == "strides":
        second = branch(net, x, 4, strides=[2, 2])
    elif case == "activation":
        second = branch(net, x, 4, activation="Sigmoid")
    else:
        second = net.op("Relu", net.op("Conv", x, net.weight(3, 1, 3, 3), pads=[1, 1, 1, 1], group=3))
    outputs = [net.op("Softmax", o) for o in (first, second)]
    engine = check(net.model(*outputs), fired={"horizontal_conv": 0})
    assert "Split" not in [n.op for n in engine.graph.nodes]
