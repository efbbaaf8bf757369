"""The precision policy: parsing, refusals that name the problem, pins by layer name and op type, and a layer
pinned to fp32 computing in float32 inside an FP16 engine."""

from __future__ import annotations

import numpy as np
import pytest

import braze
from braze.errors import BrazeError
from braze.ir import DType, Node
from braze.precision import Precision, PrecisionPolicy
from braze.testing import rel_l2, tolerance
from tests.passes.helpers import Net


@pytest.mark.parametrize("spec, allowed, float_type", [
    (None, {"fp32"}, DType.float32),
    ("fp16", {"fp32", "fp16"}, DType.float16),
    ("FP16, int8", {"fp32", "fp16", "int8"}, DType.float16),
    ("bf16+int8", {"fp32", "bf16", "int8"}, DType.bfloat16),
    (["int8"], {"fp32", "int8"}, DType.float32),
    ([Precision.TF32], {"fp32", "tf32"}, DType.float32),
])
def test_parse(spec, allowed, float_type):
    policy = PrecisionPolicy.parse(spec)
    assert {p.value for p in policy.allowed} == allowed
    assert policy.float_type is float_type
    assert policy.int8 == ("int8" in allowed)


def test_tf32_flag_adds_tf32():
    assert PrecisionPolicy.parse("fp32", tf32=True).tf32
    assert PrecisionPolicy.parse(PrecisionPolicy.parse("fp16"), tf32=True).tf32


@pytest.mark.parametrize("build, message", [
    (lambda: PrecisionPolicy.parse("fp8"), "'fp8' is not a precision; choose from fp32, tf32, fp16, bf16, int8"),
    (lambda: PrecisionPolicy.parse(3), "precision 3: a precision policy"),
    (lambda: PrecisionPolicy.parse("fp16,bf16"), "fp16 and bf16 cannot both be allowed"),
    (lambda: PrecisionPolicy({"fp16"}, layers={"conv1": "int8"}),
     "layer 'conv1' is pinned to int8, which the build does not allow \\(allowed: fp32\\+fp16\\)"),
    (lambda: PrecisionPolicy({"fp16"}, op_types={"Softmax": "tf32"}), "op type 'Softmax' is pinned to tf32, which is "
                                                                        "not a layer precision"),
    (lambda: PrecisionPolicy({"fp16"}, op_types={"Softmax": "half"}), "the precision pinned to op type 'Softmax'"),
])
def test_bad_policies_are_named(build, message):
    with pytest.raises(BrazeError, match=message):
        build()


def test_pins_by_name_origin_and_op_type():
    policy = PrecisionPolicy({"fp16"}, layers={"conv_a": "fp32"}, op_types={"Softmax": "fp32"})
    assert policy.pinned(Node("FusedConv", [], [], name="relu_b", origin=("conv_a", "relu_b"))) is Precision.FP32
    assert policy.pinned(Node("Softmax", [], [], name="s")) is Precision.FP32
    assert policy.pinned(Node("Relu", [], [], name="r")) is None
    assert policy.describe() == "fp32+fp16 (pinned: Softmax:fp32, conv_a:fp32)"


def _model():
    net = Net()
    x = net.input("x", [4, 16])
    h = net.op("Add", net.op("MatMul", x, net.weight(16, 32), name="mm1"), net.weight(32), name="add1")
    s = net.op("Softmax", net.op("Mul", h, net.weight(1), name="scale"), name="softmax")
    return net.model(net.op("MatMul", s, net.weight(32, 8), name="mm2"))


@pytest.mark.parametrize("pin", [{"layers": {"softmax": "fp32"}}, {"op_types": {"Softmax": "fp32"}}])
def test_a_layer_pinned_to_fp32_computes_in_float32_in_an_fp16_engine(pin):
    model = _model()
    policy = PrecisionPolicy({"fp16"}, **pin)
    engine = braze.Builder("cpu").build(model, braze.BuilderConfig(precision=policy))
    softmax = next(n for n in engine.plan.graph.nodes if n.name == "softmax")
    assert [t.dtype for t in softmax.inputs] == [DType.float32] and softmax.outputs[0].dtype == DType.float32
    others = [n for n in engine.plan.graph.nodes if n.op not in ("Cast", "Softmax")]
    assert others and all(t.dtype == DType.float16 for n in others for t in n.outputs)
    assert engine.plan.build["policy"]["allowed"] == ["fp32", "fp16"]
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)}
    want = braze.Builder("cpu").build(model).create_execution_context().infer(feeds)
    got = engine.create_execution_context().infer(feeds)
    for name in want:
        assert rel_l2(got[name], want[name]) <= tolerance(DType.float16).rel_l2


def test_an_op_type_pin_reaches_the_fused_layers_that_compute_it():
    policy = PrecisionPolicy({"int8"}, op_types={"Conv": "fp32", "MatMul": "int8"})
    assert policy.pinned(Node("FusedConv", [], [], name="c", domain="braze")) is Precision.FP32
    assert policy.pinned(Node("QGemm", [], [], name="g", domain="braze")) is Precision.INT8
