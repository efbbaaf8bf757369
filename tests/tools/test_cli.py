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


@pytest.fixture
def engine_path(model_path, tmp_path):
    path = tmp_path / "cnn.engine"
    assert main(["build", str(model_path), "-o", str(path), "--shapes", "x:1x3x16x16"]) == 0
    return path


def _fails(argv, capsys, *fragments):
    """The command exits with 1 after one `[E]` line that holds every fragment, and no traceback."""
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("[E] ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_output_paths_are_checked_before_the_build(model_path, tmp_path, capsys, monkeypatch):
    import braze.tools.cli as cli

    monkeypatch.setattr(cli.Builder, "build", lambda *a, **k: pytest.fail("built before checking the output"))
    _fails(["build", model_path, "-o", tmp_path / "nowhere" / "m.engine", "--shapes", "x:1x3x16x16"], capsys,
           "-o ", "the folder", "nowhere does not exist")
    _fails(["build", model_path, "-o", tmp_path, "--shapes", "x:1x3x16x16"], capsys, "is a directory; give a file")
    _fails(["build", model_path, "-o", tmp_path / "m.engine", "--timing-cache", tmp_path / "no" / "cache.json",
            "--shapes", "x:1x3x16x16"], capsys, "--timing-cache", "does not exist")


def test_save_outputs_is_checked_before_running(engine_path, tmp_path, capsys, monkeypatch):
    import braze.tools.cli as cli

    monkeypatch.setattr(cli, "load_or_build", lambda *a, **k: pytest.fail("ran before checking --save-outputs"))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    _fails(["run", engine_path, "--save-outputs", a_file], capsys, "--save-outputs", "is a file, not a folder")
    _fails(["run", engine_path, "--save-outputs", a_file / "sub"], capsys, "--save-outputs", "cannot write there")


@pytest.mark.parametrize("argv, message", [
    (["run", "m.engine", "--iterations", "0"], "argument --iterations: 0 is not allowed: it must be 1 or more"),
    (["run", "m.engine", "--iterations", "-1"], "argument --iterations: -1 is not allowed"),
    (["run", "m.engine", "--iterations", "two"], "argument --iterations: 'two' is not an integer"),
    (["run", "m.engine", "--warmup", "-1"], "argument --warmup: -1 is not allowed: it must be 0 or more"),
    (["build", "m.onnx", "-o", "m.engine", "--opt-level", "-1"], "argument --opt-level: -1 is not allowed"),
    (["bench", "m.engine", "--duration", "-2"], "argument --duration: -2 is not allowed"),
    (["bench", "m.engine", "--warmup", "nan"], "argument --warmup: nan is not allowed"),
    (["demo", "--batch", "0"], "argument --batch: 0 is not allowed"),
    (["demo", "--iterations", "0"], "argument --iterations: 0 is not allowed"),
    (["run", "m.engine", "--seed", "-1"], "argument --seed: -1 is not allowed"),
    (["run", ""], "the model argument is empty"),
])
def test_numbers_out_of_range_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_engine_file_that_is_not_an_engine(tmp_path, capsys):
    fake = tmp_path / "fake.engine"
    fake.write_text("this is no engine, and no ONNX model either\n")
    for command in ("run", "inspect", "bench"):
        err = _fails([command, fake], capsys, "fake.engine: not a braze engine", "braze build")
        assert "ONNX" not in err.split("braze build")[0]
    _fails(["run", tmp_path / "missing.engine"], capsys, "no such engine file")


def test_building_an_engine_says_it_is_one(engine_path, tmp_path, capsys):
    _fails(["build", engine_path, "-o", tmp_path / "again.engine"], capsys, "is a braze engine already")


def test_input_files_that_are_not_arrays(engine_path, tmp_path, capsys, monkeypatch):
    import braze.tools.cli as cli

    text = tmp_path / "x.txt"
    text.write_text("1 2 3\n")
    monkeypatch.setattr(cli, "load_or_build", lambda *a, **k: pytest.fail("loaded the engine before the inputs"))
    err = _fails(["run", engine_path, "--input", f"x={text}"], capsys, "is not a .npy or .npz array file",
                 "numpy.save")
    assert "allow_pickle" not in err
    objects = tmp_path / "o.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    err = _fails(["run", engine_path, "--input", f"x={objects}"], capsys, "holds Python objects")
    assert "allow_pickle" not in err
    several = tmp_path / "s.npz"
    np.savez(several, a=np.zeros(2), b=np.zeros(3))
    _fails(["run", engine_path, "--input", f"x={several}"], capsys, "holds 2 arrays (a, b) and none named 'x'")
    _fails(["run", engine_path, "--input", f"x={tmp_path}"], capsys, "cannot read")
    not_a_zip = tmp_path / "z.npz"
    not_a_zip.write_bytes(b"PK\x03\x04 but nothing of a zip file")
    _fails(["run", engine_path, "--input", f"x={not_a_zip}"], capsys, "is not a readable array file")
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    _fails(["run", engine_path, "--input", f"x={tmp_path / 'x.npy'}", "--input", f"x={tmp_path / 'x.npy'}"], capsys,
           "input 'x' is given twice")


def test_an_npz_input_by_name_or_alone(engine_path, tmp_path, capsys):
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "named.npz", x=x, other=np.zeros(2))
    np.savez(tmp_path / "alone.npz", whatever=x)
    for file in ("named.npz", "alone.npz"):
        out = tmp_path / file.replace(".npz", "")
        assert main(["run", str(engine_path), "--input", f"x={tmp_path / file}", "--iterations", "1",
                     "--save-outputs", str(out)]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "named" / "y.npy"), np.load(tmp_path / "alone" / "y.npy"))


