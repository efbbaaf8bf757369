"""The precision and INT8 options of the `braze` command (build, run, bench, compare) and what `inspect` shows of
them: calibration into a cache and reuse of it, --fp16 --int8, pins, and every bad option named."""

import argparse
import json

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest

from braze.precision import Precision
from braze.tools.cli import main
from braze.tools.common import add_precision_options, precision_from_args


def _model() -> onnx.ModelProto:
    """Conv(16 -> 16) -> Relu -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> Softmax: two convolutions
    INT8 takes (16 input channels each) and a classifier the recipe keeps in float."""
    rng = np.random.default_rng(0)
    inits = [onh.from_array(rng.standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1, "w1"),
             onh.from_array(rng.standard_normal(16).astype(np.float32) * 0.1, "b1"),
             onh.from_array(rng.standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1, "w2"),
             onh.from_array(rng.standard_normal((10, 16)).astype(np.float32) * 0.3, "fc_w"),
             onh.from_array(rng.standard_normal(10).astype(np.float32) * 0.1, "fc_b")]
    nodes = [oh.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             oh.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             oh.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             oh.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             oh.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
             oh.make_node("Flatten", ["g"], ["f"], name="flatten"),
             oh.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
             oh.make_node("Softmax", ["logits"], ["y"], name="softmax")]
    graph = oh.make_graph(nodes, "two_convs", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16, 8, 8])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The model, a folder of 4 calibration samples, and an INT8 engine built from them with its cache written."""
    root = tmp_path_factory.mktemp("int8")
    onnx.save(_model(), root / "model.onnx")
    (root / "calib").mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        np.save(root / "calib" / f"sample{i}.npy", rng.standard_normal((1, 16, 8, 8)).astype(np.float32))
    argv = ["build", root / "model.onnx", "-o", root / "calibrated.engine", "--int8", "--calib", root / "calib",
            "--calib-cache", root / "model.calib.json"]
    assert main([str(a) for a in argv]) == 0
    return root


def _inspect(engine, capsys) -> dict:
    capsys.readouterr()
    assert main(["inspect", str(engine), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _layer(desc: dict, source: str) -> dict:
    return next(layer for layer in desc["layers"] if source in layer["name"].split(" + "))


def test_calibrate_into_a_cache_then_build_from_the_cache_alone(files, tmp_path, capsys):
    cache = json.loads((files / "model.calib.json").read_text())
    assert cache["scales"] and all(s > 0 for s in cache["scales"].values())
    engine = tmp_path / "cached.engine"
    assert main(["build", str(files / "model.onnx"), "-o", str(engine), "--int8", "--calib-cache",
                 str(files / "model.calib.json")]) == 0
    assert "calibrating" not in capsys.readouterr().out
    calibrated, cached = _inspect(files / "calibrated.engine", capsys), _inspect(engine, capsys)
    assert calibrated["calibration"]["source"].startswith("calibrated on 4 samples")
    assert cached["calibration"]["source"].startswith(f"cache {files / 'model.calib.json'}")
    assert cached["calibration"]["data_digest"] == calibrated["calibration"]["data_digest"] == cache["data_digest"]
    assert cached["precision"] == "fp32+int8"
    for desc in (calibrated, cached):
        for source in ("conv1", "conv2"):
            layer = _layer(desc, source)
            q = layer["quantization"]
            assert layer["precision"] == "int8" and layer["op"] == "braze.QConv", layer
            assert q["input_scale"] > 0 and q["input_zero_point"] == 0
            assert 0 < q["weight_scale"]["min"] < q["weight_scale"]["max"] and q["weight_scale"]["channels"] == 16
        assert _layer(desc, "conv1")["quantization"]["output_dtype"] == "int8"  # requantized for conv2
        fc = _layer(desc, "fc")
        assert fc["precision"] == "fp32" and fc["kept_in_float"] == "last layer before an output"
        [kept] = desc["kept_in_float"]
        assert kept["layer"] == fc["index"] and kept["reason"] == "last layer before an output"
        assert desc["unfused_qdq"] == [] and desc["precision_counts"]["int8"] >= 2


def test_inspect_text_shows_policy_calibration_scales_and_reasons(files, capsys):
    assert main(["inspect", str(files / "calibrated.engine")]) == 0
    text = capsys.readouterr().out
    assert "precision: fp32+int8" in text and "calibration: calibrated on 4 samples" in text and "data digest" in text
    assert "INT8 Layer(s)" in text and "weight scale" in text and "over 16 channels" in text
    assert "kept in float" in text and "fc: last layer before an output" in text
    assert "---- Layers per precision ----" in text


def test_fp16_int8_chooses_per_layer_and_pins_hold(files, tmp_path, capsys):
    engine = tmp_path / "mixed.engine"
    assert main(["build", str(files / "model.onnx"), "-o", str(engine), "--fp16", "--int8",
                 "--calib-cache", str(files / "model.calib.json"), "--layer-precision", "conv2:fp32",
                 "--op-precision", "Softmax:fp32"]) == 0
    desc = _inspect(engine, capsys)
    assert desc["precision"] == "fp32+fp16+int8 (pinned: Softmax:fp32, conv2:fp32)"
    assert _layer(desc, "conv1")["precision"] == "int8" and _layer(desc, "fc")["precision"] == "fp16"
    conv2, softmax = _layer(desc, "conv2"), _layer(desc, "softmax")
    assert (conv2["precision"], conv2["pinned"], conv2["kept_in_float"]) == ("fp32", "fp32", "pinned to fp32")
    assert (softmax["precision"], softmax["pinned"]) == ("fp32", "fp32")
    assert {"int8", "fp16", "fp32"} <= set(desc["precision_counts"])
    assert main(["inspect", str(engine)]) == 0
    assert "fp32 (pinned)" in capsys.readouterr().out


def test_a_pin_to_int8_overrides_the_recipe(files, tmp_path, capsys):
    engine = tmp_path / "all.engine"
    assert main(["build", str(files / "model.onnx"), "-o", str(engine), "--int8", "--calib", str(files / "calib"),
                 "--calibrator", "minmax", "--calib-samples", "2", "--layer-precision", "fc:int8"]) == 0
    assert "calibrating 3 tensors on 2 samples (minmax" in capsys.readouterr().out
    desc = _inspect(engine, capsys)
    fc = _layer(desc, "fc")
    assert (fc["precision"], fc["op"], fc["pinned"]) == ("int8", "braze.QGemm", "int8")
    assert desc["kept_in_float"] == []


def test_a_pin_that_matches_no_layer_is_warned_about(files, tmp_path, capsys):
    assert main(["build", str(files / "model.onnx"), "-o", str(tmp_path / "e.engine"),
                 "--layer-precision", "conv9:fp32", "--op-precision", "Sofmax:fp32"]) == 0
    out = capsys.readouterr().out
    assert "warning: --layer-precision conv9:fp32 pins no layer" in out
    assert "warning: --op-precision Sofmax:fp32 pins no layer" in out


def test_run_bench_and_compare_build_with_the_same_options(files, tmp_path, capsys):
    cache = str(files / "model.calib.json")
    assert main(["run", str(files / "model.onnx"), "--fp16", "--int8", "--calib-cache", cache, "--iterations", "1",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["outputs"]["y"]["shape"] == [1, 10] and "fp32+fp16+int8" in captured.err
    assert main(["bench", str(files / "model.onnx"), "--int8", "--calib-cache", cache, "--warmup", "0",
                 "--duration", "0.05"]) == 0
    assert "(fp32+int8)" in capsys.readouterr().out
    report = tmp_path / "report.json"
    main(["compare", str(files / "model.onnx"), "--int8", "--calib", str(files / "calib"), "--data",
          str(files / "calib"), "--against", "reference", "--json", str(report)])
    doc = json.loads(report.read_text())
    assert doc["precision"] == "fp32+int8" and len(doc["samples"]) == 4
    assert "int8: calibrating" in capsys.readouterr().out


def test_precision_options_given_to_an_engine_are_named_as_ignored(files, capsys):
    assert main(["run", str(files / "calibrated.engine"), "--fp16", "--calib-samples", "3", "--iterations", "1"]) == 0
    assert "warning: --fp16, --calib-samples ignored" in capsys.readouterr().out


def _parse(*argv: str):
    parser = argparse.ArgumentParser()
    add_precision_options(parser)
    return precision_from_args(parser.parse_args(argv))


def test_options_make_one_policy_and_calibration(tmp_path):
    policy, calibration = _parse("--fp16", "--tf32", "--precision", "int8", "--layer-precision", "a:fp32,b:int8",
                                 "--layer-precision", "c:fp16", "--op-precision", "Softmax:fp32")
    assert policy.allowed == {Precision.FP32, Precision.FP16, Precision.INT8, Precision.TF32}
    assert policy.layers == {"a": Precision.FP32, "b": Precision.INT8, "c": Precision.FP16}
    assert policy.op_types == {"Softmax": Precision.FP32} and calibration is None
    assert _parse("--layer-precision", "/blocks.0/Conv:0:fp32")[0].layers == {"/blocks.0/Conv:0": Precision.FP32}
    (tmp_path / "s.npy").write_bytes(b"")
    _, calibration = _parse("--int8", "--calib", str(tmp_path), "--calibrator", "percentile", "--percentile", "99.9",
                            "--calib-samples", "8", "--calib-cache", str(tmp_path / "c.json"))
    assert (calibration.data, calibration.cache) == (str(tmp_path), str(tmp_path / "c.json"))
    assert (calibration.calibrator, calibration.percentile, calibration.limit) == ("percentile", 99.9, 8)


@pytest.mark.parametrize("argv, fragment", [
    (["--precision", "int4"], "argument --precision: 'int4': 'int4' is not a precision; choose from fp32"),
    (["--layer-precision", "conv1"], "argument --layer-precision: 'conv1': write NAME:PRECISION"),
    (["--layer-precision", "conv1:int4"], "argument --layer-precision: 'conv1:int4': 'int4' is not a precision"),
    (["--op-precision", ":fp32"], "argument --op-precision: ':fp32': write NAME:PRECISION"),
    (["--calibrator", "kl"], "argument --calibrator: invalid choice: 'kl'"),
    (["--percentile", "120"], "argument --percentile: '120': a percentile above 0 and at most 100"),
    (["--calib-samples", "0"], "argument --calib-samples: 0 is not allowed"),
    (["--fp16", "--bf16"], "argument --bf16: not allowed with argument --fp16"),
])
def test_a_malformed_option_is_a_usage_error_naming_it(files, tmp_path, capsys, argv, fragment):
    with pytest.raises(SystemExit) as exit_:
        main(["build", str(files / "model.onnx"), "-o", str(tmp_path / "e.engine"), *argv])
    assert exit_.value.code == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("argv, fragment", [
    (["--int8", "--calib", "{tmp}/missing"], "--calib {tmp}/missing: no such folder"),
    (["--int8", "--calib", "{tmp}"], "--calib {tmp}: the folder holds no .npy or .npz files"),
    (["--int8", "--calib-cache", "{tmp}/none.json"], "--calib-cache {tmp}/none.json: no such file; calibrate first"),
    (["--int8", "--calib", "{files}/calib", "--calib-cache", "{tmp}/no/c.json"],
     "--calib-cache {tmp}/no/c.json: the folder {tmp}/no does not exist"),
    (["--calib", "{files}/calib"], "--calib is for INT8 calibration, which this build does not allow: add --int8"),
    (["--int8", "--calibrator", "minmax", "--percentile", "99"], "--percentile 99 applies to --calibrator percentile"),
    (["--layer-precision", "conv1:fp16"], "--layer-precision conv1:fp16: layer 'conv1' is pinned to fp16, which the "
                                          "build does not allow"),
    (["--int8", "--layer-precision", "conv1:fp32", "--layer-precision", "conv1:int8"],
     "--layer-precision conv1:int8: layer 'conv1' is pinned twice, to fp32 and int8"),
    (["--op-precision", "Conv:tf32", "--tf32"], "--op-precision Conv:tf32: op type 'Conv' is pinned to tf32, which is "
                                                "not a layer precision"),
    (["--fp16", "--precision", "bf16"], "--fp16 with --precision bf16: fp16 and bf16 cannot both be allowed"),
    (["--int8"], "int8 needs calibration data or a calibration cache: pass --calib DIR"),
])
def test_a_wrong_option_is_one_error_line_naming_it(files, tmp_path, capsys, argv, fragment):
    argv = [a.format(tmp=tmp_path, files=files) for a in argv]
    assert main(["build", str(files / "model.onnx"), "-o", str(tmp_path / "e.engine"), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("[E] ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment.format(tmp=tmp_path, files=files) in err, err
    assert not (tmp_path / "e.engine").exists()


def test_the_accuracy_budget_reaches_the_builder(files, tmp_path, capsys):
    # NOTE: the builder refuses a budget it cannot check (no samples to hold out) before any long work
    assert main(["build", str(files / "model.onnx"), "-o", str(tmp_path / "e.engine"), "--int8", "--calib-cache",
                 str(files / "model.calib.json"), "--accuracy-budget", "top1=0.99"]) == 1
    err = capsys.readouterr().err
    assert "accuracy budget top1" in err and "--calib DIR" in err, err


def test_inspect_lists_a_qdq_pair_no_rule_fused(tmp_path, capsys):
    inits = [onh.from_array(np.array(0.05, np.float32), "s"), onh.from_array(np.array(0, np.int8), "z")]
    nodes = [oh.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             oh.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="dq"),
             oh.make_node("Sigmoid", ["d"], ["y"], name="sigmoid")]
    graph = oh.make_graph(nodes, "qdq", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 8])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 8])], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "qdq.onnx")
    assert main(["build", str(tmp_path / "qdq.onnx"), "-o", str(tmp_path / "qdq.engine")]) == 0
    desc = _inspect(tmp_path / "qdq.engine", capsys)
    assert desc["unfused_qdq"] == [{"layers": [0, 1], "names": ["q", "dq"], "tensor": "x"}]
    assert desc["layers"][0]["quantization"] == {"scale": pytest.approx(0.05), "zero_point": 0}
    assert desc["calibration"] is None and desc["precision_counts"] == {"int8": 2, "fp32": 1}
    assert main(["inspect", str(tmp_path / "qdq.engine")]) == 0
    assert "1 unfused Q/DQ pair(s) (run in float with rounding kept)" in capsys.readouterr().out
