"""`braze compare`: the engine against onnxruntime and braze's reference, per output and per layer, from Python and
from the command line."""

import json

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest

import braze
from braze.errors import BrazeError, InputError
from braze.ir import DType
from braze.testing import tolerance
from braze.tools.cli import main
from braze.tools.compare import compare_model
from braze.tools.compare_layers import source_name
from braze.tools.compare_metrics import diff, merge

F32, I64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64


def _model(nodes, inputs, outputs, inits, name):
    model = oh.make_model(oh.make_graph(nodes, name, inputs, outputs, inits), opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def conv_relu_gemm(batch=1):
    """Conv -> Relu -> Flatten -> Gemm: logits [batch, 10]."""
    rng = np.random.default_rng(0)
    inits = [onh.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w"),
             onh.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "b"),
             onh.from_array(rng.standard_normal((10, 4 * 8 * 8)).astype(np.float32) * 0.1, "fc_w"),
             onh.from_array(rng.standard_normal(10).astype(np.float32) * 0.1, "fc_b")]
    nodes = [oh.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             oh.make_node("Relu", ["c"], ["r"], name="relu"),
             oh.make_node("Flatten", ["r"], ["f"], name="flatten"),
             oh.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1)]
    return _model(nodes, [oh.make_tensor_value_info("x", F32, [batch, 3, 8, 8])],
                  [oh.make_tensor_value_info("logits", F32, [batch, 10])], inits, "conv_relu_gemm")


def int_input_model():
    """Gather(table, ids) * x -> Relu -> y, and ArgMax(y) -> best (an integer output)."""
    table = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    nodes = [oh.make_node("Gather", ["table", "ids"], ["emb"], name="gather"),
             oh.make_node("Mul", ["emb", "x"], ["m"], name="mul"),
             oh.make_node("Relu", ["m"], ["y"], name="relu"),
             oh.make_node("ArgMax", ["y"], ["best"], name="argmax", axis=-1, keepdims=0)]
    inputs = [oh.make_tensor_value_info("ids", I64, [2, 3]), oh.make_tensor_value_info("x", F32, [2, 3, 6])]
    return _model(nodes, inputs,
                  [oh.make_tensor_value_info("y", F32, [2, 3, 6]), oh.make_tensor_value_info("best", I64, [2, 3])],
                  [onh.from_array(table, "table")], "int_input")


def multi_output_model():
    """x [2, 5] -> MatMul -> Tanh -> a [2, 7]; Sigmoid(x) -> b [2, 5]; ReduceSum over axis 1 -> s [2] (1-D)."""
    w = np.random.default_rng(2).standard_normal((5, 7)).astype(np.float32)
    nodes = [oh.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             oh.make_node("Tanh", ["h"], ["a"], name="tanh"),
             oh.make_node("Sigmoid", ["x"], ["b"], name="sigmoid"),
             oh.make_node("ReduceSum", ["x", "axes"], ["s"], name="sum", keepdims=0)]
    return _model(nodes, [oh.make_tensor_value_info("x", F32, [2, 5])],
                  [oh.make_tensor_value_info("a", F32, [2, 7]), oh.make_tensor_value_info("b", F32, [2, 5]),
                   oh.make_tensor_value_info("s", F32, [2])],
                  [onh.from_array(w, "w"), onh.from_array(np.array([1], np.int64), "axes")], "multi_output")


@pytest.fixture
def cnn_path(tmp_path):
    path = tmp_path / "cnn.onnx"
    onnx.save(conv_relu_gemm(batch="N"), path)
    return path


# -- every output against both references --------------------------------------------------------------------------

@pytest.mark.parametrize("make", [conv_relu_gemm, int_input_model, multi_output_model])
def test_fp32_engines_pass_against_onnxruntime_and_the_reference(make):
    report = compare_model(make())
    assert report.passed and report.tolerance_of == "float32" and report.tolerance == tolerance(DType.float32)
    for out in report.outputs:
        assert set(out.diffs) == {"onnxruntime", "reference"}
        for d in out.diffs.values():
            assert d.passed and d.rel_l2 <= tolerance(DType.float32).rel_l2 and d.cosine > 0.9999


