"""INT8 end to end on the CPU tier: explicit Q/DQ models from onnxruntime's quantizer match onnxruntime's own QDQ
execution; calibrated builds choose layers by the recipe and pins, quantize them, reuse their cache, and refuse
what they cannot use with a message that says what to pass."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
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
    feed = samples(1, seed=3)[0]
    np.testing.assert_array_equal(first.create_execution_context().infer(feed)["y"],
                                  again.create_execution_context().infer(feed)["y"])


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
