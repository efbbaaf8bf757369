"""Models in onnxruntime's QOperator format and from its dynamic quantization, made in the test from small float
models: the static ones build into braze's INT8 layers (passes/qoperator.py rewrites them into the Q/DQ form) and
match onnxruntime's own execution to within one output step (in practice exactly); the dynamic ones run as
references (ops/msdynamic.py) that match onnxruntime to float32 rounding; bad quantization parameters are refused
by node."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as onh
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

import braze
from braze.errors import BrazeError
from braze.ops.kinds import Kind, is_kind
from braze.ops.msquant import MS_DOMAIN
from tests.conftest import tiny_cnn, tiny_mlp

F = TP.FLOAT


def model(nodes, inputs, outputs, inits, ms: bool = False) -> onnx.ModelProto:
    opsets = [oh.make_opsetid("", 17)] + ([oh.make_opsetid(MS_DOMAIN, 1)] if ms else [])
    m = oh.make_model(oh.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=opsets)
    m.ir_version = 8
    return m


def images(n: int, seed: int, shape=(2, 3, 16, 16)) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def qoperator(float_model: onnx.ModelProto, feeds, tmp_path, **options) -> onnx.ModelProto:
    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    onnx.save(float_model, tmp_path / "float.onnx")
    quantize_static(tmp_path / "float.onnx", tmp_path / "qop.onnx", Reader(), quant_format=QuantFormat.QOperator,
                    **options)
    return onnx.load(tmp_path / "qop.onnx")


def dynamic(float_model: onnx.ModelProto, tmp_path, **options) -> onnx.ModelProto:
    onnx.save(float_model, tmp_path / "float.onnx")
    quantize_dynamic(tmp_path / "float.onnx", tmp_path / "dynamic.onnx", **options)
    return onnx.load(tmp_path / "dynamic.onnx")


def run_both(m: onnx.ModelProto, feeds, level: int = 3, threads: int = 0, precision: str = "fp32"):
    """The braze engine (built on the CPU) and its and onnxruntime's outputs of each feed."""
    config = braze.BuilderConfig(optimization_level=level, precision=precision, progress=False)
    engine = braze.Builder("cpu").build(m, config)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    context = engine.create_execution_context()
    name = m.graph.output[0].name
    return engine, [(context.infer(f)[name], session.run([name], f)[0]) for f in feeds]


def run_both_outputs(m: onnx.ModelProto, feeds, **options) -> list[tuple[np.ndarray, np.ndarray]]:
    return run_both(m, feeds, **options)[1]


def kinds(engine) -> list[str]:
    return [n.op for n in engine.plan.graph.nodes if is_kind(n, Kind.QCONV, Kind.QGEMM)]


def output_step(m: onnx.ModelProto) -> float:
    """The scale of the model's final DequantizeLinear: one step of its output."""
    last = next(n for n in m.graph.node if n.output[0] == m.graph.output[0].name)
    return float(onh.to_array(next(t for t in m.graph.initializer if t.name == last.input[1])))


def assert_within_a_step(pairs, step: float) -> None:
    """Every output within one quantization step of onnxruntime's, and nearly all exactly equal: the layers requantize
    in float32 as onnxruntime does, in another order, so only values at a rounding tie may come out one step off."""
    for got, want in pairs:
        assert (np.abs(got - want) <= step * 1.001).all()
        assert (got == want).mean() >= 0.95


# -- static: QOperator -> QDQ -> INT8 layers -------------------------------------------------------------------

