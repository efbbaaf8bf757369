"""The accuracy guard on the CPU tier: a layer made deliberately sensitive (its input has a unit that is huge on
every sample but that the layer ignores, so its per-tensor INT8 scale leaves the rest of its input at zero) is the
one moved back to float, and only as many layers as the budget needs; a met budget moves nothing; an unreachable
one is refused with what each engine measured; bad budgets and a guard without held-out data are named."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper as oh
from onnx import numpy_helper as onh

import braze
from braze.errors import BrazeError
from braze.precision import PrecisionPolicy
from braze.precision.budget import AccuracyBudget
from braze.precision.guard import added_errors, guard
from braze.precision.int8 import Calibration

ROWS, WIDTH = 16, 32


def mlp(outliers: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> onnx.ModelProto:
    """x -> [MatMul -> Relu] x 3 -> Gemm head (kept in float by the recipe: the last layer). Unit 0 of layer i's
    input is `outliers[i]` times a normal activation, and layer i ignores it (its weight row 0 is zero)."""
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) * 0.25 for _ in range(3)]
    for i in range(3):
        ws[i][0, :] = 0
        if i > 0:  # layer i-1 makes unit 0 of layer i's input: outliers[i] * relu(its input's unit 1)
            ws[i - 1][:, 0] = 0
            ws[i - 1][1, 0] = outliers[i]
    inits = [onh.from_array(w, f"w{i + 1}") for i, w in enumerate(ws)]
    inits += [onh.from_array(rng.standard_normal((WIDTH, 10)).astype(np.float32) * 0.3, "wh"),
              onh.from_array(np.zeros(10, np.float32), "bh")]
    nodes, x = [], "x"
    for i in range(1, 4):
        nodes += [oh.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"gemm{i}"),
                  oh.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    nodes.append(oh.make_node("Gemm", [x, "wh", "bh"], ["y"], name="head"))
    graph = oh.make_graph(nodes, "mlp", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [ROWS, WIDTH])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [ROWS, 10])], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def samples(n: int = 10, outlier: float = 1.0, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """`n` feeds; the model's input unit 0 scaled by `outlier` (the first layer's outlier)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n):
        x = rng.standard_normal((ROWS, WIDTH)).astype(np.float32)
        x[:, 0] *= outlier
        feeds.append({"x": x})
    return feeds


def build(model, budget, precision="int8", data=None, lines=None, **calibration):
    calibration.setdefault("calibrator", "minmax")
    config = braze.BuilderConfig(precision=precision, accuracy_budget=budget,
                                 progress=(lines if lines is not None else []).append,
                                 calibration=Calibration(data=samples() if data is None else data, **calibration))
    return braze.Builder("cpu").build(model, config)


def qgemms(engine) -> int:
    return [n.op for n in engine.plan.graph.nodes].count("QGemm")


def test_the_sensitive_layer_and_only_it_goes_back_to_float():
    lines: list[str] = []
    engine = build(mlp((1.0, 1000.0, 1.0)), "top1=0.9", lines=lines)
    report = engine.plan.build["accuracy_guard"]
    assert report["before"] < 0.5 and report["after"] >= 0.9
    assert [m["layer"] for m in report["moved"]] == ["gemm2"]
    assert report["sensitivity"][0]["layer"] == "gemm2" and report["moved"][0]["sensitivity"] > 0.5
    # the INT8 build, the FP32 reference, the all-float ceiling and one build per layer: the move reuses one of them
    assert report["builds"] == 6 and report["held_out_samples"] == 2 and report["outputs"] == ["y"]
    assert report["latency_ms"]["int8"] > 0 and report["latency_ms"]["final"] > 0 and "speed_cost" in report
    assert qgemms(engine) == 2 and engine.plan.build["policy"]["layers"] == {"gemm2": "fp32"}  # a pin to rebuild with
    assert engine.plan.build["int8"]["source"] == "calibrated on 8 samples (minmax)"  # scales reused, not recalibrated
    assert any(line.startswith("accuracy guard: moved 1 layer(s) to float32: gemm2") for line in lines)


def test_two_sensitive_layers_go_back_and_the_third_stays():
    engine = build(mlp((1.0, 30.0, 1.0)), "rel_l2=0.02", data=samples(outlier=30.0))
    report = engine.plan.build["accuracy_guard"]
    assert [m["layer"] for m in report["moved"]] == ["gemm1", "gemm2"]  # most sensitive first
    assert report["before"] > 0.1 and report["after"] <= 0.02 and qgemms(engine) == 1


def test_layers_that_only_matter_together_are_found_by_bisection():
    # gemm1's input outlier zeroes its output, which hides gemm2's: neither moved alone changes the answer
    lines: list[str] = []
    engine = build(mlp((1.0, 1000.0, 1.0)), "top1=0.9", data=samples(outlier=1000.0), lines=lines)
    report = engine.plan.build["accuracy_guard"]
    assert all(e["sensitivity"] == 0 for e in report["sensitivity"])
    # ties fall to the model's order; bisection over how many: 1 misses, 2 holds (2 of 3 is never the ceiling)
    assert [m["layer"] for m in report["moved"]] == ["gemm1", "gemm2"] and report["after"] >= 0.9
    assert report["builds"] == 7 and qgemms(engine) == 1
    assert sum(line.startswith("accuracy guard: 2 layer(s) in float32") for line in lines) == 1


