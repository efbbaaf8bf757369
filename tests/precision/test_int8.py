"""INT8 end to end on the CPU tier: explicit Q/DQ models from onnxruntime's quantizer match onnxruntime's own QDQ
execution; calibrated builds choose layers by the recipe and pins, quantize them, reuse their cache, and refuse
what they cannot use with a message that says what to pass."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as onh
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

import braze
from braze.errors import BrazeError
from braze.ir import DType
from braze.precision import PrecisionPolicy
from braze.precision.int8 import Calibration
from braze.testing import rel_l2
from tests.conftest import tiny_cnn


def samples(n: int = 8, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def ort_quantized(model: onnx.ModelProto, feeds, tmp_path, **options) -> onnx.ModelProto:
    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    onnx.save(model, tmp_path / "float.onnx")
    quantize_static(tmp_path / "float.onnx", tmp_path / "qdq.onnx", Reader(), quant_format=QuantFormat.QDQ,
                    weight_type=QuantType.QInt8, **options)
    return onnx.load(tmp_path / "qdq.onnx")


def ops(engine) -> list[str]:
    return [n.op for n in engine.plan.graph.nodes]


@pytest.mark.parametrize("activation, per_channel", [(QuantType.QInt8, True), (QuantType.QUInt8, False)],
                         ids=["int8-per-channel", "uint8-per-tensor"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_onnxruntime_qdq_model_matches_onnxruntime(tmp_path, activation, per_channel, precision):
    feeds = samples()
    model = ort_quantized(tiny_cnn(batch=2), feeds, tmp_path, activation_type=activation, per_channel=per_channel)
    engine = braze.Builder("cpu").build(model, braze.BuilderConfig(precision=precision))
    assert ops(engine).count("QConv") == 2 and ops(engine).count("QGemm") == 1
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    context = engine.create_execution_context()
    for feed in feeds[:3]:
        want = session.run(None, feed)[0]
        got = context.infer(feed)["y"]
        if precision == "fp32":  # the same integers and scales: the same answer
            np.testing.assert_array_equal(got, want)
        else:  # float16 between the INT8 layers: within one output step, and float16's rounding of the value
            step = float(onh.to_array(next(t for t in model.graph.initializer if t.name == "y_scale")))
            assert (np.abs(got - want) <= step * 1.01 + np.abs(want) * 2 ** -10).all()


def calibrated(model, policy="int8", **calibration):
    config = braze.BuilderConfig(precision=policy, calibration=Calibration(**calibration))
    return braze.Builder("cpu").build(model, config)


def test_calibrated_build_follows_the_recipe():
    engine = calibrated(tiny_cnn(batch=2), data=samples(), calibrator="minmax")
    graph = engine.plan.graph
    kinds = {n.name: n.op for n in graph.nodes}
    assert list(kinds.values()).count("QConv") == 1 and "QGemm" not in kinds.values()
    report = engine.plan.build["int8"]
    assert report["kept_in_float"] == {"conv1": "first convolution, 3 input channels",
                                       "fc": "last layer before an output"}
    assert report["int8_layers"] == ["conv2"] and report["source"] == "calibrated on 8 samples (minmax)"


@pytest.mark.parametrize("calibrator", ["minmax", "percentile", "entropy"])
@pytest.mark.parametrize("precision", ["int8", "fp16,int8"])
def test_calibrated_engine_stays_close_to_fp32(calibrator, precision):
    model = tiny_cnn(batch=2)
    pins = PrecisionPolicy.parse(precision)
    policy = PrecisionPolicy(pins.allowed, layers={"conv1": "int8", "fc": "int8"})  # every layer in INT8
    engine = calibrated(model, policy, data=samples(16), calibrator=calibrator)
    assert ops(engine).count("QConv") == 2 and ops(engine).count("QGemm") == 1
    reference = braze.Builder("cpu").build(model).create_execution_context()
    context = engine.create_execution_context()
    for feed in samples(4, seed=1):  # held-out inputs
        want, got = reference.infer(feed)["y"], context.infer(feed)["y"]
        assert rel_l2(got, want) < 0.05
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.5


def test_a_pin_keeps_a_layer_in_float():
    policy = PrecisionPolicy({"int8"}, layers={"conv2": "fp32"})
    engine = calibrated(tiny_cnn(batch=2), policy, data=samples())
    assert "QConv" not in ops(engine) and "pinned to fp32" in engine.plan.build["int8"]["kept_in_float"]["conv2"]


def test_cache_is_written_and_reused_without_data(tmp_path):
    cache = tmp_path / "model.calib.json"
    model = tiny_cnn(batch=2)
    first = calibrated(model, data=samples(), cache=str(cache))
    assert cache.exists()
    again = calibrated(model, cache=str(cache))
    assert again.plan.build["int8"]["source"].startswith("cache ")
    assert again.plan.build["int8"]["data_digest"] == first.plan.build["int8"]["data_digest"]
    def scales(engine):
        return [(n.name, n.attrs.get("x_scale"), n.attrs.get("out_scale")) for n in engine.plan.graph.nodes]

    assert scales(again) == scales(first)  # the same quantization; the tactics may differ (CPU INT8 layers are timed)
    feed = samples(1, seed=3)[0]
    np.testing.assert_allclose(first.create_execution_context().infer(feed)["y"],
                               again.create_execution_context().infer(feed)["y"], rtol=1e-5, atol=1e-5)


def test_int8_without_data_or_cache_says_what_to_pass(tmp_path):
    with pytest.raises(BrazeError, match="int8 needs calibration data or a calibration cache.*--calib DIR"):
        calibrated(tiny_cnn(batch=2))
    with pytest.raises(BrazeError, match="the cache .*missing.json' does not exist"):
        calibrated(tiny_cnn(batch=2), cache=str(tmp_path / "missing.json"))


def test_a_cache_for_another_model_is_refused(tmp_path):
    cache = tmp_path / "model.calib.json"
    calibrated(tiny_cnn(batch=2), data=samples(), cache=str(cache))
    other = tiny_cnn(batch=2)
    other.graph.initializer[2].CopyFrom(onh.from_array(np.ones((8, 8, 3, 3), np.float32), "w2"))
    with pytest.raises(BrazeError, match="was made for another graph of this model"):
        calibrated(other, cache=str(cache))


def test_a_bad_calibration_sample_is_named():
    bad = samples(3)
    bad[1]["x"] = bad[1]["x"][:, :2]
    with pytest.raises(BrazeError, match="sample 1.*'x'"):
        calibrated(tiny_cnn(batch=2), data=bad)


def test_int8_at_level_0_builds_in_float_and_says_so():
    lines = []
    config = braze.BuilderConfig(precision="int8", optimization_level=0, progress=lines.append,
                                 calibration=Calibration(data=samples()))
    engine = braze.Builder("cpu").build(tiny_cnn(batch=2), config)
    assert "QConv" not in ops(engine) and any("int8 needs optimization level 1" in line for line in lines)


def _qdq_identity(scale, zero_point=0):
    inits = [onh.from_array(np.array(scale, np.float32), "s"), onh.from_array(np.array(zero_point, np.int8), "z")]
    nodes = [oh.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quant"),
             oh.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dequant")]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TP.FLOAT, [2, 3])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, [2, 3])], inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 19)])


@pytest.mark.parametrize("scale, shown", [(0.0, "0"), (-0.5, "-0.5"), (float("nan"), "nan"), (float("inf"), "inf")])
def test_a_bad_quantization_scale_is_named(scale, shown):
    with pytest.raises(BrazeError, match=f"node 'quant' \\(QuantizeLinear\\): its scale 's' is {shown}; a "
                                         f"quantization scale must be positive and finite"):
        braze.Builder("cpu").build(_qdq_identity(scale))


def test_an_unfused_qdq_pair_keeps_its_rounding():
    engine = braze.Builder("cpu").build(_qdq_identity(0.25))
    x = np.array([[0.1, 0.13, -0.4], [100.0, -100.0, 0.375]], np.float32)
    got = engine.create_execution_context().infer({"x": x})["y"]
    np.testing.assert_array_equal(got, np.clip(np.round(x / 0.25), -128, 127) * 0.25)
    assert DType.int8 in {t.dtype for n in engine.plan.graph.nodes for t in n.outputs}


K, N = 64, 32


def _explicit_matmul(weight_nodes, weight_inits) -> onnx.ModelProto:
    """x -> Q -> DQ -> MatMul(weight) -> Q -> DQ, the weight made by `weight_nodes` into 'wd'."""
    inits = [onh.from_array(np.float32(0.02), "xs"), onh.from_array(np.int8(0), "xz"),
             onh.from_array(np.float32(0.05), "ys"), onh.from_array(np.int8(0), "yz"), *weight_inits]
    nodes = [oh.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             oh.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]), *weight_nodes,
             oh.make_node("MatMul", ["xd", "wd"], ["c"], name="mm"),
             oh.make_node("QuantizeLinear", ["c", "ys", "yz"], ["yq"]),
             oh.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TP.FLOAT, [4, K])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, [4, N])], inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])


def _weights(kind: str):
    rng = np.random.default_rng(1)
    dq = [oh.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], **({"axis": 0} if kind == "axis-k" else {}))]
    if kind == "axis-k":  # one scale per input row: not a per-output-channel weight
        return dq, [onh.from_array(rng.integers(-127, 128, (K, N)).astype(np.int8), "wq"),
                    onh.from_array((10 ** rng.uniform(-3, -1, K)).astype(np.float32), "ws"),
                    onh.from_array(np.zeros(K, np.int8), "wz")]
    if kind == "uint8-zero-point":
        return dq, [onh.from_array(rng.integers(0, 256, (K, N)).astype(np.uint8), "wq"),
                    onh.from_array(np.float32(0.01), "ws"), onh.from_array(np.uint8(100), "wz")]
    return [oh.make_node("Identity", ["wf"], ["wd"])], [
        onh.from_array((rng.standard_normal((K, N)) * 0.1).astype(np.float32), "wf")]


@pytest.mark.parametrize("kind", ["axis-k", "uint8-zero-point", "float"])
def test_a_model_weight_that_is_not_int8_per_channel_is_not_rounded_to_it(kind):
    """A model's own Q/DQ layer fuses only where its weight is exactly int8 times a scale per output channel or
    per tensor; any other runs in float with the model's rounding, bit-identical to onnxruntime."""
    model = _explicit_matmul(*_weights(kind))
    x = {"x": np.random.default_rng(2).standard_normal((4, K)).astype(np.float32)}
    engine = braze.Builder("cpu").build(model)
    assert "QGemm" not in ops(engine)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    np.testing.assert_array_equal(engine.create_execution_context().infer(x)["y"], want)


