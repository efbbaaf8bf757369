"""Malformed and contradictory ONNX models: each class is a BrazeError naming what is wrong and where, never a raw
exception, and never a model built with a declaration silently changed."""

import os
from types import SimpleNamespace

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest
from onnx import TensorProto

import braze
from braze import Builder, BuilderConfig
from braze.build import checks
from braze.device import Target
from braze.frontends.onnx.unsupported import find_unsupported
from braze.errors import BrazeError, ModelError, ShapeError, UnsupportedError
from braze.ir import DType, Graph, Node, Tensor
from braze.ops.infer import Inferred, infer_graph

F = TensorProto.FLOAT


def matmul_model(out_type: int = F, out_shape=(2, 3), x_shape=(2, 4)) -> onnx.ModelProto:
    w = onh.from_array(np.ones((4, 3), np.float32), "w")
    graph = oh.make_graph([oh.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                           oh.make_node("Relu", ["m"], ["y"], name="relu")], "g",
                          [oh.make_tensor_value_info("x", F, list(x_shape))],
                          [oh.make_tensor_value_info("y", out_type, list(out_shape))], [w])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def damaged(model: onnx.ModelProto, text: str) -> bytes:
    """The model's bytes with the first `text` made invalid UTF-8 (same length)."""
    data = model.SerializeToString()
    assert text.encode() in data
    return data.replace(text.encode(), b"\xff" + text.encode()[1:], 1)


# -- strings that are not UTF-8 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,field", [("Relu", r"graph\.node\[1\]\.op_type"), ("relu", r"graph\.node\[1\]\.name"),
                                        ("weights", r"graph\.node\[0\]\.input\[1\]"), ("main", r"graph\.name")])
def test_string_that_is_not_utf8_is_named(text, field):
    model = matmul_model()
    model.graph.node[1].name = "relu"
    model.graph.name = "main"
    model.graph.initializer[0].name = model.graph.node[0].input[1] = "weights"
    with pytest.raises(ModelError, match=f"{field} is not valid UTF-8"):
        braze.parse_onnx(damaged(model, text))


def test_domain_and_attribute_name_not_utf8():
    model = matmul_model()
    model.graph.node[1].domain = "acme"
    model.opset_import.append(oh.make_opsetid("acme", 1))
    with pytest.raises(ModelError, match=r"graph\.node\[1\]\.domain is not valid UTF-8"):
        braze.parse_onnx(damaged(model, "acme"))
    model = matmul_model()
    model.graph.node[1].attribute.append(oh.make_attribute("zzattr", 1))
    with pytest.raises(ModelError, match=r"graph\.node\[1\]\.attribute\[0\]\.name is not valid UTF-8"):
        braze.parse_onnx(damaged(model, "zzattr"))


def test_unsupported_op_whose_name_is_not_utf8():
    """Was onnx's `has_schema(): incompatible function arguments` from the unsupported-op hint."""
    model = matmul_model()
    model.graph.node[1].op_type = "Frobnicate"
    with pytest.raises(ModelError, match="op_type is not valid UTF-8"):
        braze.parse_onnx(damaged(model, "Frobnicate"))


# -- element types ONNX does not define -------------------------------------------------------------------------

def _set_input_type(m):
    m.graph.input[0].type.tensor_type.elem_type = 55


def _set_output_type(m):
    m.graph.output[0].type.tensor_type.elem_type = 55


def _set_initializer_type(m):
    m.graph.initializer[0].data_type = 55


def _set_value_info_type(m):
    m.graph.value_info.append(oh.make_tensor_value_info("m", 55, [2, 3]))


@pytest.mark.parametrize("mutate,name", [(_set_input_type, "input 'x'"), (_set_output_type, "graph output 'y'"),
                                         (_set_initializer_type, "initializer 'w'"),
                                         (_set_value_info_type, "value 'm'")])
def test_unknown_element_type_is_named(mutate, name):
    model = matmul_model()
    mutate(model)
    with pytest.raises(ModelError, match=f"{name} has element type 55, which is not an ONNX element type"):
        braze.parse_onnx(model)


def test_cast_to_unknown_element_type():
    model = matmul_model()
    model.graph.node[1].CopyFrom(oh.make_node("Cast", ["m"], ["y"], name="cast", to=55))
    with pytest.raises(BrazeError, match="'cast'.*55 is not an ONNX element type"):
        Builder("cpu").build(braze.parse_onnx(model))


