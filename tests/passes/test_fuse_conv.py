"""Convolution fusions (braze/passes/fuse_conv.py): BatchNormalization folded into the weights, and
bias, residual and activation absorbed into one FusedConv; with the near-misses that must stay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from braze.ir import DType, Graph, Node, Tensor
from braze.testing import assert_close

from .helpers import Net, build, check, layer_ops, run


def conv(net: Net, x: str, out_channels: int = 4, in_channels: int = 3, bias: bool = False, **attrs) -> str:
    attrs.setdefault("pads", [1, 1, 1, 1])
    w = net.weight(out_channels, in_channels // attrs.get("group", 1), 3, 3)
    return net.op("Conv", x, w, *([net.weight(out_channels)] if bias else []), **attrs)


def batchnorm(net: Net, x: str, channels: int = 4, **attrs) -> str:
    return net.op("BatchNormalization", x, net.weight(channels), net.weight(channels), net.weight(channels),
                  net.positive(channels), **attrs)


@pytest.mark.parametrize("bias, group", [(False, 1), (True, 1), (False, 4)], ids=["plain", "bias", "depthwise"])
def test_batchnorm_folds_into_the_conv(bias, group):
    net = Net()
    x = net.input("x", [2, 4 if group > 1 else 3, 6, 6])
    y = batchnorm(net, conv(net, x, in_channels=4 if group > 1 else 3, bias=bias, group=group))
    check(net.model(y), fired={"conv_batchnorm": 1}, ops=["FusedConv"])


@pytest.mark.parametrize("chain, fired", [
    ("add bn relu", {"conv_bias": 1, "conv_batchnorm": 1, "conv_activation": 1}),
    ("bn add relu", {"conv_bias": 1, "conv_batchnorm": 1, "conv_activation": 1}),
    ("bn bn", {"conv_batchnorm": 2}),
    ("add add", {"conv_bias": 2}),
])
def test_chains_of_per_channel_affine_ops_fold_in_any_order(chain, fired):
    net = Net()
    t = conv(net, net.input("x", [1, 3, 6, 6]))
    for step in chain.split():
        t = {"add": lambda: net.op("Add", t, net.weight(4, 1, 1)), "bn": lambda: batchnorm(net, t),
             "relu": lambda: net.op("Relu", t)}[step]()
    check(net.model(t), fired=fired, ops=["FusedConv"])


@pytest.mark.parametrize("shape", [[4, 1, 1], [1, 4, 1, 1]])
def test_bias_add_becomes_the_conv_bias(shape):
    net = Net()
    y = net.op("Add", net.weight(*shape), conv(net, net.input("x", [1, 3, 6, 6]), bias=True))
    engine = check(net.model(y), fired={"conv_bias": 1}, ops=["FusedConv"])
    assert len(engine.graph.nodes[0].inputs) == 3


@pytest.mark.parametrize("shape", [[4], [1, 1, 6, 1]], ids=["along width", "along height"])
def test_an_add_that_does_not_broadcast_per_channel_is_not_a_bias(shape):
    net = Net()
    y = net.op("Add", conv(net, net.input("x", [1, 3, 6, 4])), net.weight(*shape))
    check(net.model(y), fired={"conv_bias": 0, "conv_residual": 0}, ops=["FusedConv", "Add"])


def test_residual_add_and_activation_make_the_resnet_block_ending():
    net = Net()
    skip = net.input("skip", [1, 4, 6, 6])
    y = net.op("Relu", net.op("Add", skip, batchnorm(net, conv(net, net.input("x", [1, 3, 6, 6])))))
    engine = check(net.model(y), fired={"conv_batchnorm": 1, "conv_residual": 1, "conv_activation": 1},
                   ops=["FusedConv"])
    fused = engine.graph.nodes[0]
    assert fused.inputs[3].name == "skip" and fused.attrs["activation"] == "relu"


def test_a_residual_of_another_shape_is_not_fused():
    net = Net()
    y = net.op("Add", conv(net, net.input("x", [1, 3, 6, 6])), net.input("skip", [1, 4, 1, 1]))
    check(net.model(y), fired={"conv_residual": 0}, ops=["FusedConv", "Add"])


ACTIVATIONS = [
    ("Relu", [], {}, "relu"),
    ("LeakyRelu", [], {"alpha": 0.2}, "leaky_relu"),
    ("Sigmoid", [], {}, "sigmoid"),
    ("Tanh", [], {}, "tanh"),
    ("Elu", [], {"alpha": 0.7}, "elu"),
    ("HardSigmoid", [], {"alpha": 0.3, "beta": 0.4}, "hardsigmoid"),
    ("HardSwish", [], {}, "hardswish"),
    ("Clip", [0.0, 6.0], {}, "clip"),
    ("Clip", [], {}, "clip"),
]


@pytest.mark.parametrize("op, bounds, attrs, activation", ACTIVATIONS, ids=[a[3] + str(a[1]) for a in ACTIVATIONS])
def test_activation_is_absorbed(op, bounds, attrs, activation):
    net = Net()
    c = conv(net, net.input("x", [1, 3, 6, 6]), bias=True)
    y = net.op(op, c, *[net.const(b) for b in bounds], **attrs)
    engine = check(net.model(y), fired={"conv_activation": 1}, ops=["FusedConv"])
    assert engine.graph.nodes[0].attrs["activation"] == activation


@pytest.mark.parametrize("recognized", ["SiLU", "Gelu"])
def test_recognized_activations_are_absorbed(recognized):
    net = Net()
    c = conv(net, net.input("x", [1, 3, 6, 6]))
    if recognized == "SiLU":
        y = net.op("Mul", c, net.op("Sigmoid", c))
    else:
        erf = net.op("Erf", net.op("Div", c, net.const(np.sqrt(2.0))))
        y = net.op("Mul", net.op("Mul", c, net.op("Add", erf, net.const(1.0))), net.const(0.5))
    engine = check(net.model(y), fired={"conv_activation": 1}, ops=["FusedConv"])
    assert engine.graph.nodes[0].attrs["activation"] == recognized.lower()


def test_clip_with_a_bound_computed_at_run_time_is_not_absorbed():
    net = Net()
    y = net.op("Clip", conv(net, net.input("x", [1, 3, 6, 6])), net.input("low", []))
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32),
             "low": np.array(-0.5, np.float32)}
    check(net.model(y), feeds, fired={"conv_activation": 0}, ops=["FusedConv", "Clip"])


def test_clip_made_by_braze_itself_uses_its_bound_inputs():
    """A node of version 0 follows the newest definition: Clip's bounds are inputs, not attributes."""
    x = Tensor("x", DType.float32, (1, 2, 4, 4))
    w = Tensor("w", DType.float32, (3, 2, 1, 1), torch.linspace(-2, 2, 6).reshape(3, 2, 1, 1))
    low, high = (Tensor(n, DType.float32, (), torch.tensor(v)) for n, v in (("low", -0.25), ("high", 0.5)))
    c, y = Tensor("c"), Tensor("y")
    graph = Graph([x], [y], [Node("Conv", [x, w], [c], name="conv"), Node("Clip", [c, low, high], [y], name="clip")])
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)}
    optimized = build(graph)
    assert layer_ops(optimized) == ["FusedConv"] and optimized.graph.nodes[0].attrs["act_params"] == [-0.25, 0.5]
    assert_close(run(optimized, feeds)[0], run(build(graph, level=0), feeds)[0])


