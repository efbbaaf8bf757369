"""The types braze emulates (int4, uint4, int2, uint2, float4_e2m1fn, float8_e8m0fnu): their storage, Cast and
CastLike against ONNX's rules written out here (spec_cast, not ml_dtypes, whose answers change with its version),
quantization, engines that store, take and return them, and the clean refusal of every other op."""

import ml_dtypes as md
import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest
import torch
from onnx import TensorProto as TP
from onnx.reference import ReferenceEvaluator

import braze
from braze.ir import DType, to_numpy, to_torch
from braze.ops import infer_shapes

from .harness import make_model, rand, run_braze

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # NaN into integers, on purpose

INTEGERS = {TP.INT4: md.int4, TP.UINT4: md.uint4, TP.INT2: md.int2, TP.UINT2: md.uint2}
FLOATS = {TP.FLOAT4E2M1: md.float4_e2m1fn, TP.FLOAT8E8M0: md.float8_e8m0fnu}
EMULATED = {**INTEGERS, **FLOATS}
SOURCES = {TP.FLOAT: np.float32, TP.FLOAT16: np.float16, TP.DOUBLE: np.float64, TP.INT8: np.int8,
           TP.INT32: np.int32, TP.INT64: np.int64, TP.UINT8: np.uint8, TP.BOOL: np.bool_}
# Every float4 tie (0.25, 0.75, ... 5), values past each type's range, beyond int32, infinities and NaNs of both signs.
SPECIAL = np.array([0.0, -0.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -2.5, -5.0, 5.5, 6.0, 7.9, -8.5, 15.0,
                    16.0, 100.0, -100.0, 2.0**31, 3e9, -1e10, 1e30, 1e-40, np.inf, -np.inf, np.nan, -np.nan],
                   np.float32)


def all_values(np_type) -> np.ndarray:
    """Every value of an emulated type (the float types by their bit patterns, NaN included)."""
    if np_type in INTEGERS.values():
        info = md.iinfo(np_type)
        return np.arange(info.min, info.max + 1).astype(np_type)
    return np.arange(16 if np_type == md.float4_e2m1fn else 256, dtype=np.uint8).view(np_type)


def raw(a: np.ndarray) -> np.ndarray:
    """What must match exactly: integers' values, floats' bits (ml_dtypes leaves a 4-bit element's high bits open)."""
    if a.dtype in (np.dtype(t) for t in INTEGERS.values()):
        return a.astype(np.int64)
    if a.dtype == md.float4_e2m1fn:
        return a.view(np.uint8) & 0x0F
    if a.dtype == md.float8_e8m0fnu:
        return a.view(np.uint8)
    return a.astype(np.float32) if a.dtype.kind == "V" else a  # bfloat16: NaN matches NaN


INTEGER_BITS = {TP.INT4: (4, True), TP.UINT4: (4, False), TP.INT2: (2, True), TP.UINT2: (2, False)}
FLOAT4_GRID = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def exact_values(x: np.ndarray) -> np.ndarray:
    """The values `x` holds, as int64 or float64, read from the bits for the emulated float types."""
    if x.dtype in (np.dtype(t) for t in INTEGERS.values()) or x.dtype == np.bool_:
        return x.astype(np.int64)
    if x.dtype == md.float4_e2m1fn:
        bits = x.view(np.uint8) & 0x0F
        return np.where(bits & 8, -FLOAT4_GRID[bits & 7], FLOAT4_GRID[bits & 7])
    if x.dtype == md.float8_e8m0fnu:
        exponent = x.view(np.uint8).astype(np.int64)
        return np.where(exponent == 255, np.nan, np.ldexp(1.0, exponent - 127))
    return x.astype(np.float64) if x.dtype.kind in "fV" else x.astype(np.int64)


def float4_code(value: float) -> int:
    """float4_e2m1fn's bits for one value: nearest grid value, ties to the even code, saturating at 6; NaN
    becomes a zero of the opposite sign (ONNX's reference implementation)."""
    negative = bool(np.signbit(value))
    if np.isnan(value):
        return 0 if negative else 8
    distance = np.abs(FLOAT4_GRID - min(abs(value), 6.0))
    nearest = np.flatnonzero(distance == distance.min())
    code = int(nearest[0] if len(nearest) == 1 or nearest[0] % 2 == 0 else nearest[1])
    return code | (8 if negative else 0)