@pytest.mark.parametrize("activation, per_channel", [(QuantType.QUInt8, False), (QuantType.QInt8, True)],
                         ids=["uint8-per-tensor", "int8-per-channel"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_qoperator_cnn_builds_int8_layers_and_matches_onnxruntime(tmp_path, activation, per_channel, precision):
    m = qoperator(tiny_cnn(batch=2), images(8, 0), tmp_path, activation_type=activation,
                  weight_type=QuantType.QInt8, per_channel=per_channel)
    assert {n.op_type for n in m.graph.node} >= {"QLinearConv", "QLinearAdd", "QLinearGlobalAveragePool", "QGemm"}
    engine, pairs = run_both(m, images(3, 1), precision=precision)
    assert kinds(engine) == [Kind.QCONV, Kind.QCONV, Kind.QGEMM]
    assert not any(n.domain == MS_DOMAIN for n in engine.plan.graph.nodes)
    step = output_step(m)
    if precision == "fp32":
        assert_within_a_step(pairs, step)
    else:  # float16 between the INT8 layers: within one output step, and float16's rounding of the value
        for got, want in pairs:
            assert (np.abs(got - want) <= step * 1.01 + np.abs(want) * 2 ** -10).all()


def branchy() -> onnx.ModelProto:
    """conv -> leaky relu -> (average pool | max pool) -> concat -> two 1x1 convs -> sigmoid gate -> mul -> gap -> fc:
    every QLinear op of com.microsoft that quantize_static writes."""
    rng = np.random.default_rng(3)

    def w(*shape):
        return onh.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32))

    inits = [w(8, 3, 3, 3), w(8), w(6, 16, 1, 1), w(6, 16, 1, 1), w(5, 6), w(5)]
    for t, name in zip(inits, ["w1", "b1", "w2", "w3", "fc_w", "fc_b"]):
        t.name = name
    nodes = [oh.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             oh.make_node("LeakyRelu", ["c1"], ["l1"], name="leaky", alpha=0.1),
             oh.make_node("AveragePool", ["l1"], ["ap"], name="avgpool", kernel_shape=[2, 2], strides=[2, 2]),
             oh.make_node("MaxPool", ["l1"], ["mp"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
             oh.make_node("Concat", ["ap", "mp"], ["cat"], name="concat", axis=1),
             oh.make_node("Conv", ["cat", "w2"], ["c2"], name="conv2"),
             oh.make_node("Conv", ["cat", "w3"], ["c3"], name="conv3"),
             oh.make_node("Sigmoid", ["c3"], ["gate"], name="sigmoid"),
             oh.make_node("Mul", ["c2", "gate"], ["gated"], name="mul"),
             oh.make_node("GlobalAveragePool", ["gated"], ["g"], name="gap"),
             oh.make_node("Flatten", ["g"], ["f"], name="flatten"),
             oh.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1)]
    return model(nodes, [oh.make_tensor_value_info("x", F, [2, 3, 16, 16])],
                 [oh.make_tensor_value_info("y", F, [2, 5])], inits)


@pytest.mark.parametrize("activation", [QuantType.QUInt8, QuantType.QInt8], ids=["uint8", "int8"])
def test_every_qlinear_contrib_op_becomes_qdq(tmp_path, activation):
    m = qoperator(branchy(), images(8, 0), tmp_path, activation_type=activation, weight_type=QuantType.QInt8,
                  per_channel=True)
    written = {n.op_type for n in m.graph.node if n.domain == MS_DOMAIN}
    assert written == {"QLinearLeakyRelu", "QLinearAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearMul",
                       "QLinearGlobalAveragePool", "QGemm"}
    engine, pairs = run_both(m, images(3, 1))
    assert kinds(engine) == [Kind.QCONV, Kind.QCONV, Kind.QCONV, Kind.QGEMM]
    assert not any(n.domain == MS_DOMAIN for n in engine.plan.graph.nodes)
    assert_within_a_step(pairs, output_step(m))


def test_the_references_match_onnxruntime_without_the_rewrite(tmp_path):
    """At optimization level 0 every QOperator node runs as its reference (QLinearConv, the com.microsoft ops)."""
    m = qoperator(branchy(), images(8, 0), tmp_path, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    engine, pairs = run_both(m, images(3, 1), level=0)
    assert "QLinearConv" in [n.op for n in engine.plan.graph.nodes]
    assert_within_a_step(pairs, output_step(m))


def test_qlinear_matmul_mlp_becomes_qgemm(tmp_path):
    feeds = [{"x": f["x"].reshape(-1)[:8].reshape(2, 4)} for f in images(8, 0)]
    m = qoperator(tiny_mlp(), feeds, tmp_path, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    assert {"QLinearMatMul", "QLinearAdd", "QLinearSigmoid"} <= {n.op_type for n in m.graph.node}
    engine, pairs = run_both(m, feeds[:3])
    assert kinds(engine) == [Kind.QGEMM, Kind.QGEMM]
    assert_within_a_step(pairs, output_step(m))


def test_uint8_weights_stay_exact_reference_ops(tmp_path):
    """Asymmetric uint8 weights have no INT8-layer form (the fusion would round them): their QLinearConv and QGemm stay,
    and the engine is onnxruntime's answer bit for bit."""
    m = qoperator(tiny_cnn(batch=2), images(8, 0), tmp_path, activation_type=QuantType.QUInt8,
                  weight_type=QuantType.QUInt8)
    engine, pairs = run_both(m, images(3, 1))
    ops = [n.op for n in engine.plan.graph.nodes]
    assert ops.count("QLinearConv") == 2 and not kinds(engine)
    for got, want in pairs:
        np.testing.assert_array_equal(got, want)


# -- dynamic quantization: reference ops -----------------------------------------------------------------------

def two_heads() -> onnx.ModelProto:
    """x feeds two MatMuls, so onnxruntime's optimizer fuses them into MatMulIntegerToFloat (a shared activation)."""
    rng = np.random.default_rng(2)
    inits = [onh.from_array(rng.standard_normal((8, 6)).astype(np.float32), "w1"),
             onh.from_array(rng.standard_normal((8, 6)).astype(np.float32), "w2"),
             onh.from_array(rng.standard_normal(6).astype(np.float32), "b")]
    nodes = [oh.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"),
             oh.make_node("MatMul", ["x", "w2"], ["c"], name="mm2"),
             oh.make_node("Add", ["a", "b"], ["ab"], name="bias"), oh.make_node("Mul", ["ab", "c"], ["y"], name="mul")]
    return model(nodes, [oh.make_tensor_value_info("x", F, [3, 8])], [oh.make_tensor_value_info("y", F, [3, 6])], inits)


def optimized_by_onnxruntime(m: onnx.ModelProto, tmp_path) -> onnx.ModelProto:
    """The model as onnxruntime's graph optimizer saves it: its dynamic-quantization fusions in com.microsoft ops."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return onnx.load(tmp_path / "optimized.onnx")


@pytest.mark.parametrize("make, shape, contrib", [
    (tiny_mlp, (2, 4), "DynamicQuantizeMatMul"),
    (lambda: tiny_cnn(batch=2), (2, 3, 16, 16), "DynamicQuantizeMatMul"),
    (two_heads, (3, 8), "MatMulIntegerToFloat"),
], ids=["mlp", "cnn", "shared-input"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_dynamic_models_match_onnxruntime(tmp_path, make, shape, contrib, per_channel):
    """quantize_dynamic's DynamicQuantizeLinear/MatMulInteger/ConvInteger/Cast/Mul, and the contrib ops onnxruntime's
    optimizer fuses them into: the same integers and float32 scaling as onnxruntime (its approximate Sigmoid aside)."""
    m = dynamic(make(), tmp_path, weight_type=QuantType.QInt8, per_channel=per_channel)
    fused = optimized_by_onnxruntime(m, tmp_path)
    assert contrib in {n.op_type for n in fused.graph.node if n.domain == MS_DOMAIN}
    feeds = images(3, 4, shape)
    for quantized in (m, fused):
        for got, want in run_both_outputs(quantized, feeds):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def lstm(direction: str, hidden: int = 8, inputs: int = 4, batch: int = 3, steps: int = 5) -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    dirs = 2 if direction == "bidirectional" else 1
    inits = [onh.from_array((rng.standard_normal((dirs, 4 * hidden, inputs)) * 0.4).astype(np.float32), "W"),
             onh.from_array((rng.standard_normal((dirs, 4 * hidden, hidden)) * 0.4).astype(np.float32), "R"),
             onh.from_array((rng.standard_normal((dirs, 8 * hidden)) * 0.1).astype(np.float32), "B")]
    node = oh.make_node("LSTM", ["x", "W", "R", "B", "lens", "h0", "c0"], ["y", "y_h", "y_c"], name="lstm",
                        hidden_size=hidden, direction=direction)
    state = [dirs, batch, hidden]
    return model([node], [oh.make_tensor_value_info("x", F, [steps, batch, inputs]),
                          oh.make_tensor_value_info("lens", TP.INT32, [batch]),
                          oh.make_tensor_value_info("h0", F, state), oh.make_tensor_value_info("c0", F, state)],
                 [oh.make_tensor_value_info("y", F, [steps, dirs, batch, hidden])], inits)


@pytest.mark.parametrize("direction, per_channel", [("forward", False), ("bidirectional", True)])
def test_dynamic_quantize_lstm_matches_onnxruntime(tmp_path, direction, per_channel):
    """DynamicQuantizeLSTM quantizes X once and each step's hidden state per batch entry as onnxruntime does with a
    thread per entry (intra_op_num_threads >= batch); its logistic and tanh differ from onnxruntime's
    approximations by float32 rounding: within 1e-5."""
    m = dynamic(lstm(direction), tmp_path, weight_type=QuantType.QInt8, per_channel=per_channel)
    assert [n.op_type for n in m.graph.node] == ["DynamicQuantizeLSTM"]
    rng = np.random.default_rng(6)
    dirs = 2 if direction == "bidirectional" else 1
    feeds = [{"x": rng.standard_normal((5, 3, 4)).astype(np.float32), "lens": np.array(lens, np.int32),
              "h0": rng.standard_normal((dirs, 3, 8)).astype(np.float32) * 0.5,
              "c0": rng.standard_normal((dirs, 3, 8)).astype(np.float32) * 0.5} for lens in ([5, 5, 5], [5, 3, 1])]
    for got, want in run_both_outputs(m, feeds, threads=3):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def attention(unidirectional: int, mask_shape: list[int] | None) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    inits = [onh.from_array((rng.standard_normal((16, 48)) * 0.3).astype(np.float32), "qkv_w"),
             onh.from_array((rng.standard_normal(48) * 0.1).astype(np.float32), "qkv_b")]
    inputs = [oh.make_tensor_value_info("x", F, [2, 5, 16])]
    if mask_shape is not None:
        inputs.append(oh.make_tensor_value_info("mask", TP.INT32, mask_shape))
    node = oh.make_node("Attention", ["x", "qkv_w", "qkv_b"] + (["mask"] if mask_shape else []), ["y"],
                        name="attention", domain=MS_DOMAIN, num_heads=2, unidirectional=unidirectional)
    return model([node], inputs, [oh.make_tensor_value_info("y", F, [2, 5, 16])], inits, ms=True)


@pytest.mark.parametrize("unidirectional, mask", [(0, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]), (0, [3, 5]), (1, None)],
                         ids=["0/1-mask", "lengths", "causal"])
def test_qattention_matches_onnxruntime(tmp_path, unidirectional, mask):
    mask = None if mask is None else np.array(mask, np.int32)
    m = dynamic(attention(unidirectional, None if mask is None else list(mask.shape)), tmp_path,
                weight_type=QuantType.QInt8)
    assert "QAttention" in [n.op_type for n in m.graph.node]
    feeds = [{"x": x, **({"mask": mask} if mask is not None else {})} for x in
             (f["x"] for f in images(3, 8, (2, 5, 16)))]
    for got, want in run_both_outputs(m, feeds):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


# -- refused by node -------------------------------------------------------------------------------------------

def qlinear_conv(w_scale=(0.02, 0.03), w_zero_point=(0, 0), x_zero_point=np.uint8(128)) -> onnx.ModelProto:
    """x uint8 [1, 2, 4, 4] -> QLinearConv (2 output channels, per-channel weights) -> y uint8."""
    scalar = np.float32
    inits = [onh.from_array(scalar(0.05), "x_scale"), onh.from_array(np.array(x_zero_point), "x_zero_point"),
             onh.from_array(np.array([-127, -7, 60, -5, -4, 3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 127], np.int8)
                            .reshape(2, 2, 2, 2), "w"),
             onh.from_array(np.array(w_scale, np.float32), "w_scale"),
             onh.from_array(np.array(w_zero_point, np.int8), "w_zero_point"),
             onh.from_array(scalar(0.1), "y_scale"), onh.from_array(np.uint8(128), "y_zero_point")]
    node = oh.make_node("QLinearConv", ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale",
                                        "y_zero_point"], ["y"], name="qconv")
    return model([node], [oh.make_tensor_value_info("x", TP.UINT8, [1, 2, 4, 4])],
                 [oh.make_tensor_value_info("y", TP.UINT8, [1, 2, 3, 3])], inits)


def test_a_hand_made_qlinear_conv_builds_one_qconv():
    m = qlinear_conv()
    x = {"x": np.random.default_rng(9).integers(0, 256, (1, 2, 4, 4)).astype(np.uint8)}
    engine, pairs = run_both(m, [x])
    assert kinds(engine) == [Kind.QCONV]
    np.testing.assert_array_equal(*pairs[0])


@pytest.mark.parametrize("quantized_output", [True, False], ids=["uint8-output", "float-output"])
@pytest.mark.parametrize("full_range", [True, False], ids=["full-range", "narrow"])
def test_a_hand_made_qgemm_with_alpha_and_per_column_scales(quantized_output, full_range):
    """com.microsoft QGemm: alpha, B [K, N] per column, an int32 C; a requantized or a float output. Integers that
    reach +-127 in each column become a QGemm layer (to within one step, or float32 rounding); others would be
    re-rounded by the fusion, so the node stays, as its exact reference."""
    rng = np.random.default_rng(10)
    b = rng.integers(-100, 101, (6, 4)).astype(np.int8)
    if full_range:
        b[rng.integers(0, 6, 4), np.arange(4)] = [127, -127, 127, -127]
    inits = [onh.from_array(np.float32(0.04), "a_scale"), onh.from_array(np.uint8(120), "a_zero_point"),
             onh.from_array(b, "b"), onh.from_array(np.array([0.01, 0.02, 0.015, 0.03], np.float32), "b_scale"),
             onh.from_array(np.zeros(4, np.int8), "b_zero_point"),
             onh.from_array(rng.integers(-500, 500, 4).astype(np.int32), "c")]
    names = ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "c"]
    if quantized_output:
        inits += [onh.from_array(np.float32(0.2), "y_scale"), onh.from_array(np.uint8(100), "y_zero_point")]
        names += ["y_scale", "y_zero_point"]
    node = oh.make_node("QGemm", names, ["y"], name="qgemm", domain=MS_DOMAIN, alpha=0.5)
    m = model([node], [oh.make_tensor_value_info("a", TP.UINT8, [3, 6])],
              [oh.make_tensor_value_info("y", TP.UINT8 if quantized_output else F, [3, 4])], inits, ms=True)
    feeds = [{"a": rng.integers(0, 256, (3, 6)).astype(np.uint8)} for _ in range(3)]
    engine, pairs = run_both(m, feeds)
    assert kinds(engine) == ([Kind.QGEMM] if full_range else [])
    for got, want in pairs:
        if full_range:
            np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-6, atol=1 if quantized_output else 0)
        else:
            np.testing.assert_array_equal(got, want)
    for got, want in run_both_outputs(m, feeds, level=0):  # the reference: onnxruntime's arithmetic exactly
        np.testing.assert_array_equal(got, want)


def test_a_product_of_two_activations_runs_in_float_with_its_rounding():
    """QLinearMatMul of two quantized activations: DQ, DQ -> MatMul -> Q (no constant weight to make an INT8 layer)."""
    scalars = [("a_scale", np.float32(0.05)), ("a_zero_point", np.uint8(128)), ("b_scale", np.float32(0.03)),
               ("b_zero_point", np.uint8(120)), ("y_scale", np.float32(0.5)), ("y_zero_point", np.uint8(128))]
    node = oh.make_node("QLinearMatMul", ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "y_scale",
                                          "y_zero_point"], ["y"], name="qmatmul")
    inputs = [oh.make_tensor_value_info("a", TP.UINT8, [2, 3, 8]), oh.make_tensor_value_info("b", TP.UINT8, [2, 8, 5])]
    m = model([node], inputs, [oh.make_tensor_value_info("y", TP.UINT8, [2, 3, 5])],
              [onh.from_array(v, k) for k, v in scalars])
    rng = np.random.default_rng(11)
    feeds = [{"a": rng.integers(0, 256, (2, 3, 8)).astype(np.uint8),
              "b": rng.integers(0, 256, (2, 8, 5)).astype(np.uint8)} for _ in range(3)]
    engine, pairs = run_both(m, feeds)
    assert "MatMul" in [n.op for n in engine.plan.graph.nodes]
    for got, want in pairs:
        assert np.abs(got.astype(np.int32) - want).max() <= 1 and (got == want).mean() >= 0.95


@pytest.mark.parametrize("w_scale, shown", [((0.0, 0.03), "0 at index 0 of 2"), ((0.02, -0.5), "-0.5 at index 1 of 2"),
                                            ((0.02, float("inf")), "inf at index 1 of 2")],
                         ids=["zero", "negative", "inf"])
def test_a_bad_scale_is_refused_by_node(w_scale, shown):
    with pytest.raises(BrazeError, match=f"node 'qconv' \\(QLinearConv\\): its scale 'w_scale' is {shown}; a "
                                         "quantization scale must be positive and finite"):
        braze.Builder("cpu").build(qlinear_conv(w_scale=w_scale))


def test_a_zero_point_of_another_type_is_refused_by_node():
    with pytest.raises(BrazeError, match="node 'qconv' \\(QLinearConv\\).*: x_zero_point must have x's type uint8"):
        braze.Builder("cpu").build(qlinear_conv(x_zero_point=np.int8(0)))


@pytest.mark.parametrize("w_zero_point, message", [
    ((0, 3), "the weight's zero points 'w_zero_point' differ between output channels"),
    ((0, 0, 0), "w_zero_point must be a scalar or a vector of 2 \\(one per output channel\\), got shape \\[3\\]"),
], ids=["differing", "wrong-length"])
def test_an_unsupported_weight_zero_point_is_refused_by_node(w_zero_point, message):
    with pytest.raises(BrazeError, match=f"node 'qconv' \\(QLinearConv\\).*: {message}"):
        braze.Builder("cpu").build(qlinear_conv(w_zero_point=w_zero_point))


@pytest.mark.parametrize("make, shape", [(tiny_mlp, (2, 4)), (lambda: tiny_cnn(batch=2), (2, 3, 16, 16)),
                                         (two_heads, (3, 8))], ids=["mlp", "cnn", "shared-input"])
def test_dynamic_models_build_in_fp16(tmp_path, make, shape):
    """DynamicQuantizeLinear is float32-only in ONNX: an FP16 engine gives it a float32 input and keeps its scale
    float32, and the answer stays within float16's bound."""
    from braze.ir import DType
    from braze.testing import rel_l2, tolerance

    m = dynamic(make(), tmp_path, weight_type=QuantType.QInt8)
    for quantized in (m, optimized_by_onnxruntime(m, tmp_path)):
        for got, want in run_both_outputs(quantized, images(2, 4, shape), precision="fp16"):
            assert rel_l2(got, want) <= tolerance(DType.float16).rel_l2
