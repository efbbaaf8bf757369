"""The `braze` command, called as users call it: build, run, inspect, demo, conformance, and its errors."""

import json

import numpy as np
import onnx
import pytest

from braze.tools.cli import main

from ..conftest import tiny_cnn


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "cnn.onnx"
    onnx.save(tiny_cnn(batch="N"), path)
    return path


def test_build_run_inspect(model_path, tmp_path, capsys):
    engine = tmp_path / "cnn.engine"
    assert main(["build", str(model_path), "-o", str(engine), "--shapes", "x:2x3x16x16"]) == 0
    out = capsys.readouterr().out
    assert "7 nodes -> 5 layers" in out and engine.stat().st_size > 0

    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    saved = tmp_path / "outs"
    assert main(["run", str(engine), "--input", f"x={tmp_path / 'x.npy'}", "--save-outputs", str(saved),
                 "--iterations", "2"]) == 0
    assert "output y [dtype=float32, shape=(2, 10)]" in capsys.readouterr().out
    import braze

    expected = braze.Runtime().load(engine).create_execution_context().infer({"x": x})["y"]
    np.testing.assert_array_equal(np.load(saved / "y.npy"), expected)

    assert main(["inspect", str(engine)]) == 0
    text = capsys.readouterr().out
    assert "conv1 + relu1" in text and "braze.FusedConv" in text and "rules fired" in text
    assert main(["inspect", str(engine), "--json"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert [layer["name"] for layer in desc["layers"]][:2] == ["conv1 + relu1", "conv2 + add"]
    assert desc["memory"]["activation_bytes"] > 0 and desc["build"]["source_nodes"] == 7


def test_run_json_with_random_inputs_and_no_optimize(model_path, capsys):
    assert main(["run", str(model_path), "--shapes", "x:1x3x16x16", "--json", "--iterations", "2",
                 "--no-optimize"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["outputs"]["y"]["shape"] == [1, 10]
    assert result["latency_ms"]["count"] == 2
    assert "building cnn.onnx" in captured.err


def test_inspect_onnx_model(model_path, capsys):
    assert main(["inspect", str(model_path)]) == 0
    text = capsys.readouterr().out
    assert "ONNX model: cnn.onnx" in text and "Conv" in text and "7 nodes" in text


def test_errors_print_one_line_and_exit_1(model_path, tmp_path, capsys):
    assert main(["build", str(model_path), "-o", str(tmp_path / "e.engine")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("[E] ") and "--shapes x:Nx3x16x16" in err and "Traceback" not in err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    assert main(["inspect", str(bad)]) == 1
    assert "not an ONNX model" in capsys.readouterr().err
    assert main(["run", str(model_path), "--shapes", "x:1x3x16x16", "--input", "x=missing.npy"]) == 1
    assert "cannot read missing.npy" in capsys.readouterr().err
    assert main(["build", str(model_path), "-o", "o.engine", "--shapes", "x=1x3"]) == 1
    assert "expected NAME:DIMS" in capsys.readouterr().err


def test_demo_on_a_small_zoo_model(capsys):
    assert main(["demo", "--model", "mobilenetv2", "--iterations", "2"]) == 0
    out = capsys.readouterr().out
    assert "saved mobilenetv2.engine" in out and "latency:" in out and "PASSED" in out


def test_conformance_subcommand_on_one_op(tmp_path, capsys):
    report = tmp_path / "relu.md"
    assert main(["conformance", "--op", "Relu", "--markdown", str(report)]) == 0
    assert "Relu" in report.read_text()
