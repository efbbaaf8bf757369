"""Elimination (braze/passes/eliminate.py): no-op nodes go, shape ops become Reshapes, chains of
Reshapes or Transposes become one, neutral arithmetic goes, and common subexpressions merge.
A Softmax (not elementwise, so pointwise fusion leaves it alone) marks where the data goes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from .helpers import Net, build, check, layer_ops, random_feeds, rules_fired, run


def softmax_of(op: str, *args, shape=(2, 3, 4), **attrs):
    net = Net()
    x = net.input("x", list(shape))
    return net, net.op("Softmax", net.op(op, x, *[a(net) if callable(a) else a for a in args], **attrs))


def test_identity_is_removed_unless_it_joins_an_input_to_an_output():
    net, y = softmax_of("Identity")
    check(net.model(y), fired={"remove_identity": 1}, ops=["Softmax"])
    net = Net()
    check(net.model(net.op("Identity", net.input("x", [2, 3]))), fired={"remove_identity": 0}, ops=["Identity"])


def test_inference_dropout_is_removed():
    net = Net()
    x = net.input("x", [2, 3])
    y = net.op("Softmax", net.op("Dropout", x, net.const(0.3), net.const(False, np.bool_)))
    z = net.op("Softmax", net.op("Dropout", y))
    check(net.model(z), fired={"remove_dropout": 2}, ops=["Softmax", "Softmax"])


def test_dropout_whose_mode_is_an_input_or_whose_mask_is_read_stays():
    net = Net()
    x = net.input("x", [2, 3])
    y = net.op("Softmax", net.op("Dropout", x, net.const(0.5), net.input("training", [], np.bool_)))
    feeds = {"x": random_feeds(net.model(y))["x"], "training": np.array(False)}
    check(net.model(y), feeds, fired={"remove_dropout": 0}, ops=["Dropout", "Softmax"])

    net = Net()
    out, mask = net.op("Dropout", net.input("x", [2, 3]), outputs=2)
    check(net.model(net.op("Softmax", out), mask), fired={"remove_dropout": 0}, ops=["Dropout", "Softmax"])


@pytest.mark.parametrize("to, removed", [(onnx.TensorProto.FLOAT, True), (onnx.TensorProto.DOUBLE, False)])
def test_cast_to_the_same_type_is_removed(to, removed):
    net, y = softmax_of("Cast", to=to)
    check(net.model(y), fired={"remove_noop_cast": int(removed)}, ops=["Softmax"] if removed else ["Cast", "Softmax"])


@pytest.mark.parametrize("shape, removed", [([2, 3, 4], True), ([1, 4], True), ([2, 2, 3, 4], False)])
def test_expand_is_removed_when_it_keeps_the_shape(shape, removed):
    net, y = softmax_of("Expand", lambda n: n.const(shape, np.int64))
    check(net.model(y), fired={"remove_noop_expand": int(removed)},
          ops=["Softmax"] if removed else ["Expand", "Softmax"])


@pytest.mark.parametrize("op, args, attrs", [
    ("Flatten", (), {"axis": 2}),
    ("Squeeze", (lambda n: n.const([1], np.int64),), {}),
    ("Unsqueeze", (lambda n: n.const([0, 3], np.int64),), {}),
])
def test_shape_ops_become_reshapes(op, args, attrs):
    shape = (2, 1, 4) if op == "Squeeze" else (2, 3, 4)
    net, y = softmax_of(op, *args, shape=shape, **attrs)
    check(net.model(y), fired={"shape_op_as_reshape": 1}, ops=["Reshape", "Softmax"])


def test_unsqueeze_of_an_empty_tensor_becomes_a_reshape_that_keeps_the_empty_dim():
    net = Net()
    y = net.op("Unsqueeze", net.op("Relu", net.input("x", [3, 0])), net.const([0], np.int64))
    engine = check(net.model(y), {"x": np.zeros((3, 0), np.float32)}, fired={"shape_op_as_reshape": 1},
                   ops=["Relu", "Reshape"])
    assert engine.outputs[0].shape == (1, 3, 0)


def _reshapes(net: Net, x: str, *shapes: list[int]) -> str:
    for shape in shapes:
        x = net.op("Reshape", x, net.const(shape, np.int64))
    return x


def test_a_chain_of_reshapes_becomes_one_and_a_reshape_to_the_same_shape_goes():
    net = Net()
    y = net.op("Softmax", _reshapes(net, net.input("x", [2, 3, 4]), [6, 4], [4, 6], [2, 12]))
    check(net.model(y), fired={"merge_reshapes": 2}, ops=["Reshape", "Softmax"])
    net = Net()
    y = net.op("Softmax", _reshapes(net, net.input("x", [2, 3, 4]), [6, 4], [2, 3, 4]))
    check(net.model(y), fired={"merge_reshapes": 1, "remove_noop_reshape": 1}, ops=["Softmax"])


def test_a_reshape_read_twice_is_not_merged():
    net = Net()
    inner = _reshapes(net, net.input("x", [2, 3, 4]), [6, 4])
    y = net.op("Softmax", _reshapes(net, inner, [4, 6]))
    check(net.model(y, net.op("Softmax", inner)), fired={"merge_reshapes": 0},
          ops=["Reshape", "Reshape", "Softmax", "Softmax"])


def test_transposes_compose_and_an_identity_permutation_goes():
    net = Net()
    x = net.input("x", [2, 3, 4, 5])
    y = net.op("Softmax", net.op("Transpose", net.op("Transpose", x, perm=[0, 2, 3, 1]), perm=[2, 0, 3, 1]))
    engine = check(net.model(y), fired={"merge_transposes": 1}, ops=["Transpose", "Softmax"])
    assert engine.graph.nodes[0].attrs["perm"] == [3, 0, 1, 2]

    net = Net()
    x = net.input("x", [2, 3, 4, 5])
    y = net.op("Softmax", net.op("Transpose", net.op("Transpose", x, perm=[0, 2, 3, 1]), perm=[0, 3, 1, 2]))
    check(net.model(y), fired={"merge_transposes": 1, "remove_identity_transpose": 1}, ops=["Softmax"])


def test_a_transpose_read_twice_is_not_merged():
    net = Net()
    inner = net.op("Transpose", net.input("x", [2, 3, 4]), perm=[1, 0, 2])
    y = net.op("Softmax", net.op("Transpose", inner, perm=[0, 2, 1]))
    check(net.model(y, net.op("Softmax", inner)), fired={"merge_transposes": 0},
          ops=["Transpose", "Transpose", "Softmax", "Softmax"])


NEUTRAL = [
    ("remove_mul_one", "Mul", 1.0, False),
    ("remove_mul_one", "Mul", 1.0, True),
    ("remove_add_zero", "Add", 0.0, False),
    ("remove_add_zero", "Add", 0.0, True),
    ("remove_sub_zero", "Sub", 0.0, False),
    ("remove_div_one", "Div", 1.0, False),
    ("remove_pow_one", "Pow", 1.0, False),
]


@pytest.mark.parametrize("rule, op, value, constant_first", NEUTRAL)
def test_neutral_arithmetic_is_removed(rule, op, value, constant_first):
    net = Net()
    x, c = net.input("x", [2, 3]), net.const(np.full([3], value))
    y = net.op("Softmax", net.op(op, *((c, x) if constant_first else (x, c))))
    check(net.model(y), fired={rule: 1}, ops=["Softmax"])


@pytest.mark.parametrize("rule, op, value, constant_first", NEUTRAL[::2])
def test_neutral_constant_that_broadcasts_the_result_larger_stays(rule, op, value, constant_first):
    net = Net()
    x, c = net.input("x", [2, 3]), net.const(np.full([4, 1, 3], value))
    y = net.op("Softmax", net.op(op, x, c))
    check(net.model(y), fired={rule: 0}, ops=[op, "Softmax"])


@pytest.mark.parametrize("op, value, constant_first", [("Mul", 1.001, False), ("Sub", 0.0, True),
                                                       ("Div", 1.0, True), ("Pow", 2.0, False)])
def test_arithmetic_that_is_not_neutral_stays(op, value, constant_first):
    net = Net()
    x, c = net.input("x", [2, 3]), net.const(value)
    y = net.op("Softmax", net.op(op, *((c, x) if constant_first else (x, c))))
    engine = check(net.model(y), ops=[op, "Softmax"])
    assert not any(rule.startswith("remove_") for rule in rules_fired(engine))


def test_common_subexpressions_merge():
    net = Net()
    x = net.input("x", [2, 3])
    a, b = net.op("Softmax", x, axis=1), net.op("Softmax", x, axis=1)
    c = net.op("Softmax", x, axis=0)
    y = net.op("MatMul", net.op("Concat", a, b, c, axis=0), net.op("Transpose", x))
    check(net.model(y), fired={"cse": 1}, ops=["Softmax", "Softmax", "Concat", "Transpose", "MatMul"])


def test_equal_constants_merge_so_their_readers_can():
    net = Net()
    x = net.input("x", [2, 3])
    a, b = (net.op("Softmax", net.op("Mul", x, net.const([1.5, 2.0, 3.0]))) for _ in range(2))
    check(net.model(net.op("Concat", a, b, axis=0)), fired={"cse": 3}, ops=["Mul", "Softmax", "Concat"])


def test_random_nodes_are_never_merged():
    net = Net()
    x = net.input("x", [64])
    y = net.op("Sub", net.op("RandomUniformLike", x), net.op("RandomUniformLike", x))
    model = net.model(y)
    engine = build(model)
    assert layer_ops(engine) == ["RandomUniformLike", "RandomUniformLike", "Sub"] and rules_fired(engine)["cse"] == 0
    assert np.abs(run(engine, random_feeds(model))[0]).max() > 0