def test_a_budget_already_met_moves_nothing():
    lines: list[str] = []
    engine = build(mlp(), "cosine=0.99", lines=lines)
    report = engine.plan.build["accuracy_guard"]
    assert report["moved"] == [] and report["builds"] == 2 and report["before"] == report["after"] >= 0.99
    assert report["speed_cost"] == 0.0 and qgemms(engine) == 3
    assert "accuracy guard: the budget holds; no layer moved" in lines


def test_an_unreachable_budget_is_refused_with_what_was_measured():
    # FP16 is the float type: even with every INT8 layer in FP16 the engine is not within 1e-9 of FP32
    with pytest.raises(BrazeError, match=r"rel_l2 <= 1e-09 .* cannot be met: the INT8 engine measures rel_l2 "
                                         r"[0-9.e-]+, and with all 3 INT8 layers the guard may move in float16 "
                                         r"[0-9.e-]+; loosen the budget, allow fp32 only"):
        build(mlp((1.0, 1000.0, 1.0)), "rel_l2=1e-9", precision="fp16,int8")


def test_a_layer_pinned_to_int8_is_never_moved():
    policy = PrecisionPolicy({"int8"}, layers={"gemm2": "int8"})
    with pytest.raises(BrazeError, match="with all 2 INT8 layers the guard may move in float32"):
        build(mlp((1.0, 1000.0, 1.0)), "top1=0.9", precision=policy)


def test_the_proxy_ranks_the_layers_over_the_build_cap():
    model, data = mlp((1.0, 1000.0, 1.0)), samples()
    config = braze.BuilderConfig(precision="int8", calibration=Calibration(data=data[:8], calibrator="minmax"))
    builder = braze.Builder("cpu")
    engine = builder.build(model, config)
    held_out = [{"x": torch.from_numpy(s["x"])} for s in data[8:]]
    reference = builder.build(model)
    errors = added_errors(engine, reference, held_out, ["gemm1", "gemm2", "gemm3"])
    assert max(errors, key=errors.get) == "gemm2" and errors["gemm2"] > 0.5

    def rebuild(policy: PrecisionPolicy):
        return builder.build(model, braze.BuilderConfig(precision=policy, calibration=config.calibration))

    final = guard(AccuracyBudget.parse("top1=0.9"), PrecisionPolicy.parse("int8"), engine,
                  ["gemm1", "gemm2", "gemm3"], rebuild, held_out, lambda line: None, max_sensitivity_builds=1)
    report = final.plan.build["accuracy_guard"]
    assert [m["layer"] for m in report["moved"]] == ["gemm2"] and report["builds"] == 4  # int8, fp32, ceiling, 1
    ranked = report["sensitivity"]
    assert ranked[0]["layer"] == "gemm2" and "alone" in ranked[0] and all("alone" not in e for e in ranked[1:])
    assert all("proxy_error" in e for e in ranked)


@pytest.mark.parametrize("spec, message", [
    ("top2=0.9", "unknown field 'top2'; the metrics are top1, rel_l2, cosine"),
    ("top1=abc", "top1: 'abc' is not a number"),
    ("top1=1.5", "top1 is a fraction of rows, from 0 to 1; got 1.5"),
    ("rel_l2=-0.1", "rel_l2 is a relative error, 0 or more and finite"),
    ("cosine=nan", "cosine: 'nan' is not a number"),
    ("top1=0.9,rel_l2=0.1", "one metric .* got top1 and rel_l2"),
    ("output=y", "one metric .* got none"),
    ("top1", "'top1' is not FIELD=VALUE"),
    ("top1=0.9,top1=0.8", "field 'top1' is given twice"),
    ("top1=0.9,held_out=1", "held_out is the fraction of calibration samples"),
    (0.99, "accuracy_budget 0.99: an AccuracyBudget or a string"),
])
def test_a_bad_budget_is_named(spec, message):
    with pytest.raises(BrazeError, match=message):
        build(mlp(), spec)


def test_a_budget_on_an_output_the_model_lacks_is_named():
    with pytest.raises(BrazeError, match="the model has no float output 'logits'; its float outputs are 'y'"):
        build(mlp(), "top1=0.9,output=logits")


def test_the_guard_needs_int8_and_held_out_data(tmp_path):
    with pytest.raises(BrazeError, match="needs int8 allowed"):
        build(mlp(), "top1=0.9", precision="fp16")
    cache = tmp_path / "mlp.calib.json"
    build(mlp(), None, cache=str(cache))
    config = braze.BuilderConfig(precision="int8", accuracy_budget="top1=0.9",
                                 calibration=Calibration(cache=str(cache)))
    with pytest.raises(BrazeError, match="needs calibration data, to hold samples out .* cache holds scales only"):
        braze.Builder("cpu").build(mlp(), config)
    with pytest.raises(BrazeError, match="needs at least 2 calibration samples, got 1"):
        build(mlp(), "top1=0.9", data=samples(1))


def test_budget_strings_parse():
    budget = AccuracyBudget.parse(" TOP1 = 0.99 , output = logits, held_out=0.25")
    assert (budget.metric, budget.bound, budget.output, budget.held_out) == ("top1", 0.99, "logits", 0.25)
    assert str(AccuracyBudget.parse("rel-l2=0.02")) == "rel_l2 <= 0.02"
    assert AccuracyBudget.parse("cosine=0.999").holds(0.9995) and not AccuracyBudget.parse("rel_l2=0.1").holds(0.2)