def spec_cast(x: np.ndarray, to: int, saturate: int = 1, round_mode: str = "up") -> np.ndarray:
    """Cast as ONNX specifies it, written here rather than taken from ml_dtypes, whose conversions into these
    types changed between versions (0.6 wraps an out-of-range int4, 0.7 gives 0). Integer types (int4.md,
    int2.md): round to nearest even, then keep the low bits; NaN, infinities and values beyond int32 give 0.
    FLOAT8E8M0: onnx.numpy_helper.to_float8e8m0, as onnx.reference's Cast."""
    if x.dtype == onnx.helper.tensor_dtype_to_np_dtype(to):
        return x
    values = exact_values(x)
    if to in INTEGER_BITS:
        bits, signed = INTEGER_BITS[to]
        if values.dtype.kind == "f":
            finite = np.isfinite(values) & (np.abs(values) < 2.0**31)
            values = np.rint(np.where(finite, values, 0.0)).astype(np.int64)
        values = values & ((1 << bits) - 1)
        if signed:
            values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
        return values.astype(np.int8).astype(INTEGERS[to])  # NOTE: in range: every ml_dtypes converts it exactly
    if to == TP.FLOAT4E2M1:
        codes = [float4_code(v) for v in values.astype(np.float64).ravel()]
        return np.array(codes, np.uint8).reshape(values.shape).view(md.float4_e2m1fn)
    if to == TP.FLOAT8E8M0:
        return onh.to_float8e8m0(values.astype(np.float32), bool(saturate), round_mode)
    if values.dtype.kind == "f":  # NOTE: float32 holds every float4, e8m0 and float16 value exactly
        values = values.astype(x.dtype if x.dtype == np.float64 else np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(onnx.helper.tensor_dtype_to_np_dtype(to))


def test_spec_cast_follows_the_spec_on_known_values():
    """The oracle itself, on values worked out by hand from int4.md: ties to even, then the low bits."""
    x = np.array([0.5, 1.5, 2.5, -2.5, 7.4, 7.5, 8.0, -9.0, 15.0, 16.0, np.nan, np.inf], np.float32)
    np.testing.assert_array_equal(exact_values(spec_cast(x, TP.INT4)), [0, 2, 2, -2, 7, -8, -8, 7, -1, 0, 0, 0])
    np.testing.assert_array_equal(exact_values(spec_cast(x, TP.UINT2)), [0, 2, 2, 2, 3, 0, 0, 3, 3, 0, 0, 0])
    np.testing.assert_array_equal(exact_values(spec_cast(np.array([0.25, 0.75, 2.5, 5.0, 7.0, -np.inf], np.float32),
                                                         TP.FLOAT4E2M1)), [0.0, 1.0, 2.0, 4.0, 6.0, -6.0])


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(raw(actual), raw(expected))


def source_values(dtype) -> np.ndarray:
    """SPECIAL and random values of `dtype`, never all zero."""
    if dtype == np.bool_:
        return np.array([True, False, True])
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        fixed = np.array([0, 1, 7, 8, 15, 16, 17, 255, info.min, info.max], np.int64)
        return np.concatenate([fixed, rand(24, low=-300, high=300, dtype=np.int64)]).astype(dtype)
    with np.errstate(over="ignore"):
        return np.concatenate([SPECIAL, rand(24, low=-20, high=20)]).astype(dtype)


# -- storage ---------------------------------------------------------------------------------

@pytest.mark.parametrize("code", sorted(EMULATED))
def test_storage_round_trip(code):
    every = all_values(EMULATED[code])
    dtype = DType.from_numpy(every.dtype)
    stored = to_torch(every)
    assert dtype.emulated and dtype.itemsize == 1 and stored.dtype == dtype.torch
    assert dtype.is_floating == (code in FLOATS) and dtype.numpy == every.dtype
    assert DType.from_torch(stored.dtype) is not dtype
    assert_same(to_numpy(stored, dtype), every)


# -- Cast and CastLike -----------------------------------------------------------------------

@pytest.mark.parametrize("to", sorted(EMULATED))
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_cast_to_emulated(source, to):
    x = source_values(SOURCES[source])
    got = run_braze(make_model("Cast", {"x": x}, {"to": to}, opset=25), {"x": x})[0]
    assert_same(got, spec_cast(x, to))


@pytest.mark.parametrize("to", [TP.FLOAT, TP.FLOAT16, TP.DOUBLE, TP.BFLOAT16, TP.INT8, TP.INT32, TP.INT64, TP.BOOL,
                                *sorted(EMULATED)])
@pytest.mark.parametrize("source", sorted(EMULATED))
def test_cast_from_emulated(source, to):
    x = all_values(EMULATED[source])
    if source == TP.FLOAT8E8M0 and to in (TP.INT8, TP.INT32, TP.INT64):
        x = x[100:150]  # NOTE: beyond the integer's range (and NaN) a float-to-integer cast is undefined
    got = run_braze(make_model("Cast", {"x": x}, {"to": to}, opset=25), {"x": x})[0]
    assert_same(got, spec_cast(x, to))


@pytest.mark.parametrize("round_mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [0, 1])
@pytest.mark.parametrize("source", [np.float32, np.float16])
def test_cast_to_e8m0_rounding(source, saturate, round_mode):
    """Every rounding mode, saturation on and off, at the top exponent, ties, zero and subnormals."""
    x = np.concatenate([np.abs(SPECIAL), [2.0**127, 2.0**127 * 1.5, 2.0**127 * 1.99, 1.5, 3.0, 6.0, 2**-127, 2**-130,
                                          1.25, 1.75, 0.375]]).astype(np.float32)
    x = np.concatenate([x, rand(30, low=0.001, high=1000)])
    with np.errstate(over="ignore"):
        x = x.astype(source)
    model = make_model("Cast", {"x": x}, {"to": TP.FLOAT8E8M0, "saturate": saturate, "round_mode": round_mode},
                       opset=25)
    got = run_braze(model, {"x": x})[0]
    assert_same(got, spec_cast(x, TP.FLOAT8E8M0, saturate, round_mode))
    assert_same(got, ReferenceEvaluator(model).run(None, {"x": x})[0])


@pytest.mark.parametrize("to", [TP.FLOAT8E8M0])
def test_cast_matches_the_reference_evaluator(to):
    """Only where onnx's reference converts with its own code: for the other types it calls ml_dtypes, whose
    answers depend on its version; spec_cast is the oracle there."""
    x = source_values(np.float32)
    model = make_model("Cast", {"x": x}, {"to": to}, opset=25)
    assert_same(run_braze(model, {"x": x})[0], ReferenceEvaluator(model).run(None, {"x": x})[0])


@pytest.mark.parametrize("like", sorted(EMULATED))
@pytest.mark.parametrize("source", [TP.FLOAT, TP.INT4, TP.FLOAT4E2M1])
def test_cast_like(source, like):
    x = source_values(np.float32) if source == TP.FLOAT else all_values(EMULATED[source])
    inputs = {"x": x, "like": all_values(EMULATED[like])[:2]}
    got = run_braze(make_model("CastLike", inputs, opset=25), inputs)[0]
    assert_same(got, spec_cast(x, like))


def test_cast_of_a_constant_folds_into_an_emulated_constant():
    x = source_values(np.float32)
    model = make_model("Cast", {"x": x}, {"to": TP.INT4}, opset=25, constants=("x",))
    engine = braze.Builder("cpu").build(braze.parse_onnx(model))
    assert not engine.plan.graph.nodes and engine.plan.graph.outputs[0].dtype is DType.int4
    assert_same(engine.create_execution_context().infer({})["y0"], spec_cast(x, TP.INT4))


def test_shape_inference_keeps_symbolic_dims():
    nodes = [oh.make_node("Cast", ["x"], ["q"], to=TP.UINT4), oh.make_node("DequantizeLinear", ["q", "s"], ["y"])]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TP.FLOAT, ["n", 3])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, ["n", 3])],
                          [onh.from_array(np.array(0.5, np.float32), "s")])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 21)])
    model.ir_version = 10
    parsed = braze.parse_onnx(model)
    infer_shapes(parsed)
    q = parsed.nodes[0].outputs[0]
    assert (q.dtype, q.shape) == (DType.uint4, ("n", 3))
    x = np.arange(-3, 12, dtype=np.float32).reshape(5, 3)
    engine = braze.Builder("cpu").build(parsed, braze.BuilderConfig(shapes={"x": (5, 3)}))
    y = engine.create_execution_context().infer({"x": x})["y"]
    np.testing.assert_array_equal(y, exact_values(spec_cast(x, TP.UINT4)) * 0.5)


