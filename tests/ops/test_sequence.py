"""Sequences and optionals against onnxruntime: building, reading and mapping sequences, optional
values, sequence-typed graph inputs and outputs, and the errors that name the node or the input."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import pytest
import torch

import braze
from braze.errors import InputError

from .harness import rand
from .test_control_flow import B, F, I64, build, compare, const, model_of, vi


def seq(name: str, elem: int = F, shape=None) -> onnx.ValueInfoProto:
    return oh.make_tensor_sequence_value_info(name, elem, shape)


def opt(name: str, elem: int = F, shape=None, sequence: bool = False) -> onnx.ValueInfoProto:
    inner = oh.make_tensor_type_proto(elem, shape)
    if sequence:
        inner = oh.make_sequence_type_proto(inner)
    return oh.make_value_info(name, oh.make_optional_type_proto(inner))


@pytest.mark.parametrize("position", [0, 2, -1, -3])
def test_construct_insert_erase_at_length(position):
    nodes = [oh.make_node("SequenceConstruct", ["a", "b", "c"], ["s"]),
             oh.make_node("SequenceInsert", ["s", "d", "pos"], ["s2"]),
             oh.make_node("SequenceErase", ["s2", "pos"], ["s3"]),
             oh.make_node("SequenceErase", ["s3"], ["s4"]),
             oh.make_node("SequenceAt", ["s2", "pos"], ["item"]),
             oh.make_node("SequenceLength", ["s4"], ["n"])]
    inputs = [vi(n, F, [2, 3]) for n in "abcd"] + [vi("pos", I64, [])]
    model = model_of(nodes, inputs, [vi("item", F, [2, 3]), vi("n", I64, []), seq("s4", F, [2, 3])])
    feeds = {n: rand(2, 3, seed=i) for i, n in enumerate("abcd")}
    compare(model, {**feeds, "pos": np.array(position)})


def test_sequence_inputs_and_outputs():
    """A sequence of tensors of different shapes in, a sequence out; `infer` takes and gives lists."""
    nodes = [oh.make_node("SequenceInsert", ["s", "t"], ["s2"]),
             oh.make_node("SequenceAt", ["s2", "minus_one"], ["last"])]
    model = model_of(nodes, [seq("s", F, ["n", 3]), vi("t", F, [4, 3])],
                     [seq("s2", F, ["n", 3]), vi("last", F, [4, 3])], [const("minus_one", -1, np.int64)])
    compare(model, {"s": [rand(2, 3), rand(1, 3), rand(5, 3)], "t": rand(4, 3)})
    compare(model, {"s": [], "t": rand(4, 3)})
    engine = build(model)
    assert engine.inputs[0].kind == "sequence" and engine.inputs[0].shape == (None, 3)
    out = engine.create_execution_context().infer({"s": [torch.ones(2, 3)], "t": torch.zeros(4, 3)})
    assert isinstance(out["s2"], list) and [tuple(x.shape) for x in out["s2"]] == [(2, 3), (4, 3)]
    assert isinstance(out["s2"][0], torch.Tensor)


def test_sequences_live_outside_the_arena():
    nodes = [oh.make_node("SequenceConstruct", ["a", "b"], ["s"]),
             oh.make_node("SequenceAt", ["s", "one"], ["item"]),
             oh.make_node("Relu", ["item"], ["y"])]
    model = model_of(nodes, [vi("a", F, [4]), vi("b", F, [4])], [vi("y", F, [4])], [const("one", 1, np.int64)])
    engine = build(model)
    assert "s" not in engine.plan.memory.offsets and "item" in engine.plan.memory.offsets
    a, b = rand(4), rand(4)
    np.testing.assert_array_equal(engine.create_execution_context().infer({"a": a, "b": b})["y"], np.maximum(b, 0))


@pytest.mark.parametrize("split,attrs", [
    (None, {"axis": 1}),
    (None, {"axis": 0, "keepdims": 0}),
    (np.array(2), {"axis": 1}),
    (np.array(4), {"axis": -1}),
    (np.array([1, 4, 0]), {"axis": 1}),
])
def test_split_to_sequence(split, attrs):
    inputs = [vi("x", F, [3, 5])] + ([] if split is None else [vi("split", I64, list(split.shape))])
    node = oh.make_node("SplitToSequence", ["x"] + ([] if split is None else ["split"]), ["s"], **attrs)
    feeds = {"x": rand(3, 5)} | ({} if split is None else {"split": split})
    compare(model_of([node], inputs, [seq("s", F, None)]), feeds)


@pytest.mark.parametrize("axis,new_axis", [(0, 0), (1, 0), (-1, 0), (0, 1), (2, 1), (-1, 1)])
def test_concat_from_sequence(axis, new_axis):
    nodes = [oh.make_node("SplitToSequence", ["x", "split"], ["s"], axis=1),
             oh.make_node("ConcatFromSequence", ["s"], ["y"], axis=axis, new_axis=new_axis)]
    model = model_of(nodes, [vi("x", F, [2, 4])], [vi("y", F, ["p", "q", "r"][:2 + new_axis])],
                     [const("split", 2, np.int64)])
    compare(model, {"x": rand(2, 4)})


def test_sequence_map_with_a_tensor_and_an_outer_read():
    body = oh.make_graph([oh.make_node("Mul", ["item", "scale"], ["scaled"]),
                          oh.make_node("Add", ["scaled", "bias"], ["out0"]),
                          oh.make_node("Shape", ["item"], ["out1"])], "body",
                         [vi("item", F, ["n"]), vi("scale", F, [])], [vi("out0", F, ["n"]), vi("out1", I64, [1])])
    node = oh.make_node("SequenceMap", ["s", "k"], ["mapped", "shapes"], body=body, name="map")
    model = model_of([node], [seq("s", F, ["n"]), vi("k", F, []), vi("bias", F, [1])],
                     [seq("mapped", F, ["n"]), seq("shapes", I64, [1])], opset=17)
    compare(model, {"s": [rand(3), rand(5), rand(1)], "k": np.array(1.5, np.float32), "bias": rand(1)})


def test_loop_that_collects_a_sequence():
    body = oh.make_graph([oh.make_node("Unsqueeze", ["i", "axes"], ["i1"]),
                          oh.make_node("Add", ["i1", "one"], ["end"]),
                          oh.make_node("Slice", ["x", "zero", "end"], ["part"]),
                          oh.make_node("SequenceInsert", ["s_in", "part"], ["s_out"]),
                          oh.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
                         [vi("i", I64, []), vi("cond_in", B, []), seq("s_in")], [vi("cond_out", B, []), seq("s_out")],
                         [const("axes", [0], np.int64), const("one", [1], np.int64), const("zero", [0], np.int64)])
    nodes = [oh.make_node("SequenceEmpty", [], ["empty"], dtype=F),
             oh.make_node("Loop", ["M", "", "empty"], ["parts"], body=body, name="loop"),
             oh.make_node("ConcatFromSequence", ["parts"], ["flat"], axis=0)]
    model = model_of(nodes, [vi("M", I64, []), vi("x", F, [5])], [seq("parts"), vi("flat", F, ["n"])])
    compare(model, {"M": np.array(4), "x": rand(5)})


@pytest.mark.parametrize("cond", [True, False])
def test_if_of_sequences(cond):
    then = oh.make_graph([oh.make_node("SequenceConstruct", ["x", "x"], ["t"])], "then", [], [seq("t")])
    other = oh.make_graph([oh.make_node("SplitToSequence", ["x"], ["e"], axis=0)], "else", [], [seq("e")])
    nodes = [oh.make_node("If", ["c"], ["s"], then_branch=then, else_branch=other),
             oh.make_node("SequenceLength", ["s"], ["n"])]
    model = model_of(nodes, [vi("x", F, [3, 2]), vi("c", B, [])], [seq("s"), vi("n", I64, [])])
    compare(model, {"x": rand(3, 2), "c": np.array(cond)})


# -- optionals -------------------------------------------------------------------------------------

def test_optional_of_a_tensor():
    nodes = [oh.make_node("Optional", ["x"], ["o"]),
             oh.make_node("OptionalHasElement", ["o"], ["has"]),
             oh.make_node("OptionalGetElement", ["o"], ["y"])]
    compare(model_of(nodes, [vi("x", F, [2, 3])], [vi("has", B, []), vi("y", F, [2, 3])], opset=18), {"x": rand(2, 3)})


def test_empty_optional_of_a_sequence():
    nodes = [oh.make_node("Optional", [], ["o"], type=oh.make_sequence_type_proto(oh.make_tensor_type_proto(F, None))),
             oh.make_node("OptionalHasElement", ["o"], ["has"])]
    model = model_of(nodes, [], [vi("has", B, [])], opset=18)
    compare(model, {})


def test_optional_inputs_and_outputs():
    """An optional sequence input, fed or left empty (None), passed through, and read when present."""
    then = oh.make_graph([oh.make_node("OptionalGetElement", ["o"], ["s"]),
                          oh.make_node("SequenceLength", ["s"], ["t"])], "then", [], [vi("t", I64, [])])
    other = oh.make_graph([oh.make_node("Constant", [], ["e"], value=oh.make_tensor("v", I64, [], [-1]))], "else", [],
                          [vi("e", I64, [])])
    nodes = [oh.make_node("OptionalHasElement", ["o"], ["has"]),
             oh.make_node("If", ["has"], ["n"], then_branch=then, else_branch=other),
             oh.make_node("Identity", ["o"], ["same"])]
    model = model_of(nodes, [opt("o", F, [2], sequence=True)], [vi("n", I64, []), opt("same", F, [2], sequence=True)],
                     opset=18)
    ctx = build(model).create_execution_context()
    out = ctx.infer({"o": [rand(2), rand(2)]})
    assert out["n"] == 2 and len(out["same"]) == 2
    out = ctx.infer({"o": None})
    assert out["n"] == -1 and out["same"] is None


# -- errors ----------------------------------------------------------------------------------------

def _run(nodes, inputs, outputs, feeds, inits=(), opset=17):
    build(model_of(nodes, inputs, outputs, inits, opset)).create_execution_context().infer(feeds)


def test_position_out_of_range_names_the_layer():
    nodes = [oh.make_node("SequenceConstruct", ["a", "a"], ["s"]),
             oh.make_node("SequenceAt", ["s", "pos"], ["y"], name="at")]
    with pytest.raises(braze.BrazeError, match="layer 'at' \\(SequenceAt.*position 2 is out of range"):
        _run(nodes, [vi("a", F, [2]), vi("pos", I64, [])], [vi("y", F, [2])], {"a": rand(2), "pos": np.array(2)})


def test_inserting_another_type_names_the_node():
    nodes = [oh.make_node("SequenceEmpty", [], ["s"], dtype=I64),
             oh.make_node("SequenceInsert", ["s", "a"], ["s2"], name="insert")]
    with pytest.raises(braze.BrazeError, match="'insert' \\(SequenceInsert\\).*one is int64, the other float32"):
        _run(nodes, [vi("a", F, [2])], [seq("s2", I64)], {"a": rand(2)})


def test_reading_an_empty_optional_names_the_layer():
    nodes = [oh.make_node("OptionalGetElement", ["o"], ["y"], name="get")]
    with pytest.raises(braze.BrazeError, match="layer 'get' \\(OptionalGetElement.*empty"):
        _run(nodes, [opt("o", F, [2])], [vi("y", F, [2])], {"o": None}, opset=18)


def test_concatenating_an_empty_sequence_names_the_layer():
    nodes = [oh.make_node("SequenceEmpty", [], ["s"]),
             oh.make_node("ConcatFromSequence", ["s"], ["y"], axis=0, name="concat")]
    with pytest.raises(braze.BrazeError, match="layer 'concat' .*empty sequence"):
        _run(nodes, [], [vi("y", F, ["n"])], {})


@pytest.mark.parametrize("feed,match", [
    (rand(2), "input 's' is a sequence; pass a list"),
    ([rand(2), rand(2).astype(np.float64)], "item 1 of input 's' is float64"),
    ([rand(3)], "item 0 of input 's' has shape \\[3\\], the engine was built for \\[2\\]"),
])
def test_sequence_input_errors(feed, match):
    model = model_of([oh.make_node("SequenceLength", ["s"], ["n"])], [seq("s", F, [2])], [vi("n", I64, [])])
    with pytest.raises(InputError, match=match):
        build(model).create_execution_context().infer({"s": feed})
