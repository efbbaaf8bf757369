"""The pattern language and the rewrite driver (braze/passes/pattern.py): what a pattern binds,
when it refuses, and how `rewrite` runs a table of rules to a fixed point and counts them."""

from __future__ import annotations

from collections import Counter

import braze
from braze.ir import Graph, Node
from braze.passes.pattern import Any, Const, Match, Op, Rule, match, rewrite

from .helpers import Net


def parsed(net: Net, *outputs: str) -> Graph:
    return braze.parse_onnx(net.model(*outputs))


def producer(graph: Graph, name: str) -> Node:
    return next(n for n in graph.nodes if any(t.name == name for t in n.outputs))


def test_match_binds_nodes_and_tensors_by_name():
    net = Net()
    x = net.input("x", [1, 2, 4, 4])
    w = net.weight(3, 2, 1, 1)
    y = net.op("Relu", net.op("Conv", x, w))
    graph = parsed(net, y)
    m = match(Op("Relu", Op("Conv", Any("x"), Const("w"), name="conv"), name="relu"), producer(graph, y), graph)
    assert m is not None and m.root is producer(graph, y) and m["relu"] is m.root
    assert m["conv"].op == "Conv" and m["x"].name == x and m["w"].name == w
    assert [n.op for n in m.nodes()] == ["Conv", "Relu"]


def test_const_refuses_a_tensor_computed_at_run_time():
    net = Net()
    y = net.op("Conv", net.input("x", [1, 2, 4, 4]), net.input("w", [3, 2, 1, 1]))
    graph = parsed(net, y)
    assert match(Op("Conv", Any(), Const()), producer(graph, y), graph) is None
    assert match(Op("Conv", Any(), Any()), producer(graph, y), graph) is not None


def test_an_interior_tensor_read_elsewhere_or_returned_is_not_matched():
    pattern = Op("Relu", Op("Neg", Any()))
    for second_use in ("reader", "output"):
        net = Net()
        neg = net.op("Neg", net.input("x", [4]))
        y = net.op("Relu", neg)
        outputs = [y, net.op("Sigmoid", neg)] if second_use == "reader" else [y, neg]
        graph = parsed(net, *outputs)
        assert match(pattern, producer(graph, y), graph) is None, second_use
        assert match(Op("Relu", Op("Neg", Any(), one_use=False)), producer(graph, y), graph) is None, second_use


def test_a_node_read_twice_inside_the_pattern_matches_only_when_nothing_else_reads_it():
    pattern = Op("Mul", Op("Neg", Any(), one_use=False, name="neg"), Op("Neg", Any(), one_use=False))
    net = Net()
    neg = net.op("Neg", net.input("x", [4]))
    y = net.op("Mul", neg, neg)
    graph = parsed(net, y)
    m = match(pattern, producer(graph, y), graph)
    assert m is not None and len(m.nodes()) == 2
    graph = parsed(net, y, net.op("Sigmoid", neg))
    assert match(pattern, producer(graph, y), graph) is None


def test_a_name_bound_twice_must_be_the_same_tensor():
    pattern = Op("Mul", Any("x"), Any("x"))
    net = Net()
    a, b = net.input("a", [4]), net.input("b", [4])
    same, different = net.op("Mul", a, a), net.op("Mul", a, b)
    graph = parsed(net, same, different)
    assert match(pattern, producer(graph, same), graph) is not None
    assert match(pattern, producer(graph, different), graph) is None


def test_commute_tries_the_inputs_swapped():
    net = Net()
    y = net.op("Sub", net.const(2.0), net.input("x", [4]))
    graph = parsed(net, y)
    node = producer(graph, y)
    assert match(Op("Sub", Any("x"), Const("c")), node, graph) is None
    m = match(Op("Sub", Any("x"), Const("c"), commute=True), node, graph)
    assert m is not None and m["x"].name == "x" and float(m["c"].value) == 2.0


def test_partial_matches_the_first_inputs_and_any_inputs_ignores_them():
    net = Net()
    y = net.op("Clip", net.input("x", [4]), net.const(0.0), net.const(6.0))
    graph = parsed(net, y)
    node = producer(graph, y)
    assert match(Op("Clip", Any()), node, graph) is None
    assert match(Op("Clip", Any(), partial=True), node, graph) is not None
    assert match(Op("Clip", any_inputs=True), node, graph) is not None


def test_where_and_domain_restrict_a_match():
    net = Net()
    y = net.op("Softmax", net.input("x", [2, 4]), axis=0)
    graph = parsed(net, y)
    node = producer(graph, y)
    assert match(Op("Softmax", Any(), where=lambda n, m: n.attrs["axis"] == 0), node, graph) is not None
    assert match(Op("Softmax", Any(), where=lambda n, m: n.attrs["axis"] == 1), node, graph) is None
    assert match(Op("Softmax", Any(), domain="braze"), node, graph) is None
    assert match(Op(("Relu", "Softmax"), Any(), domain=""), node, graph) is not None


def _collapse_double_neg(m: Match, graph: Graph) -> list[Node] | None:
    """Neg(Neg(x)) -> Relu(x): not an identity, but easy to see in the result."""
    return [Node("Relu", [m["x"]], m.root.outputs, name=m.root.name + "_relu")]


def test_rewrite_runs_to_a_fixed_point_and_counts_each_rule():
    net = Net()
    t = net.input("x", [4])
    for _ in range(4):
        t = net.op("Neg", t)
    graph = parsed(net, t)
    fired: Counter[str] = Counter()
    rules = [Rule("double_neg", Op("Neg", Op("Neg", Any("x"))), _collapse_double_neg)]
    assert rewrite(graph, rules, fired) == 2
    assert fired == Counter({"double_neg": 2})
    assert [n.op for n in graph.nodes] == ["Relu", "Relu"]
    graph.verify()
    assert rewrite(graph, rules, fired) == 0


def test_a_declining_replacement_leaves_the_graph_as_it_was():
    net = Net()
    y = net.op("Neg", net.op("Neg", net.input("x", [4])))
    graph = parsed(net, y)
    before = [(n.name, n.op) for n in graph.nodes]
    fired: Counter[str] = Counter()
    assert rewrite(graph, [Rule("never", Op("Neg", Op("Neg", Any())), lambda m, g: None)], fired) == 0
    assert [(n.name, n.op) for n in graph.nodes] == before and fired["never"] == 0


def test_a_rewrite_that_enables_another_rule_is_followed_up():
    net = Net()
    y = net.op("Relu", net.op("Neg", net.op("Neg", net.input("x", [4]))))
    graph = parsed(net, y)
    fired: Counter[str] = Counter()

    def relu_of_relu(m: Match, g: Graph) -> list[Node]:
        return [Node("Relu", [m["x"]], m.root.outputs, name=m.root.name + "_once")]

    rules = [Rule("double_neg", Op("Neg", Op("Neg", Any("x"))), _collapse_double_neg),
             Rule("double_relu", Op("Relu", Op("Relu", Any("x"))), relu_of_relu)]
    rewrite(graph, rules, fired)
    assert fired == Counter({"double_neg": 1, "double_relu": 1})
    assert [n.op for n in graph.nodes] == ["Relu"] and graph.nodes[0].inputs[0].name == "x"
