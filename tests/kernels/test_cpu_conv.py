"""The oneDNN convolution tactic against the FusedConv reference: every fused activation, residual adds,
groups, strides, dilations and asymmetric pads, with NCHW and channels-last inputs."""

import pytest
import torch

from braze.device import Target
from braze.ir import DType, Node, Tensor
from braze.kernels.cpu.conv import OneDnnConvTactic, onednn_available
from braze.ops.fused import fused_conv
from braze.testing import assert_close

pytestmark = pytest.mark.skipif(not onednn_available(), reason="torch built without oneDNN")
CPU = Target.parse("cpu")


def layer(act: str, params: list[float], *, residual: bool, group: int = 1, strides=(1, 1), pads=(1, 1, 1, 1),
          dilations=(1, 1), bias: bool = True):
    g = torch.Generator().manual_seed(0)
    x = Tensor("x", DType.float32, (2, 8, 11, 13))
    w = Tensor("w", DType.float32, (12, 8 // group, 3, 3), torch.randn(12, 8 // group, 3, 3, generator=g) * 0.2)
    b = Tensor("b", DType.float32, (12,), torch.randn(12, generator=g)) if bias else None
    attrs = {"strides": list(strides), "pads": list(pads), "dilations": list(dilations), "group": group,
             "activation": act, "act_params": params}
    out_shape = fused_conv.run([torch.empty(2, 8, 11, 13, device="meta"), w.value.to("meta"),
                                None if b is None else b.value.to("meta")], attrs, 1)[0].shape
    inputs = [x, w, b]
    if residual:
        inputs.append(Tensor("r", DType.float32, tuple(out_shape)))
    y = Tensor("y", DType.float32, tuple(out_shape))
    return Node("FusedConv", inputs, [y], attrs, name="conv", domain="braze")


def check(node: Node, channels_last: bool = False) -> None:
    tactic = OneDnnConvTactic()
    assert tactic.supports(node, CPU)
    x = torch.randn(2, 8, 11, 13)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    args = [x, node.inputs[1].value, None if node.inputs[2] is None else node.inputs[2].value]
    if len(node.inputs) > 3:
        args.append(torch.randn(node.inputs[3].shape))
    expected = fused_conv.run(args, node.attrs, 1)[0]
    out = torch.full(node.outputs[0].shape, float("nan"))
    kernel = tactic.compile(node, {}, CPU)
    assert kernel([args[0], None, None, *args[3:]], [out]) is None
    assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act,params", [("none", []), ("relu", []), ("sigmoid", []), ("tanh", []), ("hardswish", []),
                                        ("silu", []), ("leaky_relu", [0.1]), ("clip", [0.0, 6.0]), ("gelu", []),
                                        ("gelu_tanh", [])])
def test_every_fused_activation(act, params):
    check(layer(act, params, residual=False))


@pytest.mark.parametrize("act", ["none", "relu"])
def test_residual_add_then_activation(act):
    check(layer(act, [], residual=True), channels_last=True)


@pytest.mark.parametrize("kwargs", [dict(group=2), dict(group=4), dict(strides=(2, 1)), dict(dilations=(2, 1)),
                                    dict(pads=(0, 1, 2, 1)), dict(bias=False)])
def test_geometry(kwargs):
    check(layer("relu", [], residual=False, **kwargs))


def test_activations_onednn_cannot_fuse_are_left_to_the_reference():
    assert not OneDnnConvTactic().supports(layer("elu", [1.0], residual=False), CPU)
    assert not OneDnnConvTactic().supports(layer("sigmoid", [], residual=True), CPU)