def test_fp16_engine_is_held_to_fp16_tolerance():
    report = compare_model(conv_relu_gemm(batch=4), precision="fp16", samples=3)
    assert report.passed and report.tolerance_of == "float16" and report.tolerance == tolerance(DType.float16)
    d = report.outputs[0].diffs["onnxruntime"]
    # really lowered: more error than float32 allows, within float16's
    assert tolerance(DType.float32).rel_l2 < d.rel_l2 <= tolerance(DType.float16).rel_l2
    assert d.k == 5 and d.top1 == 1.0 and d.topk is not None and len(report.samples) == 3


def test_top_k_only_where_there_is_a_class_axis_and_integers_compare_exactly():
    report = compare_model(multi_output_model(), top_k=5)
    a, b, s = (o.diffs["onnxruntime"] for o in report.outputs)
    assert a.top1 is not None and a.k == 5  # [2, 7]: 7 classes > 5
    assert b.top1 is not None and b.k is None  # [2, 5]: top-1 only, 5 classes are not more than k
    assert s.top1 is None and s.k is None  # 1-D
    best = compare_model(int_input_model()).outputs[1]
    assert best.dtype == "int64" and best.diffs["onnxruntime"].bound == 0.0 and best.passed


def test_int_range_reaches_the_gather(tmp_path):
    report = compare_model(int_input_model(), int_range=(0, 3), seed=5)
    assert report.passed
    assert report.inputs[0] == {"name": "ids", "dtype": "int64", "shape": [2, 3], "source": "random integers in [0, 3]"}
    with pytest.raises(BrazeError, match="int range 2,1"):
        compare_model(int_input_model(), int_range=(2, 1))


# -- a wrong engine, per output and per layer --------------------------------------------------------------------

def _sabotage(engine, op, offset=0.5):
    """Make the first layer of `op` add `offset` to its output; returns the layer's name."""
    step = next(s for s in engine.steps if s.node.op == op)
    kernel = step.kernel

    def wrong(ins, outs):
        produced = kernel(ins, outs)
        (outs[0] if outs[0] is not None else produced[0]).add_(offset)
        return produced

    step.kernel = wrong
    return step.node.name


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_wrong_layer_fails_and_per_layer_names_it(precision):
    model = conv_relu_gemm()
    engine = braze.Builder("cpu").build(model, braze.BuilderConfig(precision=precision))
    bad = _sabotage(engine, "FusedConv")
    report = compare_model(model, engine=engine, per_layer=True)
    assert not report.passed and not report.outputs[0].diffs["onnxruntime"].passed
    jump = report.first_jump
    assert jump is not None and jump.layer == bad and jump.label == "conv + relu"
    assert report.first_out_of_tolerance is jump
    after = [layer for layer in report.layers if layer.index > jump.index and layer.error is not None]
    assert after and all(layer.out_of_tolerance and not layer.jump for layer in after)
    before = [layer for layer in report.layers if layer.index < jump.index]
    assert all(not layer.out_of_tolerance for layer in before)
    text = report.format()
    assert "<- jump" in text and f"First layer whose error jumps: #{jump.index} 'conv + relu'" in text
    assert text.splitlines()[-1] == "[E] FAILED | Mismatched outputs: ['logits']"


def test_per_layer_maps_every_layer_of_an_fp16_engine_to_onnx_names():
    report = compare_model(conv_relu_gemm(), precision="fp16", per_layer=True)
    tensors = [t for layer in report.layers for t in layer.tensors]
    assert all(t.diff is not None for t in tensors), [t for t in tensors if t.diff is None]
    names = {t.name: t.onnx_name for t in tensors}
    assert names["x_float16"] == "x" and names["logits_float16"] == "logits" and names["logits"] == "logits"
    assert report.first_jump is None and report.first_out_of_tolerance is None and report.passed


def test_a_value_beyond_float16_is_compared_as_float16s_largest():
    """A float32 mask of -3.4e38 is -65504 in an FP16 engine (lowering clamps it): no layer is blamed for it."""
    mask = np.array([0.0, np.finfo(np.float32).min, 0.0, 0.0], np.float32)
    nodes = [oh.make_node("Add", ["x", "mask"], ["masked"], name="add"),
             oh.make_node("Softmax", ["masked"], ["y"], name="softmax", axis=-1)]
    model = _model(nodes, [oh.make_tensor_value_info("x", F32, [3, 4])], [oh.make_tensor_value_info("y", F32, [3, 4])],
                   [onh.from_array(mask, "mask")], "masked_softmax")
    report = compare_model(model, precision="fp16", per_layer=True, optimization_level=0)
    assert report.passed and report.first_out_of_tolerance is None


