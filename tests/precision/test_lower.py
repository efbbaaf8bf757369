"""Lowering to FP16/BF16 on the CPU tier: which tensors are narrowed and which keep their type, the boundary
casts, NaN and infinity through them, and lowered engines against the FP32 reference within the dtype's bound."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import braze
from braze.ir import DType, Graph, Node, Tensor
from braze.ops import infer_shapes
from braze.precision import lower_precision
from braze.testing import rel_l2, tolerance
from tests.conftest import tiny_cnn, tiny_mlp
from tests.passes.helpers import Net

LOW = [DType.float16, DType.bfloat16]
ONNX_CODE = {DType.float16: onnx.TensorProto.FLOAT16, DType.bfloat16: onnx.TensorProto.BFLOAT16}


def parsed(model: onnx.ModelProto) -> Graph:
    graph = braze.parse_onnx(model)
    infer_shapes(graph)
    return graph


def lowered(model: onnx.ModelProto, dtype: DType) -> Graph:
    graph = parsed(model)
    lower_precision(graph, dtype)
    infer_shapes(graph)
    graph.verify()
    return graph


def mixed_model() -> onnx.ModelProto:
    """Float compute, an int64 shape path (Shape -> Reshape), an int32 input and a Cast to float32."""
    net = Net()
    x = net.input("x", [2, 6])
    ids = net.input("ids", [2, 6], np.int32)
    h = net.op("MatMul", x, net.weight(6, 6), name="mm")
    shape = net.op("Shape", h, name="shape")
    flat = net.op("Reshape", h, net.const([-1], np.int64, name="flat_shape"), name="flatten")
    back = net.op("Reshape", flat, shape, name="unflatten")
    idf = net.op("Cast", ids, name="ids_to_float", to=onnx.TensorProto.FLOAT)
    y = net.op("Add", back, idf, name="add")
    count = net.op("Add", ids, net.const(1, np.int32, name="one"), name="count")
    return net.model(y, count)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_compute_and_weights_are_narrowed_while_the_boundary_and_integers_keep_their_type(dtype):
    graph = parsed(mixed_model())
    before = {t.name: t.dtype for t in graph.tensors().values()}
    changed = lower_precision(graph, dtype)
    infer_shapes(graph)
    graph.verify()
    tensors = graph.tensors()
    assert [(t.name, t.dtype) for t in graph.inputs] == [("x", DType.float32), ("ids", DType.int32)]
    assert [t.dtype for t in graph.outputs] == [DType.float32, DType.int32]
    for name, was in before.items():  # integer tensors, the int64 shape path included, are untouched
        if not was.is_floating:
            assert tensors[name].dtype == was, name
    weight = graph.node_by_name("mm").inputs[1]
    assert weight.dtype == dtype and weight.value.dtype == dtype.torch
    for node in ("mm", "flatten", "unflatten", "add"):
        assert graph.node_by_name(node).outputs[0].dtype == dtype, node
    cast = graph.node_by_name("ids_to_float")
    assert cast.outputs[0].dtype == dtype and cast.attrs["to"] == ONNX_CODE[dtype]
    first, last = graph.nodes[0], graph.nodes[-1]
    assert first.op == "Cast" and first.inputs[0] is graph.inputs[0] and first.outputs[0].dtype == dtype
    assert last.op == "Cast" and last.outputs[0] is graph.outputs[0] and last.attrs["to"] == onnx.TensorProto.FLOAT
    assert sum(n.op == "Cast" for n in graph.nodes) == 3  # two at the boundary, the model's own
    assert changed == sum(1 for t in tensors.values() if t.dtype == dtype) - 2  # the boundary casts' are new


def test_lowering_to_another_type_is_refused():
    with pytest.raises(ValueError, match="float16 or bfloat16, not int8"):
        lower_precision(parsed(tiny_mlp()), DType.int8)


def test_an_input_that_is_also_an_output_keeps_one_float32_tensor():
    x, y = Tensor("x", DType.float32, (4,)), Tensor("y", DType.float32, (4,))
    graph = Graph([x], [y, x], [Node("Relu", [x], [y], name="relu")])
    lower_precision(graph, DType.float16)
    infer_shapes(graph)
    graph.verify()
    assert graph.outputs[1] is x and x.dtype == DType.float32 and graph.nodes[1].inputs[0].dtype == DType.float16
    assert [t.dtype for t in graph.outputs] == [DType.float32, DType.float32]


def test_constants_keep_nan_and_infinity_and_clamp_only_finite_overflow():
    net = Net()
    x = net.input("x", [5])
    special = net.const([np.nan, np.inf, -np.inf, -3.4e38, 1.0e5], name="special")
    y = net.op("Add", x, special, name="add")
    graph = parsed(net.model(y))
    lower_precision(graph, DType.float16)
    value = graph.node_by_name("add").inputs[1].value
    assert value.dtype == torch.float16
    assert torch.isnan(value[0]) and value[1] == float("inf") and value[2] == float("-inf")
    assert value[3] == torch.finfo(torch.float16).min and value[4] == torch.finfo(torch.float16).max


def nan_model() -> onnx.ModelProto:
    net = Net()
    x = net.input("x", [4, 8])
    y = net.op("Relu", net.op("Add", x, net.weight(4, 8)), name="relu")
    z = net.op("Mul", x, net.const(2.0), name="double")
    return net.model(y, z)


@pytest.mark.parametrize("level", [0, 3])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_nan_and_infinity_survive_the_boundary_casts(precision, level):
    model = nan_model()
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    x[0, 2], x[1, 5], x[3, 7], x[2, 2] = np.nan, np.inf, -np.inf, 1e6  # 1e6 overflows float16 only, as in a Cast
    ref = [braze.Builder("cpu").build(model, braze.BuilderConfig(optimization_level=0))
           .create_execution_context().infer({"x": x})[k] for k in ("relu_out", "double_out")]
    engine = braze.Builder("cpu").build(model, braze.BuilderConfig(optimization_level=level, precision=precision))
    out = engine.create_execution_context().infer({"x": x})
    for name, want in zip(("relu_out", "double_out"), ref):
        got = np.asarray(out[name])
        assert got.dtype == np.float32, name
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        np.testing.assert_array_equal(got[np.isinf(want)], want[np.isinf(want)], err_msg=name)


MODELS = {"cnn": (tiny_cnn, {"x": (1, 3, 16, 16)}), "mlp": (tiny_mlp, {"x": (2, 4)})}


@pytest.mark.parametrize("level", [0, 3])
@pytest.mark.parametrize("precision,dtype", [("fp16", DType.float16), ("bf16", DType.bfloat16)])
@pytest.mark.parametrize("model", list(MODELS))
def test_a_lowered_cpu_engine_matches_float32_within_the_dtype_bound(model, precision, dtype, level):
    make, shapes = MODELS[model]
    onnx_model = make()
    feeds = {k: np.random.default_rng(3).standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    reference = braze.Builder("cpu").build(onnx_model, braze.BuilderConfig(optimization_level=0))
    engine = braze.Builder("cpu").build(onnx_model, braze.BuilderConfig(optimization_level=level, precision=precision))
    assert any(n.outputs[0].dtype == dtype for n in engine.graph.nodes)
    want = reference.create_execution_context().infer(feeds)
    got = engine.create_execution_context().infer(feeds)
    for name in want:
        assert np.asarray(got[name]).dtype == np.float32
        error = rel_l2(got[name], want[name])
        assert 0 < error <= tolerance(dtype).rel_l2, f"{model} {precision} level {level} {name}: rel L2 {error:.2e}"


def test_a_constant_graph_output_keeps_its_declared_type():
    x, y = Tensor("x", DType.float32, (3,)), Tensor("y", DType.float32, (3,))
    table = Tensor("table", DType.float32, (2,), torch.tensor([0.1, 70000.0]))
    graph = Graph([x], [y, table], [Node("Relu", [x], [y], name="relu")])
    lower_precision(graph, DType.float16)
    graph.verify()
    assert [t.dtype for t in graph.outputs] == [DType.float32, DType.float32]
    assert graph.outputs[1].value.dtype == torch.float32 and graph.outputs[1].value[1] == 70000.0


def test_resize_scales_keep_float32_so_the_output_shape_does_not_change():
    """1.1 is 1.0996 in float16: 10 x 1.1 would floor to 10 rather than 11."""
    net = Net(opset=13)
    x = net.input("x", [1, 2, 10, 10])
    y = net.op("Resize", x, "", net.const([1.0, 1.0, 1.1, 1.1], name="scales"), name="resize", mode="nearest")
    model = net.model(y)
    for dtype in LOW:
        graph = lowered(model, dtype)
        assert graph.outputs[0].shape == (1, 2, 11, 11)
        assert graph.node_by_name("resize").inputs[2].dtype == DType.float32
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 2, 10, 10)).astype(np.float32)}
    want = braze.Builder("cpu").build(model, braze.BuilderConfig(optimization_level=0)) \
        .create_execution_context().infer(feeds)["resize_out"]
    got = braze.Builder("cpu").build(model, braze.BuilderConfig(precision="fp16")) \
        .create_execution_context().infer(feeds)["resize_out"]
    assert got.shape == want.shape and rel_l2(got, want) <= tolerance(DType.float16).rel_l2


def test_a_computed_float_shape_path_keeps_float32():
    """Scales computed at run time from a shape (as exporters write upsampling) stay float32 end to end."""
    net = Net(opset=13)
    x = net.input("x", [1, 2, 10, 10])
    size = net.op("Cast", net.op("Shape", x, name="shape"), name="size_f", to=onnx.TensorProto.FLOAT)
    scales = net.op("Div", net.const([1.0, 2.0, 11.0, 11.0], name="target"), size, name="scales")
    y = net.op("Resize", x, "", scales, name="resize", mode="nearest")
    model = net.model(y)
    graph = lowered(model, DType.float16)
    assert graph.outputs[0].shape == (1, 2, 11, 11)
    for name in ("size_f", "scales"):
        assert graph.node_by_name(name).outputs[0].dtype == DType.float32, name
    assert graph.node_by_name("size_f").attrs["to"] == onnx.TensorProto.FLOAT


def test_constant_nodes_are_narrowed_so_an_unoptimized_build_lowers():
    """At level 0 nothing folds Constant nodes (every TorchScript export has them): their float32 values are
    narrowed with the rest, or an op would mix float16 and float32 inputs."""
    net = Net(opset=13)
    x = net.input("x", [2, 3])
    half = net.op("Constant", name="half", value_float=0.5)
    table = net.op("Constant", name="table", value=onnx.numpy_helper.from_array(
        np.array([1.0, np.inf, -1e38], np.float32)))
    y = net.op("Add", net.op("Mul", x, half, name="mul"), table, name="add")
    model = net.model(y)
    graph = lowered(model, DType.float16)
    assert graph.node_by_name("half").outputs[0].dtype == DType.float16
    assert graph.node_by_name("table").attrs["value"].tolist() == [1.0, float("inf"), -65504.0]
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)}
    want = braze.Builder("cpu").build(model, braze.BuilderConfig(optimization_level=0)) \
        .create_execution_context().infer(feeds)["add_out"]
    got = braze.Builder("cpu").build(model, braze.BuilderConfig(optimization_level=0, precision="fp16")) \
        .create_execution_context().infer(feeds)["add_out"]
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    ordinary = np.abs(want) < 1e4  # -1e38 is clamped to float16's lowest by design
    assert rel_l2(got[ordinary], want[ordinary]) <= tolerance(DType.float16).rel_l2


@pytest.mark.parametrize("shared", ["constant", "computed"])
def test_a_float_shared_by_a_shape_path_and_computation_is_split(shared):
    """The shape path reads float32; the computation reads a float16 copy (a converted constant or a Cast)."""
    net = Net(opset=13)
    x = net.input("x", [1, 2, 10, 10])
    factor = net.const([1.1], name="factor") if shared == "constant" else \
        net.op("Add", net.const([0.6], name="a"), net.const([0.5], name="b"), name="factor")
    scales = net.op("Concat", net.const([1.0, 1.0], name="ones"), factor, factor, name="scales", axis=0)
    up = net.op("Resize", x, "", scales, name="resize", mode="nearest")
    y = net.op("Mul", up, factor, name="scale_values")
    model = net.model(y)
    for dtype in LOW:
        graph = lowered(model, dtype)
        assert graph.outputs[0].shape == (1, 2, 11, 11)
        assert graph.node_by_name("resize").inputs[2].dtype == DType.float32
        mul = graph.node_by_name("scale_values")
        assert [t.dtype for t in mul.inputs] == [dtype, dtype]
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 2, 10, 10)).astype(np.float32)}
    for level in (0, 3):
        want = braze.Builder("cpu").build(model, braze.BuilderConfig(optimization_level=0)) \
            .create_execution_context().infer(feeds)["scale_values_out"]
        got = braze.Builder("cpu").build(model, braze.BuilderConfig(optimization_level=level, precision="fp16")) \
            .create_execution_context().infer(feeds)["scale_values_out"]
        assert got.shape == want.shape and rel_l2(got, want) <= tolerance(DType.float16).rel_l2


def test_an_output_listed_twice_is_cast_back_once():
    x, y = Tensor("x", DType.float32, (4,)), Tensor("y", DType.float32, (4,))
    graph = Graph([x], [y, y], [Node("Relu", [x], [y], name="relu")])
    lower_precision(graph, DType.float16)
    infer_shapes(graph)
    graph.verify()
    assert [n.op for n in graph.nodes] == ["Cast", "Relu", "Cast"]
    assert graph.outputs == [y, y] and y.dtype == DType.float32 and graph.nodes[1].outputs[0].dtype == DType.float16


def _made(net: Net, op: str, x: str) -> str:
    """A float32 tensor of shape [4] that `op` makes with its output type left at its default or named float."""
    size = net.const(4, np.int64, name="size")
    if op == "RandomUniform":
        return net.op(op, name="made", shape=[4], seed=1.0)
    if op == "RandomNormalLike":
        return net.op(op, x, name="made", dtype=onnx.TensorProto.FLOAT, seed=1.0)
    if op == "EyeLike":
        square = net.op("Reshape", x, net.const([2, 2], np.int64), name="square")
        eye = net.op(op, square, name="made", dtype=onnx.TensorProto.FLOAT)
        return net.op("Reshape", eye, net.const([4], np.int64), name="flat")
    return net.op(op, size, name="made")  # the windows: output_datatype defaults to float


@pytest.mark.parametrize("op", ["RandomUniform", "RandomNormalLike", "EyeLike", "HannWindow", "BlackmanWindow"])
def test_ops_that_make_float32_by_attribute_or_default_make_the_low_type(op):
    net = Net(opset=17)
    x = net.input("x", [4])
    y = net.op("Add", x, _made(net, op, x), name="add")
    for dtype in LOW:
        graph = lowered(net.model(y), dtype)
        assert graph.node_by_name("made").outputs[0].dtype == dtype
        assert graph.outputs[0].dtype == DType.float32


def test_a_range_of_float_bounds_keeps_its_length_and_feeds_computation_through_a_cast():
    net = Net(opset=13)
    x = net.input("x", [10])
    r = net.op("Range", net.const(0.0, name="start"), net.const(1.0, name="limit"), net.const(0.1, name="delta"),
               name="range")
    y = net.op("Add", x, r, name="add")
    model = net.model(y, r)
    for dtype in LOW:
        graph = lowered(model, dtype)
        assert graph.node_by_name("range").outputs[0].dtype == DType.float32
        assert [t.dtype for t in graph.node_by_name("add").inputs] == [dtype, dtype]
        assert [(t.dtype, t.shape) for t in graph.outputs] == [(DType.float32, (10,))] * 2
    feeds = {"x": np.random.default_rng(0).standard_normal(10).astype(np.float32)}
    want = braze.Builder("cpu").build(model, braze.BuilderConfig(optimization_level=0)) \
        .create_execution_context().infer(feeds)
    got = braze.Builder("cpu").build(model, braze.BuilderConfig(optimization_level=0, precision="bf16")) \
        .create_execution_context().infer(feeds)
    np.testing.assert_array_equal(got["range_out"], want["range_out"])
    assert rel_l2(got["add_out"], want["add_out"]) <= tolerance(DType.bfloat16).rel_l2


def control_flow_model() -> onnx.ModelProto:
    """Relu -> If (branches read the outer tensor and constants of their own) -> Loop (carried float state)."""
    import onnx.helper as oh
    from onnx.numpy_helper import from_array

    def branch(op: str, const: float, name: str) -> onnx.GraphProto:
        return oh.make_graph([oh.make_node(op, ["h", f"{name}_c"], [f"{name}_out"], name=f"{name}_op")], name, [],
                             [oh.make_tensor_value_info(f"{name}_out", onnx.TensorProto.FLOAT, [4])],
                             [from_array(np.array([const], np.float32), f"{name}_c")])

    body = oh.make_graph(
        [oh.make_node("Mul", ["s_in", "half"], ["s_out"], name="halve"),
         oh.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going")], "body",
        [oh.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
         oh.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
         oh.make_tensor_value_info("s_in", onnx.TensorProto.FLOAT, [4])],
        [oh.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
         oh.make_tensor_value_info("s_out", onnx.TensorProto.FLOAT, [4])],
        [from_array(np.array([0.5], np.float32), "half")])
    graph = oh.make_graph(
        [oh.make_node("Relu", ["x"], ["h"], name="relu"),
         oh.make_node("If", ["c"], ["y"], name="choose", then_branch=branch("Mul", 2.0, "then"),
                      else_branch=branch("Add", 1.0, "else")),
         oh.make_node("Loop", ["n", "", "y"], ["z"], name="repeat", body=body)], "control_flow",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4]),
         oh.make_tensor_value_info("c", onnx.TensorProto.BOOL, []),
         oh.make_tensor_value_info("n", onnx.TensorProto.INT64, [])],
        [oh.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [4])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_control_flow_bodies_are_lowered_with_their_parent(dtype):
    model = control_flow_model()
    graph = lowered(model, dtype)
    branch = graph.node_by_name("choose").attrs["then_branch"]
    body = graph.node_by_name("repeat").attrs["body"]
    assert branch.node_by_name("then_op").inputs[1].dtype == dtype and branch.outputs[0].dtype == dtype
    assert [t.dtype for t in body.inputs] == [DType.int64, DType.bool, dtype]
    assert body.node_by_name("halve").inputs[1].value.dtype == dtype.torch
    assert graph.outputs[0].dtype == DType.float32
    for c in (True, False):
        feeds = {"x": np.array([1, -2, 3, 4], np.float32), "c": np.array(c), "n": np.array(3, np.int64)}
        want = braze.Builder("cpu").build(model, braze.BuilderConfig(optimization_level=0)) \
            .create_execution_context().infer(feeds)["z"]
        precision = {DType.float16: "fp16", DType.bfloat16: "bf16"}[dtype]
        got = braze.Builder("cpu").build(model, braze.BuilderConfig(precision=precision)) \
            .create_execution_context().infer(feeds)["z"]
        assert got.dtype == np.float32 and rel_l2(got, want) <= tolerance(dtype).rel_l2
