"""Alias-aware memory planning (braze/build/memory.py, braze/ops/views.py): view layers and in-place
concats take no memory of their own, so the arena shrinks; the plan stays sound (tests/passes/arena.py
checks it independently); and at run time a concat's inputs really are slices of its output."""

from __future__ import annotations

import numpy as np
import pytest

from braze.build.memory import plan_memory
from braze.engine.plan import MemoryPlan
from braze.ir import Graph

from .arena import check_memory_plan
from .helpers import Net, check, random_feeds


def views_and_concat():
    """Sigmoid, Tanh -> Concat (in place) -> Split (views) -> Reshape (view) -> Transposes (views), returned."""
    net = Net()
    c = net.op("Concat", net.op("Sigmoid", net.input("x0", [1, 4, 16, 16])),
               net.op("Tanh", net.input("x1", [1, 4, 16, 16])), axis=1)
    s0, s1 = net.op("Split", c, net.const([2, 6], np.int64), axis=1, outputs=2)
    r = net.op("Reshape", s1, net.const([1, 6, 256], np.int64))
    return net.model(net.op("Transpose", s0, perm=[0, 2, 3, 1]), net.op("Transpose", r, perm=[0, 2, 1]))


@pytest.fixture(scope="module")
def engine():
    return check(views_and_concat(), fired={"concat_in_place": 1},
                 ops=["Sigmoid", "Tanh", "ConcatInPlace", "Split", "Reshape", "Transpose", "Transpose"])


def view_layers(engine) -> frozenset[str]:
    return frozenset(name for name, choice in engine.plan.layers.items() if choice.tactic == "view")


def with_plain_concats(graph: Graph) -> Graph:
    copy = graph.copy()
    for node in copy.nodes:
        if node.op == "ConcatInPlace":
            node.op, node.domain = "Concat", ""
    return copy


def test_views_and_in_place_concat_shrink_the_arena(engine):
    assert view_layers(engine) == {n.name for n in engine.graph.nodes if n.op in ("Split", "Reshape", "Transpose")}
    no_views = plan_memory(engine.graph, alignment=64)
    no_concat = plan_memory(with_plain_concats(engine.graph), alignment=64, view_layers=view_layers(engine))
    arena = engine.plan.memory.arena_size
    assert arena == 8 * 1024  # the concat's output, which every other tensor is a part or a view of
    assert no_views.arena_size == no_concat.arena_size == 16 * 1024


def test_every_plan_is_sound(engine):
    check_memory_plan(engine.graph, engine.plan.memory, view_layers(engine))
    check_memory_plan(engine.graph, plan_memory(engine.graph, alignment=64), frozenset())
    plain = with_plain_concats(engine.graph)
    check_memory_plan(plain, plan_memory(plain, alignment=256), frozenset())


def test_the_checker_finds_overlaps_misplaced_slices_and_tensors_outside_the_arena(engine):
    def corrupted(memory: MemoryPlan, **changes) -> MemoryPlan:
        return MemoryPlan(changes.pop("arena_size", memory.arena_size), memory.alignment,
                          {**memory.offsets, **changes}, memory.strides)

    names = {n.op: n.outputs[0].name for n in engine.graph.nodes}
    copies = plan_memory(engine.graph, alignment=64)  # the Split's outputs are planned tensors here
    split_out = names["Split"]
    with pytest.raises(AssertionError, match="overlap while both are alive"):
        check_memory_plan(engine.graph, corrupted(copies, **{split_out: copies.offsets[names["ConcatInPlace"]]}),
                          frozenset())
    memory = engine.plan.memory
    with pytest.raises(AssertionError, match="not at its slice"):
        check_memory_plan(engine.graph, corrupted(memory, **{names["Tanh"]: memory.offsets[names["Sigmoid"]]}),
                          view_layers(engine))
    with pytest.raises(AssertionError, match="outside the arena"):
        check_memory_plan(engine.graph, corrupted(memory, arena_size=memory.arena_size // 2), view_layers(engine))


def test_concat_inputs_are_slices_of_its_output_at_run_time(engine):
    """Record what the ConcatInPlace kernel is handed: each input must be its slice of the output."""
    seen = []
    step = next(s for s in engine.steps if s.node.op == "ConcatInPlace")
    kernel = step.kernel

    def recording(inputs, outputs):
        seen.append([(t.data_ptr(), t.stride()) for t in inputs])
        out = outputs[0]
        seen.append([(out.narrow(1, i * 4, 4).data_ptr(), out.stride()) for i in range(len(inputs))])
        seen.append((out.data_ptr(), out.data_ptr() + out.numel() * out.element_size()))
        return kernel(inputs, outputs)

    step.kernel = recording
    try:
        engine.create_execution_context().infer(random_feeds(views_and_concat()))
    finally:
        step.kernel = kernel
    inputs, slices, (low, high) = seen
    assert inputs == slices
    assert all(low <= ptr < high for ptr, _ in inputs)


def test_views_of_a_layer_keep_it_alive_until_they_are_read():
    """A Reshape view of a Relu read three layers later: nothing may be planned over the Relu before then."""
    net = Net()
    a = net.op("Relu", net.input("x", [64, 64]))
    view = net.op("Reshape", a, net.const([4096], np.int64))
    b = net.op("Softmax", net.op("Softmax", net.op("Softmax", net.input("z", [64, 64]))))
    y = net.op("Add", net.op("Reshape", b, net.const([4096], np.int64)), view)
    engine = check(net.model(y), ops=["Relu", "Reshape", "Softmax", "Softmax", "Softmax", "Reshape", "Add"])
    assert view_layers(engine) == {n.name for n in engine.graph.nodes if n.op == "Reshape"}
    check_memory_plan(engine.graph, engine.plan.memory, view_layers(engine))