def test_unknown_element_type_in_the_unsupported_op_report():
    """Was `Enum DataType has no name defined for value 55` while the message was being written."""
    model = matmul_model()
    model.graph.node[1].op_type = "Frobnicate"
    model.graph.value_info.append(oh.make_tensor_value_info("m", 55, [2, 3]))
    with pytest.raises(ModelError, match="value 'm' has element type 55"):  # refused on load, before the report
        braze.parse_onnx(model)
    with pytest.raises(UnsupportedError, match=r"node 'relu' inputs: m <element type 55>\[2,3\]"):
        find_unsupported(model, {"": 17})


# -- external data -----------------------------------------------------------------------------------------------

def external_model(folder, location: str, offset=None, length=None) -> str:
    from onnx.external_data_helper import set_external_data

    model = matmul_model()
    w = model.graph.initializer[0]
    (folder / "w.bin").write_bytes(w.raw_data)
    set_external_data(w, location, offset, length)
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_external_data_that_reads_fine(tmp_path):
    graph = braze.parse_onnx(external_model(tmp_path, "w.bin"))
    assert graph.nodes[0].inputs[1].value.shape == (4, 3)


@pytest.mark.parametrize("location,says", [
    ("absent.bin", "does not exist"),
    ("../outside.bin", "leaves the model's folder"),
    ("sub/../../outside.bin", "leaves the model's folder"),
    ("ABSOLUTE", "an absolute path"),
    ("link.bin", "a symbolic link"),
    ("folder", "not a regular file"),
])
def test_external_data_refused_naming_tensor_and_location(tmp_path, location, says):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "folder").mkdir()
    (tmp_path / "outside.bin").write_bytes(np.ones((4, 3), np.float32).tobytes())
    os.symlink(tmp_path / "outside.bin", model_dir / "link.bin")
    if location == "ABSOLUTE":
        location = str(tmp_path / "outside.bin")
    path = external_model(model_dir, location)
    with pytest.raises(ModelError, match=f"tensor 'w' keeps its data in external file .*{says}") as info:
        braze.parse_onnx(path)
    assert location in str(info.value)


def test_external_data_past_the_end_of_its_file(tmp_path):
    path = external_model(tmp_path, "w.bin", offset=100)
    with pytest.raises(ModelError, match="tensor 'w' .*'w.bin' at offset 100, length None, past the end"):
        braze.parse_onnx(path)
    path = external_model(tmp_path, "w.bin", offset=8, length=48)
    with pytest.raises(ModelError, match="tensor 'w' .*'w.bin' at offset 8, length 48, past the end"):
        braze.parse_onnx(path)
    path = external_model(tmp_path, "w.bin", offset=40)
    with pytest.raises(ModelError, match=r"tensor name: w\) raw_data size \(8 bytes\) is too small"):
        braze.parse_onnx(path)


# -- dims ----------------------------------------------------------------------------------------------------------

def test_negative_declared_dim_refused_at_parse():
    """Was accepted through ops with their own shape rule (Cast), failing only at context creation."""
    model = matmul_model(x_shape=(-3, 4))
    with pytest.raises(ModelError, match="input 'x' declares dim 0 as -3"):
        braze.parse_onnx(model)
    model = matmul_model()
    model.graph.initializer[0].dims[:] = [4, -3]
    with pytest.raises(ModelError, match=r"initializer 'w' has dims \[4, -3\]"):
        braze.parse_onnx(model)


def test_negative_dim_declared_for_a_computed_value_is_settled_by_its_op():
    """ONNX's own inference writes such dims for some invalid nodes: the op's shape rule then says what is wrong."""
    model = matmul_model(out_shape=(2, -3))
    model.graph.value_info.append(oh.make_tensor_value_info("m", F, [2, -7]))
    engine = Builder("cpu").build(model)
    assert engine.outputs[0].shape == (2, 3)


def test_minus_one_on_an_input_is_a_dynamic_dim():
    graph = braze.parse_onnx(matmul_model(x_shape=(-1, 4), out_shape=(-1, 3)))
    assert graph.inputs[0].shape == (None, 4)
    engine = Builder("cpu").build(graph, BuilderConfig(shapes={"x": (5, 4)}))
    out = engine.create_execution_context().infer({"x": np.ones((5, 4), np.float32)})["y"]
    np.testing.assert_allclose(out, np.full((5, 3), 4.0))


