"""Pointwise fusion (braze/passes/fuse_pointwise.py): connected elementwise ops whose intermediate
results nobody else reads become one Pointwise layer whose body is the chain."""

from __future__ import annotations

import onnx

from .helpers import Net, check


def body_ops(engine, index: int = 0) -> list[str]:
    return [n.op for n in engine.graph.nodes[index].attrs["body"].nodes]


def test_a_chain_becomes_one_layer():
    net = Net()
    x, z = net.input("x", [2, 3, 4]), net.input("z", [3, 4])
    y = net.op("Relu", net.op("Add", net.op("Mul", x, net.weight(4)), z))
    engine = check(net.model(y), fired={"pointwise": 1}, ops=["Pointwise"])
    assert body_ops(engine) == ["Mul", "Add", "Relu"]
    assert [t.name for t in engine.graph.nodes[0].inputs] == ["x", "z"]


def test_a_tree_with_a_shared_input_becomes_one_layer():
    net = Net()
    x = net.input("x", [2, 3])
    y = net.op("Add", net.op("Sigmoid", x), net.op("Tanh", net.op("Neg", x)))
    engine = check(net.model(y), fired={"pointwise": 1}, ops=["Pointwise"])
    assert sorted(body_ops(engine)) == ["Add", "Neg", "Sigmoid", "Tanh"]
    assert [t.name for t in engine.graph.nodes[0].inputs] == ["x"]


def test_comparisons_casts_and_where_fuse_with_their_mixed_types():
    net = Net()
    x = net.input("x", [2, 3])
    small = net.op("Cast", net.op("Less", x, net.const(-1.0)), to=onnx.TensorProto.FLOAT)
    y = net.op("Where", net.op("Greater", x, net.const(0.0)), net.op("Exp", x), small)
    engine = check(net.model(y), fired={"pointwise": 1}, ops=["Pointwise"])
    assert sorted(body_ops(engine)) == ["Cast", "Exp", "Greater", "Less", "Where"]


def test_a_graph_output_in_the_middle_ends_the_chain():
    net = Net()
    middle = net.op("Mul", net.op("Abs", net.input("x", [2, 3])), net.weight(3))
    y = net.op("Sqrt", net.op("Add", middle, net.const(1.0)))
    engine = check(net.model(y, middle), fired={"pointwise": 2}, ops=["Pointwise", "Pointwise"])
    assert body_ops(engine, 0) == ["Abs", "Mul"] and body_ops(engine, 1) == ["Add", "Sqrt"]


def test_an_intermediate_read_by_another_layer_ends_the_chain():
    net = Net()
    middle = net.op("Sigmoid", net.op("Neg", net.input("x", [2, 3])))
    y = net.op("Tanh", net.op("Exp", middle))
    engine = check(net.model(y, net.op("Softmax", middle)), fired={"pointwise": 2},
                   ops=["Pointwise", "Pointwise", "Softmax"])
    assert body_ops(engine, 0) == ["Neg", "Sigmoid"] and body_ops(engine, 1) == ["Exp", "Tanh"]


def test_a_layer_that_is_not_elementwise_splits_the_chain():
    net = Net()
    x = net.input("x", [2, 3])
    y = net.op("Relu", net.op("Neg", net.op("Softmax", net.op("Exp", net.op("Abs", x)))))
    check(net.model(y), fired={"pointwise": 2}, ops=["Pointwise", "Softmax", "Pointwise"])


def test_a_single_elementwise_op_is_left_alone():
    net = Net()
    y = net.op("Softmax", net.op("Exp", net.input("x", [2, 3])))
    check(net.model(y), fired={"pointwise": 0}, ops=["Exp", "Softmax"])


def test_broadcasting_inside_the_body_keeps_the_shape():
    net = Net()
    y = net.op("Relu", net.op("Add", net.input("x", [3, 1]), net.input("z", [1, 4])))
    engine = check(net.model(y), fired={"pointwise": 1}, ops=["Pointwise"])
    assert engine.outputs[0].shape == (3, 4)