def test_a_conv_read_twice_or_returned_keeps_its_activation_apart():
    net = Net()
    c = conv(net, net.input("x", [1, 3, 6, 6]))
    check(net.model(net.op("Relu", c), c), fired={"conv_activation": 0}, ops=["FusedConv", "Relu"])


def test_a_conv_with_a_weight_computed_at_run_time_is_not_fused():
    net = Net()
    c = net.op("Conv", net.input("x", [1, 3, 6, 6]), net.input("w", [4, 3, 3, 3]))
    y = net.op("Relu", net.op("Add", batchnorm(net, c), net.weight(4, 1, 1)))
    check(net.model(y), fired={"conv_batchnorm": 0, "conv_bias": 0, "conv_activation": 0},
          ops=["Conv", "BatchNormalization", "Pointwise"])


def test_batchnorm_with_statistics_computed_at_run_time_is_not_folded():
    net = Net()
    c = conv(net, net.input("x", [1, 3, 6, 6]))
    y = net.op("BatchNormalization", c, net.weight(4), net.weight(4), net.input("mean", [4]), net.positive(4))
    check(net.model(y), fired={"conv_batchnorm": 0}, ops=["FusedConv", "BatchNormalization"])


def test_activation_then_add_is_not_a_residual_of_the_conv():
    net = Net()
    y = net.op("Add", net.op("Relu", conv(net, net.input("x", [1, 3, 6, 6]))), net.input("skip", [1, 4, 6, 6]))
    engine = check(net.model(y), fired={"conv_activation": 1, "conv_residual": 0}, ops=["FusedConv", "Add"])
    assert engine.graph.nodes[0].input(3) is None