def test_int8_weights_are_recovered_exactly_even_where_the_division_lands_one_ulp_off():
    from braze.passes.fuse_qdq import int8_weight

    rng = np.random.default_rng(3)
    scales = torch.from_numpy((10 ** rng.uniform(-4, 0, 64)).astype(np.float32))
    q = torch.from_numpy(rng.integers(-127, 128, (64, 3, 3, 3)).astype(np.int8))
    q[:, 0, 0, 0] = 127  # every channel reaches the end of the range, as a max-calibrated weight does
    for w_scale, w in ((scales, q.float() * scales.reshape(-1, 1, 1, 1)), (scales[:1], q.float() * scales[0])):
        w_q, found, exact = int8_weight(w, 0)
        assert exact and torch.equal(w_q, q) and torch.equal(found, w_scale.expand(64))


def test_plain_convs_and_matmuls_are_quantized_and_the_last_is_named_right():
    rng = np.random.default_rng(0)
    inits = [onh.from_array((rng.standard_normal((64, 64)) * 0.1).astype(np.float32), f"w{i}") for i in (1, 2)]
    inits.append(onh.from_array((rng.standard_normal((64, 10)) * 0.1).astype(np.float32), "w3"))
    nodes = [oh.make_node("MatMul", ["x", "w1"], ["a"], name="m1"), oh.make_node("MatMul", ["a", "w2"], ["b"], name="m2"),
             oh.make_node("Relu", ["b"], ["br"]), oh.make_node("MatMul", ["br", "w3"], ["y"], name="m3")]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TP.FLOAT, [4, 64])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, [4, 10])], inits)
    data = [{"x": rng.standard_normal((4, 64)).astype(np.float32)} for _ in range(4)]
    engine = calibrated(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)]), data=data)
    report = engine.plan.build["int8"]
    assert report["int8_layers"] == ["m1", "m2"] and report["kept_in_float"] == {"m3": "last layer before an output"}


@pytest.mark.parametrize("scale, held", [(1e-300, "0.0"), (1e300, "inf")])
def test_a_cached_scale_float32_cannot_hold_is_refused(tmp_path, scale, held):
    import json

    cache = tmp_path / "model.calib.json"
    calibrated(tiny_cnn(batch=2), data=samples(), cache=str(cache))
    content = json.loads(cache.read_text())
    content["scales"] = {name: scale for name in content["scales"]}
    cache.write_text(json.dumps(content))
    with pytest.raises(BrazeError, match=f"which float32 holds as {held}: a scale must be a positive, finite"):
        calibrated(tiny_cnn(batch=2), cache=str(cache))
