"""Constant folding: nodes of constants, and shape arithmetic on static shapes, become constants at
build time; nodes whose values depend on the inputs, are random or too large stay."""

from __future__ import annotations

import numpy as np

from braze.passes import fold_constants

from .helpers import Net, build, check, layer_ops, random_feeds, rules_fired, run


def test_shape_gather_concat_chain_folds_to_a_reshape_target():
    """The exporter's `x.view(x.size(0), -1)`: Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    net = Net()
    x = net.op("Relu", net.input("x", [2, 3, 4]))
    batch = net.op("Gather", net.op("Shape", x), net.const(0, np.int64), axis=0)
    target = net.op("Concat", net.op("Unsqueeze", batch, net.const([0], np.int64)), net.const([-1], np.int64), axis=0)
    y = net.op("Reshape", x, target)
    engine = check(net.model(y), fired={"fold_constants": 4}, ops=["Relu", "Reshape"])
    assert engine.graph.nodes[1].inputs[1].value.tolist() == [2, -1]


def test_a_subgraph_of_constants_is_evaluated_once():
    net = Net()
    c = net.op("Add", net.weight(3), net.op("Mul", net.weight(3), net.weight(3)))
    y = net.op("Softmax", net.op("Add", net.input("x", [2, 3]), net.op("Exp", c)))
    check(net.model(y), fired={"fold_constants": 3}, ops=["Add", "Softmax"])


def test_a_folded_graph_output_is_returned_as_a_constant():
    net = Net()
    x = net.input("x", [2, 3, 4])
    engine = check(net.model(net.op("Shape", x), net.op("Relu", x)), fired={"fold_constants": 1}, ops=["Relu"])
    assert engine.graph.outputs[0].is_constant


def test_values_computed_from_the_inputs_are_not_folded():
    net = Net()
    y = net.op("Softmax", net.op("Mul", net.input("x", [2, 3]), net.weight(3)))
    check(net.model(y), fired={"fold_constants": 0}, ops=["Mul", "Softmax"])


def test_random_nodes_are_not_folded():
    net = Net()
    noise = net.op("RandomUniform", shape=[2, 3], dtype=1)
    model = net.model(net.op("Add", net.input("x", [2, 3]), noise))
    engine = build(model)
    assert rules_fired(engine)["fold_constants"] == 0 and layer_ops(engine) == ["RandomUniform", "Add"]
    feeds = random_feeds(model)
    assert not np.array_equal(run(engine, feeds)[0], run(engine, feeds)[0])


def test_outputs_over_the_fold_limit_stay_computed_at_run_time(monkeypatch):
    """8192 elements: more than shape inference carries as a known value, so FOLD_LIMIT decides."""
    net = Net()
    tiled = net.op("Tile", net.weight(64, 64), net.const([2, 1], np.int64))
    model = net.model(net.op("Add", net.input("x", [128, 64]), tiled))
    check(model, fired={"fold_constants": 1}, ops=["Add"])
    monkeypatch.setattr(fold_constants, "FOLD_LIMIT", 8191)
    check(model, fired={"fold_constants": 0}, ops=["Tile", "Add"])