def test_shapes_take_x_or_commas_and_errors_show_the_whole_spec(model_path, tmp_path, capsys):
    from braze.tools.common import parse_shapes

    assert parse_shapes(["x:1,3,16,16"]) == parse_shapes(["x:1x3x16x16"]) == {"x": (1, 3, 16, 16)}
    assert parse_shapes(["a:1x3,b:2,4", "c:5"]) == {"a": (1, 3), "b": (2, 4), "c": (5,)}
    assert parse_shapes(["input:0:1,3"]) == {"input:0": (1, 3)}
    assert main(["build", str(model_path), "-o", str(tmp_path / "c.engine"), "--shapes", "x:2,3,16,16"]) == 0
    capsys.readouterr()
    _fails(["build", model_path, "-o", tmp_path / "c.engine", "--shapes", "input:1,3,224,224"], capsys,
           "shapes given for 'input', which the model does not have", "inputs are 'x'")
    _fails(["build", model_path, "-o", tmp_path / "c.engine", "--shapes", "x:1,3,N,16"], capsys,
           "--shapes 'x:1,3,N,16': dim 'N' of 'x' is not a non-negative integer")
    _fails(["build", model_path, "-o", tmp_path / "c.engine", "--shapes", "1,3,16,16"], capsys,
           "--shapes '1,3,16,16': expected NAME:DIMS")
    _fails(["build", model_path, "-o", tmp_path / "c.engine", "--shapes", "x:1x3,x:2x3"], capsys,
           "input 'x' is given twice")


@pytest.mark.parametrize("device", ["gpu", "mps", "cuda:x", "tpu:0"])
def test_a_device_braze_does_not_know(model_path, tmp_path, capsys, device):
    err = _fails(["build", model_path, "-o", tmp_path / "c.engine", "--device", device], capsys,
                 f"{device!r}", "must be 'cpu' or 'cuda' (or 'cuda:N'")
    assert "xla" not in err and "mtia" not in err


def test_builder_refuses_an_unknown_device_by_name():
    import braze
    from braze.errors import BrazeError

    with pytest.raises(BrazeError, match="'gpu': the device must be 'cpu' or 'cuda' \\(or 'cuda:N'") as info:
        braze.Builder("gpu")
    assert "xla" not in str(info.value)


@pytest.mark.parametrize("config, message", [
    ({"precision": "int4"}, "precision: 'int4' is not a precision; choose from fp32, tf32, fp16, bf16, int8"),
    ({"precision": "fp16,bf16"}, "fp16 and bf16 cannot both be allowed"),
    ({"optimization_level": -1}, "optimization_level -1: an integer, 0"),
])
def test_builder_checks_its_config_before_reading_the_model(config, message, monkeypatch):
    import braze
    import braze.frontends.onnx as frontend
    from braze.errors import BrazeError

    monkeypatch.setattr(frontend, "parse_onnx", lambda *a, **k: pytest.fail("read the model first"))
    with pytest.raises(BrazeError, match=message):
        braze.Builder("cpu").build("model.onnx", braze.BuilderConfig(**config))


def test_json_output_is_standard_json_with_nan_outputs(engine_path, tmp_path, capsys):
    np.save(tmp_path / "nan.npy", np.full((1, 3, 16, 16), np.nan, np.float32))
    assert main(["run", str(engine_path), "--input", f"x={tmp_path / 'nan.npy'}", "--iterations", "1", "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and json.loads(out)["outputs"]["y"]["mean"] is None


def test_run_shows_a_live_count_on_a_terminal_and_nothing_in_a_pipe(engine_path, capsys, monkeypatch):
    assert main(["run", str(engine_path), "--iterations", "3"]) == 0
    assert "timed runs" not in capsys.readouterr().err  # pytest's stderr is no terminal
    assert main(["run", str(engine_path), "--iterations", "3", "--progress"]) == 0
    err = capsys.readouterr().err
    assert "\r[I] timed runs: 3/3\n" in err
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert main(["run", str(engine_path), "--iterations", "3"]) == 0
    assert "\r[I] timed runs: 3/3\n" in capsys.readouterr().err
    assert main(["run", str(engine_path), "--iterations", "3", "--no-progress"]) == 0
    assert "timed runs" not in capsys.readouterr().err


def test_building_a_zoo_model_says_it_is_exporting_first(tmp_path, capsys, monkeypatch):
    import braze.frontends.onnx as frontend
    from braze.errors import ModelError

    def stop(model, *args, **kwargs):
        raise ModelError("stopped here by the test")

    monkeypatch.setattr(frontend, "parse_onnx", stop)
    assert main(["build", "zoo:mobilenetv2", "-o", str(tmp_path / "m.engine")]) == 1
    captured = capsys.readouterr()
    assert "exporting zoo:mobilenetv2 to ONNX" in captured.out and "stopped here" in captured.err
