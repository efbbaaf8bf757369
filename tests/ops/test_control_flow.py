"""If, Loop and Scan against onnxruntime: outer-scope reads, nested subgraphs, data-dependent and
folded shapes, errors that name the node, and engines that keep their subgraphs through a round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import onnxruntime as ort
import pytest

import braze
from braze.testing import assert_close

from .harness import rand, run_braze, run_ort

F, I64, B = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.BOOL


def vi(name: str, elem: int = F, shape: Sequence[Any] | None = None) -> onnx.ValueInfoProto:
    return oh.make_tensor_value_info(name, elem, shape)


def const(name: str, value: Any, dtype=np.float32) -> onnx.TensorProto:
    return onh.from_array(np.asarray(value, dtype=dtype), name)


def model_of(nodes, inputs, outputs, inits=(), opset: int = 17) -> onnx.ModelProto:
    model = oh.make_model(oh.make_graph(nodes, "g", inputs, outputs, list(inits)),
                          opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    return model


def build(model: onnx.ModelProto) -> braze.Engine:
    """An engine of the model, serialized and loaded again."""
    engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False))
    return braze.Runtime().load(engine.serialize())


def compare(model: onnx.ModelProto, feeds: dict[str, Any]) -> list[Any]:
    """braze (through an engine round trip) against onnxruntime, outputs that are sequences included."""
    expected = run_ort(model, feeds)
    actual = run_braze(model, feeds)
    for i, (a, e) in enumerate(zip(actual, expected)):
        if isinstance(e, list):
            assert isinstance(a, list) and len(a) == len(e), f"output {i}: {a!r} vs {e!r}"
            for j, (x, y) in enumerate(zip(a, e)):
                assert_close(x, y, name=f"output {i} item {j}")
        else:
            assert_close(a, e, name=f"output {i}")
    return actual


def branch(name: str, nodes, output: str, elem: int = F) -> onnx.GraphProto:
    return oh.make_graph(nodes, name, [], [vi(output, elem)])


# -- If --------------------------------------------------------------------------------------------

def _if_model() -> onnx.ModelProto:
    """r = Relu(x); If(c) then r + y else x * y: both branches read tensors of the main graph."""
    then = branch("then", [oh.make_node("Add", ["r", "y"], ["t"])], "t")
    other = branch("else", [oh.make_node("Mul", ["x", "y"], ["e"])], "e")
    nodes = [oh.make_node("Relu", ["x"], ["r"], name="relu"),
             oh.make_node("If", ["c"], ["z"], name="if", then_branch=then, else_branch=other),
             oh.make_node("Neg", ["z"], ["out"], name="neg")]
    return model_of(nodes, [vi("x", F, [2, 3]), vi("y", F, [3]), vi("c", B, [])], [vi("out", F, [2, 3])])


@pytest.mark.parametrize("cond", [True, False])
def test_if_reads_outer_tensors(cond):
    compare(_if_model(), {"x": rand(2, 3), "y": rand(3), "c": np.array(cond)})


def test_if_outer_reads_are_inputs_of_the_node():
    graph = braze.parse_onnx(_if_model())
    node = graph.node_by_name("if")
    assert [t.name for t in node.inputs] == ["c", "x", "y", "r"]  # else_branch, then then_branch
    assert all(any(t is o for o in node.inputs) for sub in braze.ir.subgraphs(node) for t in sub.outer)


def test_if_outer_reads_survive_an_engine_round_trip():
    engine = build(_if_model())
    node = engine.graph.node_by_name("if")
    for sub in braze.ir.subgraphs(node):
        assert sub.outer and all(any(t is x for x in node.inputs) for t in sub.outer)
    ctx = engine.create_execution_context()
    x, y = rand(2, 3), rand(3)
    np.testing.assert_allclose(ctx.infer({"x": x, "y": y, "c": np.array(False)})["out"], -(x * y), rtol=1e-6)


def test_outer_reads_live_until_the_control_flow_node():
    engine = braze.Builder("cpu").build(braze.parse_onnx(_if_model()))
    offsets = engine.plan.memory.offsets
    assert {"r", "z"} <= set(offsets)  # r is read only inside a branch: its memory must outlive the If
    assert abs(offsets["r"] - offsets["z"]) >= 24


def test_if_with_a_known_condition_takes_its_branch():
    """The else branch does not even type-check (MatMul of [2,3] by [2,3]): only the chosen one is inferred."""
    then = branch("then", [oh.make_node("Add", ["x", "one"], ["t"])], "t")
    other = branch("else", [oh.make_node("MatMul", ["x", "x"], ["e"])], "e")
    nodes = [oh.make_node("If", ["c"], ["z"], name="if", then_branch=then, else_branch=other)]
    model = model_of(nodes, [vi("x", F, [2, 3])], [vi("z", F, [2, 3])], [const("c", True, np.bool_), const("one", 1.0)])
    engine = build(model)
    assert engine.outputs[0].shape == (2, 3)
    x = rand(2, 3)
    np.testing.assert_allclose(engine.create_execution_context().infer({"x": x})["z"], x + 1, rtol=1e-6)


def test_if_of_known_values_folds():
    then = branch("then", [oh.make_node("Mul", ["a", "a"], ["t"])], "t")
    other = branch("else", [oh.make_node("Neg", ["a"], ["e"])], "e")
    nodes = [oh.make_node("Greater", ["a", "zero"], ["c"]),
             oh.make_node("If", ["c"], ["k"], name="if", then_branch=then, else_branch=other),
             oh.make_node("Add", ["x", "k"], ["y"])]
    model = model_of(nodes, [vi("x", F, [3])], [vi("y", F, [3])], [const("a", [3.0]), const("zero", [0.0])])
    engine = build(model)
    assert [n.op for n in engine.graph.nodes] == ["Add"]
    x = rand(3)
    np.testing.assert_allclose(engine.create_execution_context().infer({"x": x})["y"], x + 9, rtol=1e-6)


def test_if_branches_of_different_shapes_give_a_run_time_shape():
    then = branch("then", [oh.make_node("Relu", ["x"], ["t"])], "t")
    other = branch("else", [oh.make_node("Concat", ["x", "x"], ["e"], axis=0)], "e")
    nodes = [oh.make_node("If", ["c"], ["z"], name="if", then_branch=then, else_branch=other)]
    model = model_of(nodes, [vi("x", F, [2, 3]), vi("c", B, [])], [vi("z", F, ["n", 3])])
    assert build(model).outputs[0].shape == (None, 3)
    for cond in (True, False):
        compare(model, {"x": rand(2, 3), "c": np.array(cond)})


def _bad_if(then_nodes, then_out, then_elem=F) -> onnx.ModelProto:
    then = oh.make_graph(then_nodes, "then", [], [vi(o, then_elem) for o in then_out])
    other = branch("else", [oh.make_node("Neg", ["x"], ["e"])], "e")
    nodes = [oh.make_node("If", ["c"], [f"z{i}" for i in range(len(then_out))], name="bad_if",
                          then_branch=then, else_branch=other)]
    return model_of(nodes, [vi("x", F, [2]), vi("c", B, [1])], [vi("z0", F, [2])])


@pytest.mark.parametrize("then_nodes,then_out,match", [
    ([oh.make_node("Relu", ["x"], ["a"]), oh.make_node("Neg", ["x"], ["b"])], ["a", "b"],
     "2 outputs, the else branch 1"),
    ([oh.make_node("Cast", ["x"], ["a"], to=I64)], ["a"], "one is int64, the other float32"),
])
def test_if_branches_that_disagree_name_the_node(then_nodes, then_out, match):
    with pytest.raises(braze.BrazeError, match=f"'bad_if' \\(If\\).*{match}"):
        build(_bad_if(then_nodes, then_out))


def test_if_condition_of_two_elements_names_the_layer():
    then = branch("then", [oh.make_node("Relu", ["x"], ["t"])], "t")
    other = branch("else", [oh.make_node("Neg", ["x"], ["e"])], "e")
    model = model_of([oh.make_node("If", ["c"], ["z"], name="if2", then_branch=then, else_branch=other)],
                     [vi("x", F, [2]), vi("c", B, [2])], [vi("z", F, [2])])
    ctx = build(model).create_execution_context()
    with pytest.raises(braze.BrazeError, match="layer 'if2' \\(If.*one element"):
        ctx.infer({"x": rand(2), "c": np.array([True, False])})


# -- If: a branch invalid for the given shapes, an input fixed at build time -----------------------

def _rate_model() -> onnx.ModelProto:
    """As a voice model chooses by sample rate: sr == 16000 takes frames of 4 (x @ w16), else frames of 2
    (x @ w8); for frames of 4 the else branch cannot type-check."""
    then = branch("then16k", [oh.make_node("MatMul", ["x", "w16"], ["t"], name="mm16")], "t")
    other = branch("else8k", [oh.make_node("MatMul", ["x", "w8"], ["e"], name="mm8")], "e")
    nodes = [oh.make_node("Equal", ["sr", "k16"], ["is16"], name="is16k"),
             oh.make_node("If", ["is16"], ["z"], name="by_rate", then_branch=then, else_branch=other),
             oh.make_node("Relu", ["z"], ["y"], name="relu")]
    return model_of(nodes, [vi("x", F, ["n", "frame"]), vi("sr", I64, [])], [vi("y", F, ["n", 3])],
                    [const("k16", 16000, np.int64), const("w16", rand(4, 3)), const("w8", rand(2, 3))])


def _weights(model):
    return {t.name: onh.to_array(t) for t in model.graph.initializer}


def test_if_branch_invalid_for_the_shapes_builds_and_fails_only_when_taken():
    model = _rate_model()
    lines = []
    engine = braze.Builder("cpu").build(model, braze.BuilderConfig(shapes={"x": (2, 4)}, progress=lines.append))
    assert "warning: If 'by_rate': its else branch cannot take these shapes and fails at run time" in "\n".join(lines)
    engine = braze.Runtime().load(engine.serialize())
    ctx = engine.create_execution_context()
    x = rand(2, 4)
    y = ctx.infer({"x": x, "sr": np.array(16000)})["y"]
    assert_close(y, np.maximum(x @ _weights(model)["w16"], 0))
    with pytest.raises(braze.errors.ExecutionError,
                       match=r"layer 'by_rate' \(If.*chose its else branch, which cannot run on inputs of the shapes "
                             r"this engine was built for \(.*'mm8' \(MatMul\)"):
        ctx.infer({"x": x, "sr": np.array(8000)})


def test_an_invalid_branch_of_a_nested_if_is_warned_about_too():
    rate = _rate_model()
    inner = [n for n in rate.graph.node if n.op_type != "Relu"]
    outer_then = branch("rated", inner, "z")
    outer_else = branch("fixed", [oh.make_node("MatMul", ["x", "w16"], ["f"], name="mm_fixed")], "f")
    nodes = [oh.make_node("If", ["use_rate"], ["z2"], name="outer", then_branch=outer_then, else_branch=outer_else),
             oh.make_node("Relu", ["z2"], ["y"], name="relu")]
    model = model_of(nodes, [vi("x", F, ["n", "frame"]), vi("sr", I64, []), vi("use_rate", B, [])],
                     [vi("y", F, ["n", 3])], list(rate.graph.initializer))
    lines = []
    braze.Builder("cpu").build(model, braze.BuilderConfig(shapes={"x": (2, 4)}, progress=lines.append))
    assert "warning: If 'by_rate': its else branch cannot take these shapes" in "\n".join(lines)


def test_if_of_two_invalid_branches_fails_the_build_naming_the_node():
    model = _rate_model()
    with pytest.raises(braze.errors.ShapeError, match=r"then branch of node 'by_rate' \(If\).*'mm16'"):
        braze.Builder("cpu").build(model, braze.BuilderConfig(shapes={"x": (2, 5)}, progress=False))


@pytest.mark.parametrize("sr,frame", [(16000, 4), (8000, 2)])
def test_an_input_fixed_at_build_time_folds_the_if_away(sr, frame):
    model = _rate_model()
    config = braze.BuilderConfig(shapes={"x": (2, frame)}, constants={"sr": sr}, progress=False)
    engine = braze.Runtime().load(braze.Builder("cpu").build(model, config).serialize())
    assert [t.name for t in engine.inputs] == ["x"]
    assert "If" not in {n.op for n in engine.graph.nodes}
    x = rand(2, frame)
    expected = run_ort(model, {"x": x, "sr": np.array(sr)})[0]
    assert_close(engine.create_execution_context().infer({"x": x})["y"], expected)


@pytest.mark.parametrize("constants,match", [
    ({"rate": 16000}, r"constants given for 'rate', which the model does not have as inputs; its inputs are 'x', "
                      r"'sr'"),
    ({"sr": 16000.5}, r"constant for input 'sr': 16000.5 is not a int64 value"),
    ({"sr": "fast"}, r"constant for input 'sr': 'fast' is not a int64 value"),
    ({"sr": [16000, 8000]}, r"input 'sr' is \[\] in the model; the constant given for it has shape \[2\]"),
])
def test_a_wrong_constant_names_the_input(constants, match):
    config = braze.BuilderConfig(shapes={"x": (2, 4)}, constants=constants, progress=False)
    with pytest.raises(braze.errors.ShapeError, match=match):
        braze.Builder("cpu").build(_rate_model(), config)


def test_cli_constant_fixes_an_input_at_build_time(tmp_path, capsys):
    from braze.tools.cli import main

    model = _rate_model()
    onnx.save(model, tmp_path / "rate.onnx")
    engine_file = tmp_path / "rate.engine"
    assert main(["build", str(tmp_path / "rate.onnx"), "-o", str(engine_file), "--shapes", "x:2x2",
                 "--constant", "sr=8000"]) == 0
    engine = braze.Runtime().load(engine_file.read_bytes())
    assert [t.name for t in engine.inputs] == ["x"] and "If" not in {n.op for n in engine.graph.nodes}
    x = rand(2, 2)
    expected = run_ort(model, {"x": x, "sr": np.array(8000)})[0]
    assert_close(engine.create_execution_context().infer({"x": x})["y"], expected)
    for bad, message in (("sr", "--constant 'sr': write NAME=VALUE, e.g. sr=16000"),
                         ("sr=fast", "--constant 'sr=fast': 'fast' is not a number"),
                         ("rate=1", "constants given for 'rate', which the model does not have as inputs")):
        assert main(["build", str(tmp_path / "rate.onnx"), "-o", str(engine_file), "--shapes", "x:2x2",
                     "--constant", bad]) != 0
        assert message in capsys.readouterr().err


VAD = Path(__file__).parents[2] / ".models" / "silero_vad.onnx"


@pytest.mark.skipif(not VAD.exists(), reason="run scripts/fetch_models.py silero_vad first")
@pytest.mark.parametrize("sr,frame,constant", [(16000, 512, False), (16000, 512, True), (8000, 256, True)])
def test_silero_vad_builds_for_one_rate_and_matches_onnxruntime(sr, frame, constant):
    """Silero's voice-activity detector chooses its 16 kHz or 8 kHz sub-graph with an If on `sr`: built for
    16 kHz frames with `sr` an input, the 8 kHz branch cannot take them and fails only if chosen; with `sr`
    fixed at build time the If is gone. Several chunks in a row, the state carried, as a stream runs it."""
    shapes = {"input": (1, frame), "state": (2, 1, 128)}
    config = braze.BuilderConfig(shapes=shapes, constants={"sr": sr} if constant else {}, progress=False)
    engine = braze.Runtime().load(braze.Builder("cpu").build(str(VAD), config).serialize())
    assert ("If" in {n.op for n in engine.graph.nodes}) != constant
    ctx = engine.create_execution_context()
    session = ort.InferenceSession(str(VAD), providers=["CPUExecutionProvider"])
    rng = np.random.RandomState(0)
    state = ort_state = np.zeros((2, 1, 128), np.float32)
    for _ in range(4):
        chunk = (rng.randn(1, frame) * rng.uniform(0.01, 0.5)).astype(np.float32)
        feeds = {"input": chunk, "state": state} | ({} if constant else {"sr": np.array(sr)})
        got = ctx.infer(feeds)
        want, ort_state = session.run(None, {"input": chunk, "state": ort_state, "sr": np.array(sr)})
        assert_close(got["output"], want, rtol=1e-4, atol=1e-5)
        assert_close(got["stateN"], ort_state, rtol=1e-4, atol=1e-5)
        state = got["stateN"]
    if not constant:
        with pytest.raises(braze.errors.ExecutionError, match=r"layer 'If_0' \(If.*chose its else branch"):
            ctx.infer({"input": chunk, "state": state, "sr": np.array(8000)})


# -- Loop ------------------------------------------------------------------------------------------

def _loop_body(extra_nodes=(), cond: str = "cond_in") -> onnx.GraphProto:
    """acc_out = acc_in * decay + x[i % 2] (x read from the main graph); scan output acc_out."""
    nodes = [oh.make_node("Mod", ["i", "two"], ["k"]),
             oh.make_node("Gather", ["x", "k"], ["row"], axis=0),
             oh.make_node("Mul", ["acc_in", "decay"], ["scaled"]),
             oh.make_node("Add", ["scaled", "row"], ["acc_out"]),
             oh.make_node("Identity", ["acc_out"], ["scan"]), *extra_nodes]
    if cond == "cond_in":
        nodes.append(oh.make_node("Identity", ["cond_in"], ["cond_out"]))
    return oh.make_graph(nodes, "body", [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, [3])],
                         [vi("cond_out", B, []), vi("acc_out", F, [3]), vi("scan", F, [3])],
                         [const("two", 2, np.int64)])


def _loop_model(m: str = "M", cond: str = "", body: onnx.GraphProto | None = None, inits=()) -> onnx.ModelProto:
    nodes = [oh.make_node("Loop", [m, cond, "acc0"], ["acc", "scans"], name="loop", body=body or _loop_body())]
    inputs = [vi("x", F, [2, 3]), vi("acc0", F, [3]), vi("decay", F, [])]
    inputs += [vi(n, t, []) for n, t in ((m, I64), (cond, B)) if n and n not in {i.name for i in inits}]
    return model_of(nodes, inputs, [vi("acc", F, [3]), vi("scans", F, ["N", 3])], inits)


@pytest.mark.parametrize("trips", [0, 1, 5])
def test_loop_carried_values_and_scan_outputs(trips):
    compare(_loop_model(), {"x": rand(2, 3), "acc0": rand(3), "decay": np.array(0.5, np.float32),
                            "M": np.array(trips)})


def test_loop_trip_count_from_an_input_is_a_run_time_shape():
    engine = build(_loop_model())
    assert engine.outputs[1].shape == (None, 3)
    ctx = engine.create_execution_context()
    feeds = {"x": rand(2, 3), "acc0": rand(3), "decay": np.array(0.5, np.float32)}
    assert [ctx.infer({**feeds, "M": np.array(n)})["scans"].shape for n in (3, 0, 2)] == [(3, 3), (0, 3), (2, 3)]


def test_loop_of_a_known_trip_count_has_static_shapes():
    engine = build(_loop_model(inits=[const("M", 4, np.int64)]))
    assert engine.outputs[1].shape == (4, 3)
    assert "scans" in engine.plan.memory.offsets


def test_loop_stops_on_its_condition():
    """No trip count: the body's condition (acc still below 5) ends the loop."""
    stop = [oh.make_node("ReduceSum", ["acc_out"], ["total"], keepdims=0),
            oh.make_node("Less", ["total", "five"], ["cond_out"])]
    body = _loop_body(stop, cond="computed")
    body.initializer.append(const("five", 5.0))
    model = _loop_model(m="", cond="c", body=body)
    for start in (True, False):
        compare(model, {"x": rand(2, 3, low=0.1, high=1.0), "acc0": rand(3), "decay": np.array(0.9, np.float32),
                        "c": np.array(start)})


