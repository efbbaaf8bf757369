"""The conformance runner on hand-made cases: each status, isolation, the time limit, the report, the CLI."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import onnx
import onnx.helper as oh
import pytest
import torch
from onnx.backend.test.case.test_case import TestCase

from braze.tools import conformance
from braze.tools.conformance import Report, compare, run_case, run_suite, to_markdown, to_text


def relu_case(name: str = "test_relu_like", *, expected=None, declared=(2, 3), given=(2, 3),
              op: str = "Relu", domain: str = "") -> TestCase:
    x = np.linspace(-1, 1, int(np.prod(given)), dtype=np.float32).reshape(given)
    y = np.maximum(x, 0) if expected is None else expected
    node = oh.make_node(op, ["x"], ["y"], domain=domain)
    graph = oh.make_graph([node], name, [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, declared)],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, declared)])
    opsets = [oh.make_opsetid("", 17)] + ([oh.make_opsetid(domain, 1)] if domain else [])
    model = oh.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return TestCase(name, name, None, None, model, [([x], [y])], "node", 1e-3, 1e-7)


def two_op_case() -> TestCase:
    x = np.array([[-1.0, 2.0]], np.float32)
    nodes = [oh.make_node("Relu", ["x"], ["r"]), oh.make_node("Neg", ["r"], ["y"])]
    graph = oh.make_graph(nodes, "two", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    return TestCase("test_two", "test_two", None, None, model, [([x], [-np.maximum(x, 0)])], "node", 1e-3, 1e-7)


def test_pass():
    result = run_case(relu_case())
    assert (result.status, result.stage, result.reason, result.ops) == ("pass", "done", "", ["Relu"])


def test_wrong_values_dtype_and_shape_fail():
    wrong = run_case(relu_case(expected=np.ones((2, 3), np.float32)))
    assert wrong.status == "fail" and "elements differ" in wrong.reason and wrong.stage == "compare"
    assert "dtype float32 != expected float64" in run_case(relu_case(expected=np.zeros((2, 3)))).reason
    assert "shape (2, 3) != expected (6,)" in run_case(relu_case(expected=np.zeros(6, np.float32))).reason


def test_unsupported_op():
    result = run_case(relu_case(op="Frobnicate", domain="com.example"))
    assert result.status == "unsupported" and result.stage == "parse"
    assert "com.example.Frobnicate" in result.reason and "\n" not in result.reason
    assert result.ops == ["com.example.Frobnicate"]


def test_clean_braze_error():
    result = run_case(relu_case(declared=(2, 3), given=(3, 2)))
    assert result.status == "error" and result.stage == "build" and result.reason.startswith("ShapeError:")


class ExplodingRuntime:
    def load(self, data):
        raise RuntimeError("boom")


def test_crash_is_contained_and_located(monkeypatch):
    monkeypatch.setattr(conformance, "Runtime", ExplodingRuntime)
    report = run_suite([relu_case("test_a"), relu_case("test_b")])
    assert [(c.name, c.status, c.stage, c.reason) for c in report.cases] == [
        ("test_a", "crash", "load", "RuntimeError: boom"), ("test_b", "crash", "load", "RuntimeError: boom")]
    assert "test_runner.py" in report.cases[0].where


def test_time_limit_is_a_crash_even_inside_a_kernel(monkeypatch):
    relu = torch.relu

    def slow_relu(x):
        if x.device.type != "meta":
            time.sleep(5)
        return relu(x)

    monkeypatch.setattr(torch, "relu", slow_relu)
    started = time.perf_counter()
    result = run_case(relu_case(), timeout=0.3)
    assert time.perf_counter() - started < 3
    assert (result.status, result.stage) == ("crash", "infer")
    assert "did not finish within 0.3 s" in result.reason


def test_compare_sequences_and_low_precision():
    a = np.ones(3, np.float32)
    assert compare([a, a], [a, a], 1e-3, 1e-7) is None
    assert "expected a sequence of 2 tensors" in compare(a, [a, a], 1e-3, 1e-7)
    assert "item 1" in compare([a, a], [a, a + 1], 1e-3, 1e-7)
    bf16 = np.dtype("bfloat16")
    assert compare(np.array([1.0, 2.0], bf16), np.array([1.0, 2.01], bf16), 1e-3, 1e-7) is None
    assert compare(np.array([1.0], bf16), np.array([1.5], bf16), 1e-3, 1e-7) is not None


def test_report_counts_a_case_for_each_op_type():
    report = run_suite([two_op_case(), relu_case(), relu_case("test_bad", expected=np.zeros((2, 3), np.float32))])
    assert report.totals() == {"cases": 3, "pass": 2, "fail": 1, "unsupported": 0, "error": 0, "crash": 0}
    ops = report.by_op()
    assert ops["Relu"] == {"cases": 3, "pass": 2, "fail": 1, "unsupported": 0, "error": 0, "crash": 0,
                           "supported": "partial"}
    assert ops["Neg"]["supported"] == "yes"
    text = to_markdown(report)
    assert "| Relu | 3 | 2 | 1 |  |  |  | partial |" in text and "| test_bad | fail | compare |" in text
    assert "test_bad [compare]: output 'y'" in to_text(report, ["fail"])
    assert json.loads(json.dumps(report.to_json()))["totals"]["fail"] == 1


def test_cli_filters_and_writes_reports(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="braze")
    conformance.register(parser.add_subparsers(dest="command"))
    md, js = tmp_path / "c.md", tmp_path / "c.json"
    args = parser.parse_args(["conformance", "-k", "^test_relu$", "--op", "relu", "--markdown", str(md),
                              "--json", str(js), "--failures"])
    assert args.func(args) == 0
    assert "1 cases in" in capsys.readouterr().out
    assert [c["name"] for c in json.loads(js.read_text())["cases"]] == ["test_relu"]
    assert "braze conformance --op relu -k '^test_relu$' --markdown" in md.read_text()
    assert conformance.main(["-k", "(", "--json", str(js)]) == 1
    assert conformance.main(["-k", "^no_such_case$"]) == 1
    err = capsys.readouterr().err
    assert "not a regular expression" in err and "no case matches" in err


def test_module_runs_as_a_script():
    done = subprocess.run([sys.executable, "-m", "braze.tools.conformance", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--failures" in done.stdout


def test_empty_report_renders():
    assert "None." in to_markdown(Report([], 0.0, conformance.environment()))


@pytest.mark.parametrize("pattern,expected", [("^test_abs$", ["test_abs"]), ("^no_such_case$", [])])
def test_collect_by_pattern(pattern, expected):
    assert [c.name for c in conformance.collect_cases(pattern=pattern)] == expected


def test_case_ops_include_subgraphs_and_domains():
    branch = oh.make_graph([oh.make_node("Relu", ["x"], ["r"])], "then", [],
                           [oh.make_tensor_value_info("r", onnx.TensorProto.FLOAT, [2])])
    other = oh.make_graph([oh.make_node("Neg", ["x"], ["n"])], "else", [],
                          [oh.make_tensor_value_info("n", onnx.TensorProto.FLOAT, [2])])
    nodes = [oh.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other),
             oh.make_node("Frobnicate", ["y"], ["z"], domain="com.example")]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("c", onnx.TensorProto.BOOL, []),
                                       oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                          [oh.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [2])])
    assert conformance.case_ops(oh.make_model(graph)) == ["If", "Neg", "Relu", "com.example.Frobnicate"]


def test_each_case_counts_against_the_op_it_tests():
    from braze.tools.conformance import CaseResult, tested_op

    assert tested_op(CaseResult("test_bitshift_left_uint8", ["BitShift"])) == "BitShift"
    assert tested_op(CaseResult("test_attention_4d_causal_fp16_expanded",
                                ["Add", "MatMul", "Softmax", "Where"])) == "Attention"
    assert tested_op(CaseResult("test_layer_normalization_2d_axis0_expanded",
                                ["ReduceMean", "Sub", "Mul"])) == "LayerNormalization"
    assert tested_op(CaseResult("test_castlike_FLOAT_to_DOUBLE_expanded", ["Cast", "CastLike"])) == "CastLike"


def test_the_gate_catches_a_regression_and_a_vanished_case(tmp_path):
    report = run_suite([relu_case("test_a"), relu_case("test_b", expected=np.ones((2, 3), np.float32))])
    path = tmp_path / "expected.txt"
    conformance.write_expected(report, path)
    assert conformance.read_expected(path) == {"test_a": "pass", "test_b": "fail"}
    assert conformance.regressions(report, {"test_a": "pass", "test_b": "fail"}) == []
    assert conformance.regressions(report, {"test_a": "fail", "test_b": "unsupported"}) == []  # improving is fine
    regressed = conformance.regressions(report, {"test_a": "pass", "test_b": "pass", "test_gone": "pass"})
    assert [line.split(":")[0] for line in regressed] == ["test_b", "test_gone"]
    assert "now fail [compare]" in regressed[0] and "no such case" in regressed[1]
    path.write_text("passed test_a\n")
    with pytest.raises(conformance.BrazeError, match="expected.txt:1: expected 'STATUS CASE_NAME'"):
        conformance.read_expected(path)
