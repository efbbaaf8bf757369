"""The layer-by-layer Network API: same IR as the ONNX frontend, errors at the line that made them."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import braze
from braze.errors import ShapeError, UnsupportedError
from braze.testing import assert_close


def small_net():
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    b1 = rng.standard_normal(8).astype(np.float32) * 0.1
    fc = rng.standard_normal((8, 5)).astype(np.float32) * 0.3
    net = braze.Network("small")
    x = net.add_input("x", "float32", (2, 3, 12, 12))
    y = net.relu(net.conv(x, net.add_constant(w1, "w1"), net.add_constant(b1, "b1"), pads=1), name="relu1")
    y = net.max_pool(y, 2)
    y = net.flatten(net.global_average_pool(y))
    y = net.softmax(net.gemm(y, net.add_constant(fc, "fc")))
    net.mark_output(y, "probs")
    return net, (w1, b1, fc)


def test_network_builds_and_matches_torch():
    net, (w1, b1, fc) = small_net()
    assert [n.op for n in net.graph.nodes] == ["Conv", "Relu", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm",
                                               "Softmax"]
    assert net.graph.nodes[0].outputs[0].shape == (2, 8, 12, 12)
    engine = braze.Builder("cpu").build(net)
    x = np.random.default_rng(1).standard_normal((2, 3, 12, 12)).astype(np.float32)
    got = engine.create_execution_context().infer({"x": x})["probs"]
    t = F.max_pool2d(F.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(w1), torch.from_numpy(b1), padding=1)), 2)
    expected = torch.softmax(t.mean(dim=(2, 3)) @ torch.from_numpy(fc), dim=-1).numpy()
    assert_close(got, expected)
    assert engine.num_layers < len(net.graph.nodes)


def test_shape_errors_are_reported_when_the_layer_is_added():
    net = braze.Network()
    x = net.add_input("x", "float32", (1, 3, 8, 8))
    w = net.add_constant(np.ones((4, 5, 3, 3), np.float32))
    with pytest.raises(ShapeError, match="layer|conv"):
        net.conv(x, w, name="bad_conv")


def test_unknown_op_bad_attribute_and_non_tensor_input():
    net = braze.Network()
    x = net.add_input("x", "float32", (2, 3))
    with pytest.raises(UnsupportedError, match="no op 'Frobnicate'"):
        net.add_layer("Frobnicate", [x])
    with pytest.raises(braze.BrazeError, match="does not take attribute"):
        net.add_layer("Relu", [x], {"alpha": 1.0})
    with pytest.raises(braze.BrazeError, match="add_constant"):
        net.add(x, 1.0)  # type: ignore[arg-type]
    with pytest.raises(braze.BrazeError, match="already has a tensor named 'x'"):
        net.add_input("x", "float32", (1,))


def test_elementwise_reshape_transpose_concat():
    net = braze.Network()
    a = net.add_input("a", "float32", (2, 3))
    b = net.add_input("b", "float32", (2, 3))
    s = net.mul(net.add(a, b), net.sub(a, b))
    r = net.transpose(net.reshape(s, (3, 2)), (1, 0))
    net.mark_output(net.concat([r, net.div(r, net.add_constant(np.float32(2.0)))], axis=0), "out")
    engine = braze.Builder("cpu").build(net)
    av, bv = np.random.default_rng(2).standard_normal((2, 2, 3)).astype(np.float32)
    got = engine.create_execution_context().infer({"a": av, "b": bv})["out"]
    r_np = ((av + bv) * (av - bv)).reshape(3, 2).T
    assert_close(got, np.concatenate([r_np, r_np / 2], axis=0))