def test_loop_whose_inputs_are_known_folds():
    model = _loop_model(inits=[const("M", 3, np.int64), const("acc0", [1.0, 2.0, 3.0]), const("decay", 0.5),
                               const("x", [[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]])])
    del model.graph.input[:]
    engine = build(model)
    assert engine.graph.nodes == [] and all(t.is_constant for t in engine.graph.outputs)
    compare(model, {})


def test_loop_carried_value_that_grows():
    """A carried value whose shape changes every trip: its dims become unknown."""
    body = oh.make_graph([oh.make_node("Concat", ["v_in", "x"], ["v_out"], axis=0),
                          oh.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
                         [vi("i", I64, []), vi("cond_in", B, []), vi("v_in", F, [None, 3])],
                         [vi("cond_out", B, []), vi("v_out", F, [None, 3])])
    model = model_of([oh.make_node("Loop", ["M", "", "v0"], ["v"], name="loop", body=body)],
                     [vi("M", I64, []), vi("v0", F, [1, 3]), vi("x", F, [2, 3])], [vi("v", F, [None, 3])])
    assert not build(model).graph.outputs[0].is_static
    compare(model, {"M": np.array(3), "v0": rand(1, 3), "x": rand(2, 3)})


def test_nested_subgraphs_read_every_enclosing_scope():
    """A Loop whose body holds an If; the If's branches read the Loop body's input and the main graph's
    tensors, one of them through an Identity the optimizer removes (the branches follow)."""
    then = branch("then", [oh.make_node("Add", ["acc_in", "xi"], ["t"])], "t")
    other = branch("else", [oh.make_node("Mul", ["acc_in", "half"], ["e"])], "e")
    body = oh.make_graph([
        oh.make_node("Mod", ["i", "two"], ["r"]),
        oh.make_node("Equal", ["r", "zero"], ["even"]),
        oh.make_node("If", ["even"], ["acc_out"], name="inner_if", then_branch=then, else_branch=other),
        oh.make_node("Identity", ["acc_out"], ["scan"]),
        oh.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, None)],
        [vi("cond_out", B, []), vi("acc_out", F, None), vi("scan", F, None)],
        [const("two", 2, np.int64), const("zero", 0, np.int64)])
    nodes = [oh.make_node("Identity", ["x"], ["xi"], name="id"),
             oh.make_node("Loop", ["M", "", "acc0"], ["acc", "scans"], body=body, name="loop")]
    model = model_of(nodes, [vi("x", F, [2, 3]), vi("M", I64, []), vi("acc0", F, [2, 3])],
                     [vi("acc", F, [2, 3]), vi("scans", F, ["N", 2, 3])], [const("half", 0.5)])
    engine = build(model)
    loop = engine.graph.node_by_name("loop")
    assert [t.name for t in loop.inputs if t is not None] == ["M", "acc0", "half", "x"]  # the Identity went
    assert all(n.name != "id" for n in engine.graph.nodes)
    assert "half#1" not in engine.plan.to_json()[1]  # a constant read by a body is stored once
    for trips in (1, 5):
        compare(model, {"x": rand(2, 3), "M": np.array(trips), "acc0": rand(2, 3)})
    # NOTE: with no trip, onnxruntime gives scans the shape [0]; braze knows the body's [2,3] and gives [0,2,3]
    assert engine.create_execution_context().infer({"x": rand(2, 3), "M": np.array(0), "acc0": rand(2, 3)})[
        "scans"].shape == (0, 2, 3)