def test_lowering_copies_map_to_the_tensor_they_were_made_from():
    known = {"x", "y", "h_float16"}
    assert source_name("y_float16", known) == "y" and source_name("y_float16_2", known) == "y"
    assert source_name("x_bfloat16_float32", known) == "x" and source_name("h_float16", known) == "h_float16"
    assert source_name("q_wide", known) is None and source_name("z_float16", known) is None


# -- metrics -----------------------------------------------------------------------------------------------------

def test_metrics_on_known_values():
    tol = tolerance(DType.float32)
    e = np.array([[1.0, 2.0, 3.0], [0.0, 5.0, -1.0]], np.float32)
    same = diff(e.copy(), e, tol)
    assert same.passed and same.rel_l2 == 0 and same.cosine == pytest.approx(1.0) and same.top1 == 1.0
    a = e.copy()
    a[0, 0] = 4.0  # row 0's argmax moves from 2 to 0
    d = diff(a, e, tol)
    assert not d.passed and d.max_abs == 3.0 and d.max_rel == 3.0 and d.top1 == 0.5
    assert d.rel_l2 == pytest.approx(3.0 / np.linalg.norm(e))
    nan = e.copy()
    nan[1, 1] = np.nan
    d = diff(nan, e, tol)
    assert not d.passed and "NaN at 1 elements" in d.nonfinite and d.error == float("inf") and d.rel_l2 == 0
    assert diff(np.where(np.isnan(nan), np.nan, nan), nan, tol).passed  # NaN where expected: fine
    d = diff(e[:1], e, tol)
    assert not d.passed and "shape (1, 3)" in d.problem
    ints = np.array([1, 2, 3])
    assert diff(ints, ints, tol).passed and not diff(ints + np.array([0, 0, 1]), ints, tol).passed


def test_merge_keeps_the_worst_sample():
    tol = tolerance(DType.float32)
    e = np.ones((2, 4), np.float32)
    diffs = [diff(e, e, tol, sample=0), diff(e * 1.5, e, tol, sample=1), diff(e, e, tol, sample=2)]
    merged = merge(diffs)
    assert not merged.passed and merged.sample == 1 and merged.rel_l2 == pytest.approx(0.5)
    assert merged.cosine == pytest.approx(1.0) and merged.top1 == 1.0


# -- inputs ------------------------------------------------------------------------------------------------------

def test_samples_from_a_folder_set_the_shapes(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(2):
        np.savez(tmp_path / f"s{i}.npz", x=rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    model = conv_relu_gemm(batch="N")
    report = compare_model(model, feeds=tmp_path)
    assert report.passed and report.samples == [str(tmp_path / "s0.npz"), str(tmp_path / "s1.npz")]
    assert report.inputs[0]["shape"] == [2, 3, 8, 8] and report.inputs[0]["source"] == "given"
    feeds = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}]
    assert compare_model(model, feeds=feeds).samples == ["sample 0"]


def test_bad_inputs_name_what_is_wrong(tmp_path):
    model = conv_relu_gemm()
    with pytest.raises(BrazeError, match=f"--data {tmp_path / 'nowhere'}: no such folder"):
        compare_model(model, feeds=tmp_path / "nowhere")
    np.savez(tmp_path / "bad.npz", x=np.zeros((1, 3, 9, 9), np.float32))
    with pytest.raises(InputError, match=r"bad.npz: input 'x' has shape \[1,3,9,9\], the engine was built for "
                                         r"\[1,3,8,8\]"):
        compare_model(model, feeds=tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float64))
    with pytest.raises(InputError, match=r"--input: unknown input\(s\) 'nope'; the model's inputs are 'x'"):
        compare_model(model, input_files={"nope": str(tmp_path / "x.npy")})
    with pytest.raises(InputError, match="input 'x' is float64, the model expects float32"):
        compare_model(model, input_files={"x": str(tmp_path / "x.npy")})
    (tmp_path / "bad.npz").unlink()
    np.save(tmp_path / "one.npy", np.zeros((2, 3, 6), np.float32))
    with pytest.raises(InputError, match="one.npy: a .npy file holds one array, but the model has 2 inputs"):
        compare_model(int_input_model(), feeds=tmp_path)
    with pytest.raises(InputError, match="sample 0: no array for input\\(s\\) 'x'"):
        compare_model(int_input_model(), feeds=[{"ids": np.zeros((2, 3), np.int64)}])
    with pytest.raises(BrazeError, match="compare against 'trt'"):
        compare_model(model, against=["trt"])