def test_folding_keeps_the_source_nodes_as_origin():
    net = Net()
    y = net.op("Relu", batchnorm(net, conv(net, net.input("x", [1, 3, 6, 6]), name="conv"), name="bn"), name="relu")
    engine = check(net.model(y), ops=["FusedConv"])
    assert engine.graph.nodes[0].origin == ("conv", "bn", "relu")


def _pad(net: Net, x: str, pads: list[int], value: float | None = None, mode: str = "constant",
         axes: list[int] | None = None) -> str:
    inputs = [x, net.const(pads, np.int64)]
    if value is not None or axes is not None:
        inputs.append(net.const(0.0 if value is None else value))
    if axes is not None:
        inputs.append(net.const(axes, np.int64))
    return net.op("Pad", *inputs, mode=mode)


@pytest.mark.parametrize("pads, axes", [
    ([0, 0, 0, 1, 0, 0, 1, 2], None),  # TF "same" padding: one more at the end
    ([0, 0, 2, 0, 0, 0, 2, 0], None),
    ([1, 0, 1, 1], [2, 3]),  # opset 18's axes
    ([1, 2, 0, 1], [-2, -1]),
], ids=["same-asymmetric", "height-only", "axes", "negative-axes"])
def test_a_zero_pad_folds_into_the_conv(pads, axes):
    net = Net(opset=18)
    x = _pad(net, net.input("x", [2, 3, 7, 7]), pads, axes=axes)
    check(net.model(conv(net, x, strides=[2, 2])), fired={"pad_into_conv": 1}, ops=["FusedConv"])


def test_an_opset_2_pad_folds_too():
    net = Net(opset=10)
    x = net.op("Pad", net.input("x", [1, 3, 6, 6]), pads=[0, 0, 1, 1, 0, 0, 1, 1])
    check(net.model(conv(net, x, pads=[0, 0, 0, 0])), fired={"pad_into_conv": 1}, ops=["FusedConv"])


@pytest.mark.parametrize("how", ["value", "reflect", "batch", "crop", "shared"])
def test_a_pad_that_is_not_a_zero_border_stays(how):
    net = Net(opset=18)
    x = net.input("x", [2, 3, 7, 7])
    spatial = [0, 0, 1, 1, 0, 0, 1, 1]
    padded = {"value": lambda: _pad(net, x, spatial, value=0.5), "reflect": lambda: _pad(net, x, spatial, mode="reflect"),
              "batch": lambda: _pad(net, x, [1, 0, 1, 1, 0, 0, 1, 1]), "crop": lambda: _pad(net, x, [0, 0, -1, 1, 0, 0, 1, 1]),
              "shared": lambda: _pad(net, x, spatial)}[how]()
    y = conv(net, padded)
    outputs = [y, padded] if how == "shared" else [y]
    check(net.model(*outputs), fired={"pad_into_conv": 0})