def test_loop_body_of_the_wrong_arity_names_the_node():
    body = oh.make_graph([oh.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
                         [vi("i", I64, []), vi("cond_in", B, [])], [vi("cond_out", B, [])])
    model = model_of([oh.make_node("Loop", ["M", "", "v0"], ["v"], name="bad_loop", body=body)],
                     [vi("M", I64, []), vi("v0", F, [3])], [vi("v", F, [3])])
    with pytest.raises(braze.BrazeError, match="'bad_loop' \\(Loop\\).*1 loop-carried"):
        build(model)


def test_loop_scan_output_that_changes_shape_names_the_layer():
    body = oh.make_graph([oh.make_node("Unsqueeze", ["i", "axes"], ["i1"]),
                          oh.make_node("Slice", ["x", "start", "i1"], ["part"]),
                          oh.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
                         [vi("i", I64, []), vi("cond_in", B, [])], [vi("cond_out", B, []), vi("part", F, ["n"])],
                         [const("axes", [0], np.int64), const("start", [0], np.int64)])
    model = model_of([oh.make_node("Loop", ["M", ""], ["parts"], name="ragged", body=body)],
                     [vi("M", I64, []), vi("x", F, [4])], [vi("parts", F, ["m", "n"])])
    ctx = build(model).create_execution_context()
    with pytest.raises(braze.BrazeError, match="layer 'ragged' \\(Loop.*changes shape"):
        ctx.infer({"M": np.array(3), "x": rand(4)})


# -- Scan ------------------------------------------------------------------------------------------

def _scan_model(in_axes, in_dirs, out_axes, out_dirs) -> onnx.ModelProto:
    """Two states (a running sum and a running max), two scan inputs, a read of the main graph's w."""
    body = oh.make_graph([oh.make_node("Mul", ["a", "w"], ["aw"]),
                          oh.make_node("Add", ["sum_in", "aw"], ["s1"]),
                          oh.make_node("Add", ["s1", "b"], ["sum_out"]),
                          oh.make_node("Max", ["max_in", "a"], ["max_out"]),
                          oh.make_node("Sub", ["sum_out", "max_out"], ["diff"]),
                          oh.make_node("Identity", ["sum_out"], ["sums"])], "body",
                         [vi("sum_in", F, [4]), vi("max_in", F, [4]), vi("a", F, [4]), vi("b", F, [4])],
                         [vi("sum_out", F, [4]), vi("max_out", F, [4]), vi("diff", F, [4]), vi("sums", F, [4])])
    attrs = {"num_scan_inputs": 2, "scan_input_axes": in_axes, "scan_input_directions": in_dirs,
             "scan_output_axes": out_axes, "scan_output_directions": out_dirs}
    a_shape = [5, 4] if in_axes[0] == 0 else [4, 5]
    b_shape = [5, 4] if in_axes[1] in (0, -2) else [4, 5]
    node = oh.make_node("Scan", ["s0", "m0", "xa", "xb"], ["s", "m", "d", "ss"], name="scan", body=body, **attrs)
    return model_of([node], [vi("s0", F, [4]), vi("m0", F, [4]), vi("xa", F, a_shape), vi("xb", F, b_shape),
                             vi("w", F, [4])],
                    [vi("s", F, [4]), vi("m", F, [4]), vi("d", F, ["p", "q"]), vi("ss", F, ["p", "q"])])


@pytest.mark.parametrize("in_axes,in_dirs,out_axes,out_dirs", [
    ([0, 0], [0, 0], [0, 0], [0, 0]),
    ([1, -2], [1, 0], [1, -1], [0, 1]),
])
def test_scan(in_axes, in_dirs, out_axes, out_dirs):
    model = _scan_model(in_axes, in_dirs, out_axes, out_dirs)
    inputs = {t.name: rand(*[d.dim_value for d in t.type.tensor_type.shape.dim], seed=i)
              for i, t in enumerate(model.graph.input)}
    compare(model, inputs)
    assert build(model).outputs[3].shape == ((5, 4) if out_axes[1] == 0 else (4, 5))


def test_scan_8_with_a_batch_and_sequence_lengths():
    body = oh.make_graph([oh.make_node("Add", ["sum_in", "x_t"], ["sum_out"]),
                          oh.make_node("Identity", ["sum_out"], ["y_t"])], "body",
                         [vi("sum_in", F, [2]), vi("x_t", F, [2])], [vi("sum_out", F, [2]), vi("y_t", F, [2])])
    node = oh.make_node("Scan", ["lens", "s0", "x"], ["s", "y"], name="scan8", body=body, num_scan_inputs=1,
                        directions=[1])
    model = model_of([node], [vi("lens", I64, [3]), vi("s0", F, [3, 2]), vi("x", F, [3, 4, 2])],
                     [vi("s", F, [3, 2]), vi("y", F, [3, 4, 2])], opset=8)
    model.ir_version = 3
    compare(model, {"lens": np.array([4, 2, 1]), "s0": rand(3, 2), "x": rand(3, 4, 2)})


def test_scan_inputs_of_different_lengths_name_the_node():
    model = _scan_model([0, 0], [0, 0], [0, 0], [0, 0])
    model.graph.input[3].type.tensor_type.shape.dim[0].dim_value = 6
    with pytest.raises(braze.BrazeError, match="'scan' \\(Scan\\).*differ in length.*5 and 6"):
        build(model)