def test_negative_computed_dim_is_a_shape_error():
    x = Tensor("x", DType.float32, (2, 3))
    y = Tensor("y")
    graph = Graph(inputs=[x], outputs=[y], nodes=[Node("Odd", [x], [y], {}, name="odd")])
    rule = SimpleNamespace(wants_dtypes=True, infer=lambda node, values: [Inferred(DType.float32, (2, -3))])
    with pytest.raises(ShapeError, match=r"node 'odd' .*output 'y' comes out with a negative dim \[2, -3\]"):
        infer_graph(graph, lambda node: rule)


# -- declarations that contradict the ops ("accepted though invalid") ------------------------------------------

def test_output_declared_float16_while_the_op_makes_float32():
    """Was built and run, the output silently float32 (onnxruntime and onnx's full checker refuse the model)."""
    with pytest.raises(ModelError, match=r"graph output 'y', made by node 'relu' \(Relu\), is declared float16 in "
                                         "the model, but the op makes float32"):
        Builder("cpu").build(matmul_model(out_type=TensorProto.FLOAT16))


def test_value_info_of_another_dtype_inside_a_subgraph():
    then = oh.make_graph([oh.make_node("Cast", ["x"], ["t"], name="to_int", to=TensorProto.INT32)], "then", [],
                         [oh.make_tensor_value_info("t", TensorProto.INT64, [2])])
    other = oh.make_graph([oh.make_node("Cast", ["x"], ["e"], name="also_int", to=TensorProto.INT32)], "else", [],
                          [oh.make_tensor_value_info("e", TensorProto.INT64, [2])])
    graph = oh.make_graph([oh.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=other)], "g",
                          [oh.make_tensor_value_info("c", TensorProto.BOOL, []),
                           oh.make_tensor_value_info("x", F, [2])],
                          [oh.make_tensor_value_info("y", TensorProto.INT64, [2])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    with pytest.raises(ModelError, match=r"'(t|e|y)', made by node '(to_int|also_int|if)' \((Cast|If)\), is declared "
                                         "int64 in the model, but the op makes int32"):
        Builder("cpu").build(braze.parse_onnx(model, check=False))


@pytest.mark.parametrize("shape", [(2, 7), (2, 3, 1)])
def test_output_declared_of_another_shape_is_logged_and_the_op_wins(shape, caplog):
    """onnxruntime runs such models with a warning, and exporters store ONNX's own inference, which some ops
    (pools with ceil_mode, Upsample-7) contradict: braze builds the op's shape and says so."""
    engine = Builder("cpu").build(matmul_model(out_shape=shape))
    assert engine.outputs[0].shape == (2, 3)
    assert f"graph output 'y', made by node 'relu' (Relu), is declared {list(shape)}".replace(" ", "") in \
        caplog.text.replace(" ", "")
    assert "the op makes [2,3]" in caplog.text


def test_builder_checks_declarations_on_bound_shapes():
    """Symbolic dims are only known once bound: the builder compares what the model declares with what it infers
    (also for graphs that never went through ONNX's checker)."""
    graph = braze.parse_onnx(matmul_model(x_shape=("n", 4), out_shape=("n", 3)), check=False)
    graph.outputs[0].dtype = DType.float16
    with pytest.raises(ModelError, match=r"graph output 'y', made by node 'relu' \(Relu\), is declared float16 "
                                         "in the model, but the op makes float32"):
        Builder("cpu").build(graph, BuilderConfig(shapes={"x": (2, 4)}))


# -- ONNX's ML domain ---------------------------------------------------------------------------------------------

def test_ml_domain_is_named_with_its_opset():
    model = matmul_model()
    model.graph.node[1].CopyFrom(oh.make_node("Normalizer", ["m"], ["y"], name="norm", domain="ai.onnx.ml"))
    model.opset_import.append(oh.make_opsetid("ai.onnx.ml", 3))
    with pytest.raises(UnsupportedError) as info:
        braze.parse_onnx(model)
    text = str(info.value)
    assert "ai.onnx.ml.Normalizer x1 - an op of ONNX's ML domain (ai.onnx.ml, opset 3)" in text
    assert "custom domain" not in text and "opset ?" not in text


def test_model_without_the_default_opset_says_which_it_imports():
    model = matmul_model()
    del model.graph.node[:]
    model.graph.node.append(oh.make_node("Normalizer", ["x"], ["y"], name="norm", domain="ai.onnx.ml"))
    del model.graph.initializer[:]
    del model.opset_import[:]
    model.opset_import.append(oh.make_opsetid("ai.onnx.ml", 3))
    with pytest.raises(UnsupportedError, match=r"\(1 node\(s\), no ai.onnx opset, ai.onnx.ml opset 3\)"):
        braze.parse_onnx(model, check=False)


# -- memory from a declared size ----------------------------------------------------------------------------------

def test_declared_size_beyond_the_device_memory_is_refused_at_build():
    """Was an engine whose context then tried to allocate 160 GB."""
    model = matmul_model(x_shape=(10 ** 10, 4), out_shape=(10 ** 10, 3))
    with pytest.raises(BrazeError, match=r"the engine's tensor '\w+' float32\[10000000000,\d\] alone needs "
                                         r"[\d,.]+ GiB of cpu memory .*, and only [\d,.]+ \w+ is available"):
        Builder("cpu").build(model)


def test_planned_arena_beyond_the_device_memory_is_refused(monkeypatch):
    graph = braze.parse_onnx(matmul_model())
    monkeypatch.setattr("braze.device.available_memory", lambda target: 1000)
    with pytest.raises(BrazeError, match=r"the engine needs 1\.00 MiB of cpu memory \(1\.00 MiB of activations\), "
                                         "and only 1000 bytes is available"):
        checks.check_memory(graph, Target.parse("cpu"), arena_size=1 << 20)
    checks.check_memory(graph, Target.parse("cpu"), arena_size=900)


# -- attributes and control flow the fuzzer found accepted ----------------------------------------------------------

def test_loop_that_never_ends_is_refused_at_build():
    body = oh.make_graph([oh.make_node("Identity", ["cond"], ["cond_out"], name="keep"),
                          oh.make_node("Neg", ["v"], ["v_out"], name="neg")], "body",
                         [oh.make_tensor_value_info("i", TensorProto.INT64, []),
                          oh.make_tensor_value_info("cond", TensorProto.BOOL, []),
                          oh.make_tensor_value_info("v", F, [2])],
                         [oh.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                          oh.make_tensor_value_info("v_out", F, [2])])
    graph = oh.make_graph([oh.make_node("Loop", ["", "", "x"], ["y"], name="forever", body=body)], "g",
                          [oh.make_tensor_value_info("x", F, [2])], [oh.make_tensor_value_info("y", F, [2])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    with pytest.raises(ModelError, match=r"node 'forever' \(Loop\).*no trip count and its condition stays true "
                                         r"\(its body gives 'cond_out' true in every trip\): the loop never ends"):
        Builder("cpu").build(model)


def test_gemm_flag_that_is_not_0_or_1():
    """onnx and onnxruntime read transB=-2**40 as 0 (a 32-bit cast) and refuse the model; braze read it as 1."""
    model = matmul_model()
    model.graph.node[0].CopyFrom(oh.make_node("Gemm", ["x", "w"], ["m"], name="gemm", transB=-(2 ** 40)))
    with pytest.raises(ShapeError, match="node 'gemm'.*transA and transB are flags, 0 or 1; got 0 and -1099511627776"):
        Builder("cpu").build(model)


def test_conv_pads_given_empty():
    x = oh.make_tensor_value_info("x", F, [1, 1, 4, 4])
    w = onh.from_array(np.ones((1, 1, 3, 3), np.float32), "w")
    conv = oh.make_node("Conv", ["x", "w"], ["y"], name="conv")
    conv.attribute.append(oh.make_attribute("pads", [], attr_type=onnx.AttributeProto.INTS))
    graph = oh.make_graph([conv], "g", [x], [oh.make_tensor_value_info("y", F, [1, 1, 2, 2])], [w])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    with pytest.raises(ShapeError, match=r"node 'conv'.*pads has 0 values, expected 4"):
        Builder("cpu").build(model)


def test_output_declared_of_a_type_braze_lacks_while_the_op_makes_another():
    with pytest.raises(ModelError, match="graph output 'y' is declared complex64 in the model, but its op makes "
                                         "float32; braze does not support complex64"):
        braze.parse_onnx(matmul_model(out_type=TensorProto.COMPLEX64), check=False)
