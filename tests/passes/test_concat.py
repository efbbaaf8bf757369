"""Concat elimination (braze/passes/concat.py): a Concat whose inputs are written only for it becomes
ConcatInPlace, its producers writing straight into their slices; inputs that cannot be placed there
keep the Concat a copy. (Where the inputs land at run time: test_memory.py.)"""

from __future__ import annotations

import pytest

from .helpers import Net, check


def branches(net: Net, *shapes: list[int]) -> list[str]:
    return [net.op("Softmax", net.input(f"x{i}", shape)) for i, shape in enumerate(shapes)]


@pytest.mark.parametrize("axis", [1, -1, 0])
def test_concat_of_layers_written_for_it_is_in_place(axis):
    shapes = {1: ([2, 3, 4], [2, 5, 4]), -1: ([2, 3, 4], [2, 3, 2]), 0: ([1, 3, 4], [2, 3, 4])}[axis]
    net = Net()
    y = net.op("Concat", *branches(net, *shapes), axis=axis)
    engine = check(net.model(y), fired={"concat_in_place": 1}, ops=["Softmax", "Softmax", "ConcatInPlace"])
    assert engine.graph.nodes[-1].attrs["axis"] == axis % 3


@pytest.mark.parametrize("case", ["graph input", "constant", "read elsewhere", "graph output", "repeated"])
def test_concat_whose_inputs_cannot_be_placed_copies(case):
    net = Net()
    a, b = branches(net, [2, 3], [2, 3])
    outputs = []
    if case == "graph input":
        b = net.input("z", [2, 3])
    elif case == "constant":
        b = net.weight(2, 3)
    elif case == "read elsewhere":
        outputs.append(net.op("Neg", b))
    elif case == "graph output":
        outputs.append(b)
    else:
        b = a
    y = net.op("Concat", a, b, axis=0)
    check(net.model(y, *outputs), fired={"concat_in_place": 0})


def test_a_view_producer_keeps_the_concat_a_copy():
    net = Net()
    a, b = branches(net, [2, 3], [3, 2])
    y = net.op("Concat", a, net.op("Transpose", b, perm=[1, 0]), axis=0)
    check(net.model(y), fired={"concat_in_place": 0}, ops=["Softmax", "Softmax", "Transpose", "Concat"])


def test_of_nested_concats_only_the_inner_one_is_placed():
    """The outer one would place the inner one's inputs a second time, at offsets of the wrong tensor."""
    net = Net()
    a, b, c = branches(net, [1, 2, 3, 3], [1, 2, 3, 3], [1, 2, 3, 3])
    y = net.op("Concat", c, net.op("Concat", a, b, axis=1), axis=1)
    check(net.model(y), fired={"concat_in_place": 1},
          ops=["Softmax", "Softmax", "Softmax", "ConcatInPlace", "Concat"])