# -- QuantizeLinear and DequantizeLinear -----------------------------------------------------

def quantization_params(code, shape, granularity):
    """A scale and a zero point for x of `shape`: per tensor, per axis (axis 1) or in blocks of 2 along axis 1."""
    attrs = {"axis": 1} if granularity != "tensor" else {}
    p_shape = {"tensor": (), "axis": (shape[1],), "blocked": (shape[0], -(-shape[1] // 2), *shape[2:])}[granularity]
    if granularity == "blocked":
        attrs["block_size"] = 2
    scale = rand(*p_shape, low=0.05, high=0.5, seed=3)
    if code in INTEGERS:
        info = md.iinfo(INTEGERS[code])
        zero = np.random.default_rng(4).integers(info.min, info.max + 1, size=p_shape).astype(INTEGERS[code])
    else:
        zero = np.zeros(p_shape, md.float4_e2m1fn)
    return scale, zero, attrs


@pytest.mark.parametrize("granularity", ["tensor", "axis", "blocked"])
@pytest.mark.parametrize("code", [*sorted(INTEGERS), TP.FLOAT4E2M1])
def test_quantize(code, granularity):
    x = rand(2, 5, 3, low=-4, high=4)
    scale, zero, attrs = quantization_params(code, x.shape, granularity)
    inputs = {"x": x, "s": scale, "z": zero}
    model = make_model("QuantizeLinear", inputs, attrs, opset=25)
    assert_same(run_braze(model, inputs)[0], ReferenceEvaluator(model).run(None, inputs)[0])


@pytest.mark.parametrize("granularity", ["tensor", "axis", "blocked"])
@pytest.mark.parametrize("code", [*sorted(INTEGERS), TP.FLOAT4E2M1])
def test_dequantize(code, granularity):
    values = all_values(EMULATED[code])
    x = values[np.random.default_rng(5).integers(0, len(values), size=(2, 5, 3))]
    scale, zero, attrs = quantization_params(code, x.shape, granularity)
    inputs = {"x": x, "s": scale, "z": zero}
    model = make_model("DequantizeLinear", inputs, attrs, opset=25)
    assert_same(run_braze(model, inputs)[0], ReferenceEvaluator(model).run(None, inputs)[0])


@pytest.mark.parametrize("code", sorted(INTEGERS))
def test_quantize_dequantize_round_trip(code):
    """Within the type's range, dequantizing a quantized x is off by at most half a step; quantizing a
    dequantized value gives it back."""
    scale, (low, high) = np.float32(0.25), (md.iinfo(INTEGERS[code]).min, md.iinfo(INTEGERS[code]).max)
    x = rand(4, 6, low=low * 0.25, high=high * 0.25)
    q = run_braze(make_model("QuantizeLinear", {"x": x, "s": scale}, {"output_dtype": code}, opset=25),
                  {"x": x, "s": scale})[0]
    y = run_braze(make_model("DequantizeLinear", {"q": q, "s": scale}, opset=25), {"q": q, "s": scale})[0]
    assert np.abs(y - x).max() <= scale / 2 + 1e-6
    again = run_braze(make_model("QuantizeLinear", {"y": y, "s": scale, "z": np.zeros((), INTEGERS[code])},
                                 opset=25), {"y": y, "s": scale, "z": np.zeros((), INTEGERS[code])})[0]
    assert_same(again, q)


def test_mx_block_scaling():
    """float4 values with a float8_e8m0fnu scale per block of 4 (the MX formats): dequantized and quantized."""
    x = all_values(md.float4_e2m1fn)[np.random.default_rng(6).integers(0, 16, size=(3, 8))]
    scale = np.array([[120, 127], [130, 0], [254, 126]], np.uint8).view(md.float8_e8m0fnu)
    wide = np.repeat(scale.astype(np.float32), 4, axis=1)
    inputs = {"x": x, "s": scale}
    attrs = {"axis": 1, "block_size": 4, "output_dtype": TP.FLOAT}
    y = run_braze(make_model("DequantizeLinear", inputs, attrs, opset=25), inputs)[0]
    with np.errstate(over="ignore"):  # 6 * 2^127 is inf in float32, for braze too
        np.testing.assert_array_equal(y, x.astype(np.float32) * wide)
    attrs["output_dtype"] = TP.FLOAT4E2M1
    q = run_braze(make_model("QuantizeLinear", {"y": y, "s": scale}, attrs, opset=25), {"y": y, "s": scale})[0]
    assert_same(q, spec_cast(y / wide, TP.FLOAT4E2M1))


def test_quantize_errors():
    x, s = rand(4), np.float32(0.5)
    with pytest.raises(braze.BrazeError, match="quantizelinear_node.*cannot quantize to int2"):
        run_braze(make_model("QuantizeLinear", {"x": x, "s": s}, {"output_dtype": TP.INT2}, opset=23), {"x": x, "s": s})
    q = np.zeros(4, md.int4)
    with pytest.raises(braze.BrazeError, match="dequantizelinear_node.*must agree"):
        inputs = {"q": q, "s": s, "z": np.zeros((), np.int8)}
        run_braze(make_model("DequantizeLinear", inputs, opset=25), inputs)
    with pytest.raises(braze.BrazeError, match="dequantizelinear_node.*does not take x of float4_e2m1fn"):
        inputs = {"q": np.zeros(4, md.float4_e2m1fn), "s": s}
        run_braze(make_model("DequantizeLinear", inputs, opset=21), inputs)
    with pytest.raises(braze.BrazeError, match="dequantizelinear_node.*needs output_dtype"):
        inputs = {"q": q, "s": np.ones((), md.float8_e8m0fnu)}
        run_braze(make_model("DequantizeLinear", inputs, opset=25), inputs)


# -- engines ---------------------------------------------------------------------------------

def int4_model() -> onnx.ModelProto:
    """y = x @ DequantizeLinear(w: int4 weight, blocks of 4 along K), q = QuantizeLinear(y, zero point q0: int4)
    and f = y as float4."""
    w = np.random.default_rng(7).integers(-8, 8, size=(8, 4)).astype(md.int4)
    graph = oh.make_graph(
        [oh.make_node("DequantizeLinear", ["w", "s"], ["wf"], axis=0, block_size=4),
         oh.make_node("MatMul", ["x", "wf"], ["y"]),
         oh.make_node("QuantizeLinear", ["y", "ys", "q0"], ["q"]),
         oh.make_node("Cast", ["y"], ["f"], to=TP.FLOAT4E2M1)],
        "int4", [oh.make_tensor_value_info("x", TP.FLOAT, [3, 8]), oh.make_tensor_value_info("s", TP.FLOAT, [2, 4]),
                 oh.make_tensor_value_info("q0", TP.INT4, [])],
        [oh.make_tensor_value_info("y", TP.FLOAT, [3, 4]), oh.make_tensor_value_info("q", TP.INT4, [3, 4]),
         oh.make_tensor_value_info("f", TP.FLOAT4E2M1, [3, 4])],
        [onh.from_array(w, "w"), onh.from_array(np.array(0.5, np.float32), "ys")])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 23)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def test_engine_round_trip():
    model = int4_model()
    feeds = {"x": rand(3, 8), "s": rand(2, 4, low=0.05, high=0.2), "q0": np.array(-1, md.int4)}
    engine = braze.Runtime().load(braze.Builder("cpu").build(braze.parse_onnx(model)).serialize())
    weight = next(t for t in engine.plan.graph.constants() if t.name == "w")
    assert weight.dtype is DType.int4 and weight.value.dtype == torch.int8
    assert [b.dtype for b in engine.inputs] == [DType.float32, DType.float32, DType.int4]
    ctx = engine.create_execution_context()
    got = ctx.infer(feeds)
    y, q, _ = ReferenceEvaluator(model).run(None, feeds)
    np.testing.assert_allclose(got["y"], y, rtol=1e-5, atol=1e-6)
    assert_same(got["q"], q)
    assert_same(got["f"], spec_cast(got["y"], TP.FLOAT4E2M1))
    as_torch = ctx.infer({"x": torch.from_numpy(feeds["x"]), "s": torch.from_numpy(feeds["s"]),
                          "q0": torch.tensor(-1, dtype=torch.int8)})
    assert as_torch["q"].dtype == torch.int8 and as_torch["f"].dtype == torch.uint8
    np.testing.assert_array_equal(as_torch["q"].numpy(), raw(got["q"]))
    with pytest.raises(braze.errors.InputError, match="q0.*is int8, the engine expects int4.*ml_dtypes.int4"):
        ctx.infer({**feeds, "q0": np.array(-1, np.int8)})


def test_network_constant_of_an_emulated_type():
    net = braze.Network(opset=25)
    w = net.add_constant(all_values(md.int4).reshape(4, 4))
    assert w.dtype is DType.int4
    net.mark_output(net.add_layer("DequantizeLinear", [w, net.add_constant(np.float32(0.5))]), "y")
    y = braze.Builder("cpu").build(net.graph).create_execution_context().infer({})["y"]
    np.testing.assert_array_equal(y, np.arange(-8, 8, dtype=np.float32).reshape(4, 4) * 0.5)


def test_equal_constants_of_different_types_stay_apart():
    """An int4 and an int8 zero point of the same value share their storage, not their type."""
    inputs = {"a": np.array([1, -2], md.int4), "b": np.array([1, -2], np.int8)}
    nodes = [oh.make_node("DequantizeLinear", ["a", "s", "za"], ["ya"]),
             oh.make_node("DequantizeLinear", ["b", "s", "zb"], ["yb"])]
    graph = oh.make_graph(nodes, "zero_points",
                          [oh.make_tensor_value_info(n, TP.INT4 if n == "a" else TP.INT8, [2]) for n in inputs],
                          [oh.make_tensor_value_info(n, TP.FLOAT, [2]) for n in ("ya", "yb")],
                          [onh.from_array(np.array(1, md.int4), "za"), onh.from_array(np.array(1, np.int8), "zb"),
                           onh.from_array(np.array(2, np.float32), "s")])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 21)])
    model.ir_version = 10
    ya, yb = run_braze(model, inputs)
    np.testing.assert_array_equal(ya, [0, -6])
    np.testing.assert_array_equal(yb, [0, -6])