# -- the command -------------------------------------------------------------------------------------------------

def test_cli_passes_with_exit_0_and_writes_json(cnn_path, tmp_path, capsys):
    report = tmp_path / "report.json"
    argv = ["compare", str(cnn_path), "--shapes", "x:2x3x8x8", "--fp16", "--per-layer", "--json", str(report)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Output 'logits' float32[2,10]" in out and "onnxruntime" in out and "Per-layer comparison" in out
    assert out.rstrip().splitlines()[-2] == "[I] PASSED | All outputs matched | Outputs: ['logits']"
    doc = json.loads(report.read_text())
    assert doc["passed"] is True and doc["tolerance_of"] == "float16" and doc["first_jump"] is None
    assert doc["outputs"][0]["diffs"]["onnxruntime"]["passed"] is True and len(doc["layers"]) >= 3


def test_cli_fails_with_exit_1_and_names_the_layer(cnn_path, tmp_path, capsys, monkeypatch):
    import braze.engine.engine as engine_module

    real = engine_module.tactic_by_name

    class Offset:  # one tactic of one layer adds 0.5 to what it writes
        def __init__(self, tactic):
            self.tactic = tactic

        def __getattr__(self, name):
            return getattr(self.tactic, name)

        def compile(self, node, config, target):
            kernel = self.tactic.compile(node, config, target)
            if node.op != "FusedConv":
                return kernel

            def wrong(ins, outs):
                produced = kernel(ins, outs)
                outs[0].add_(0.5)
                return produced
            return wrong

    monkeypatch.setattr(engine_module, "tactic_by_name", lambda target, name: Offset(real(target, name)))
    report = tmp_path / "report.json"
    code = main(["compare", str(cnn_path), "--shapes", "x:1x3x8x8", "--per-layer", "--json", str(report)])
    assert code == 1
    out = capsys.readouterr().out
    assert "FAILED | Output 'logits' vs. onnxruntime" in out and "[E] FAILED | Mismatched outputs: ['logits']" in out
    doc = json.loads(report.read_text())
    assert doc["passed"] is False and doc["first_jump"]["label"] == "conv + relu"


def test_cli_usage_and_input_errors(cnn_path, tmp_path, capsys):
    for argv in (["--int-range", "3,1"], ["--float-range", "a,b"], ["--fp16", "--bf16"], ["--against", "trt"],
                 ["--input", "x=a.npy", "--data", str(tmp_path)], ["--top-k", "0"]):
        with pytest.raises(SystemExit) as exit_:
            main(["compare", str(cnn_path), "--shapes", "x:1x3x8x8", *argv])
        assert exit_.value.code == 2, argv
    capsys.readouterr()
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    assert main(["compare", str(cnn_path), "--shapes", "x:1x3x8x8", "--input", f"nope={tmp_path / 'x.npy'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("[E] --input: unknown input(s) 'nope'") and "Traceback" not in err
    assert main(["compare", str(cnn_path), "--data", str(tmp_path / "missing")]) == 1
    assert f"--data {tmp_path / 'missing'}: no such folder" in capsys.readouterr().err
    assert main(["compare", str(cnn_path), "--shapes", "x:1x3x8x8", "--float-range=-2,2", "--input",
                 f"x={tmp_path / 'x.npy'}"]) == 0


def test_an_int8_engine_is_held_to_the_int8_model_bound(tmp_path):
    import numpy as np

    import braze
    from braze.testing import INT8_MODEL
    from braze.tools.compare import compare_model
    from tests.conftest import tiny_cnn

    model = tiny_cnn(batch=2)
    rng = np.random.default_rng(0)
    data = [{"x": rng.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    engine = braze.Builder("cpu").build(model, braze.BuilderConfig(
        precision=braze.PrecisionPolicy({"int8"}, layers={"conv1": "int8", "fc": "int8"}),
        calibration=braze.Calibration(data=data)))
    report = compare_model(model, engine=engine, samples=2)
    assert report.passed, report.format()
    summary = report.to_dict()
    assert summary["tolerance_of"] == "int8" and summary["tolerance"]["rel_l2"] == INT8_MODEL.rel_l2