# -- everything else refuses them ------------------------------------------------------------

@pytest.mark.parametrize("op_type,inputs", [
    ("Identity", {"x": np.zeros(3, md.int4)}),
    ("Add", {"a": np.zeros(3, md.uint4), "b": np.zeros(3, md.uint4)}),
    ("Relu", {"x": np.zeros(3, md.float4_e2m1fn)}),
    ("Transpose", {"x": np.zeros((2, 3), md.float8_e8m0fnu)}),
])
def test_other_ops_refuse_emulated_types(op_type, inputs):
    model = make_model(op_type, inputs, opset=25)
    with pytest.raises(braze.errors.UnsupportedError, match=f"{op_type.lower()}_node.*does not support"):
        run_braze(model, inputs)


def test_an_op_that_would_produce_an_emulated_type_refuses():
    model = make_model("BitCast", {"x": np.zeros(3, np.int8)}, {"to": TP.INT4}, opset=26)
    with pytest.raises(braze.errors.UnsupportedError, match="bitcast_node.*does not support int4"):
        braze.Builder("cpu").build(braze.parse_onnx(model, check=False))


def test_emulated_tensor_attributes_are_refused():
    node = oh.make_node("Constant", [], ["y"], value=onh.from_array(np.zeros(2, md.int4), "v"))
    graph = oh.make_graph([node], "g", [], [oh.make_tensor_value_info("y", TP.INT4, [2])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 21)])
    model.ir_version = 10
    with pytest.raises(braze.errors.UnsupportedError, match="attribute 'value' is a tensor of int4"):
        braze.parse_onnx(model)


def test_casts_through_emulated_types_are_not_fused():
    x = source_values(np.float32)[:-2]
    nodes = [oh.make_node("Cast", ["x"], ["a"], to=TP.INT4), oh.make_node("Cast", ["a"], ["b"], to=TP.FLOAT),
             oh.make_node("Relu", ["b"], ["y"])]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))],
                          [oh.make_tensor_value_info("y", TP.FLOAT, list(x.shape))])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 21)])
    model.ir_version = 10
    engine = braze.Builder("cpu").build(braze.parse_onnx(model))
    assert "Pointwise" not in [n.op for n in engine.plan.graph.nodes]
    got = engine.create_execution_context().infer({"x": x})["y"]
    np.testing.assert_array_equal(got, np.maximum(exact_values(spec_cast(x, TP.INT4)), 0).astype(np.float32))
