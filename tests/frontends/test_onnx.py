"""The ONNX frontend: what it accepts, and a clear error for everything it must refuse."""

import numpy as np
import onnx
import onnx.helper as oh
import pytest

import braze
from braze.errors import ModelError, ShapeError, UnsupportedError

from ..conftest import tiny_act


def test_parses_path_bytes_and_proto_alike(tmp_path):
    model = tiny_act()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    graphs = [braze.parse_onnx(model), braze.parse_onnx(model.SerializeToString()), braze.parse_onnx(str(path)),
              braze.parse_onnx(path)]
    assert {str(g) for g in graphs} == {str(graphs[0])}
    g = graphs[0]
    assert [n.op for n in g.nodes] == ["PRelu", "Sigmoid", "Clip", "Tanh"]
    assert [n.version for n in g.nodes] == [1, 1, 11, 1]
    assert g.inputs[0].shape == (2, 3, 4, 5) and g.inputs[0].dtype == braze.DType.float32


def test_garbage_and_empty_bytes_are_not_onnx():
    with pytest.raises(ModelError, match="not an ONNX model"):
        braze.parse_onnx(b"\xff\xfe this is not protobuf \x00\x01" * 10)
    with pytest.raises(ModelError, match="empty"):
        braze.parse_onnx(b"")


def test_truncated_model_file(tmp_path):
    data = tiny_act().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.onnx"):
        braze.parse_onnx(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        braze.parse_onnx(tmp_path / "absent.onnx")
    with pytest.raises(ModelError, match="is a directory"):
        braze.parse_onnx(tmp_path)


def test_model_failing_onnx_checker():
    model = tiny_act()
    model.graph.node[1].input[0] = "does_not_exist"
    with pytest.raises(ModelError, match="fails ONNX checking"):
        braze.parse_onnx(model)


def test_all_unsupported_ops_reported_at_once():
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    nodes = [oh.make_node("Relu", ["x"], ["a"], name="ok"),
             oh.make_node("FancyOp", ["a"], ["b"], name="fancy1", domain="acme"),
             oh.make_node("FancyOp", ["b"], ["c"], name="fancy2", domain="acme"),
             oh.make_node("FusedConv", ["c"], ["y"], name="ms", domain="com.microsoft")]
    model = oh.make_model(oh.make_graph(nodes, "g", [x], [y]),
                          opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("acme", 1),
                                         oh.make_opsetid("com.microsoft", 1)])
    with pytest.raises(UnsupportedError) as info:
        braze.parse_onnx(model, check=False)
    text = str(info.value)
    assert "2 op type(s)" in text and "3 node(s)" in text
    assert "acme.FancyOp x2 - " in text and "node 'fancy1'" in text and "node 'fancy2'" in text
    assert "com.microsoft.FusedConv x1 - " in text and "node 'ms'" in text


def test_symbolic_dims_need_shapes():
    model = tiny_act(batch="N")
    graph = braze.parse_onnx(model)
    assert graph.inputs[0].shape == ("N", 3, 4, 5)
    with pytest.raises(ShapeError, match="'x' \\[N,3,4,5\\].*--shapes x:Nx3x4x5"):
        braze.Builder("cpu").build(graph, braze.BuilderConfig())
    engine = braze.Builder("cpu").build(graph, braze.BuilderConfig(shapes={"x": (3, 3, 4, 5)}))
    assert engine.inputs[0].shape == (3, 3, 4, 5)
    out = engine.create_execution_context().infer({"x": np.ones((3, 3, 4, 5), np.float32)})
    assert out["y"].shape == (3, 3, 4, 5)


def test_bad_shapes_option():
    graph = braze.parse_onnx(tiny_act(batch="N"))
    with pytest.raises(ShapeError, match="'z', which the model does not have"):
        braze.Builder("cpu").build(graph, braze.BuilderConfig(shapes={"x": (1, 3, 4, 5), "z": (1,)}))
    with pytest.raises(ShapeError, match="rank 4"):
        braze.Builder("cpu").build(graph, braze.BuilderConfig(shapes={"x": (1, 3, 4)}))
    with pytest.raises(ShapeError, match="differs in dim 1"):
        braze.Builder("cpu").build(graph, braze.BuilderConfig(shapes={"x": (1, 4, 4, 5)}))


def test_external_data(tmp_path):
    model = tiny_act()
    path = tmp_path / "ext.onnx"
    onnx.save(tiny_act(), path, save_as_external_data=True, all_tensors_to_one_file=True, location="ext.bin",
              size_threshold=0)
    assert (tmp_path / "ext.bin").exists()
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    expected = braze.Builder("cpu").build(braze.parse_onnx(model), braze.BuilderConfig())
    got = braze.Builder("cpu").build(braze.parse_onnx(path), braze.BuilderConfig())
    np.testing.assert_array_equal(got.create_execution_context().infer({"x": x})["y"],
                                  expected.create_execution_context().infer({"x": x})["y"])
    with pytest.raises(ModelError, match="ext.bin"):
        braze.parse_onnx(path.read_bytes(), check=False)
    assert braze.parse_onnx(path.read_bytes(), base_dir=tmp_path, check=False).nodes


def test_initializer_listed_as_input_is_a_constant():
    model = tiny_act()
    model.graph.input.append(oh.make_tensor_value_info("slope", onnx.TensorProto.FLOAT, [4, 5]))
    graph = braze.parse_onnx(model, check=False)
    assert [t.name for t in graph.inputs] == ["x"]
    assert graph.nodes[0].inputs[1].is_constant


def test_missing_default_opset():
    model = tiny_act()
    del model.opset_import[:]
    model.opset_import.append(oh.make_opsetid("acme", 1))
    with pytest.raises(ModelError, match="default ONNX opset"):
        braze.parse_onnx(model, check=False)


def test_map_input_is_unsupported():
    entries = oh.make_map_type_proto(onnx.TensorProto.INT64, oh.make_tensor_type_proto(onnx.TensorProto.FLOAT, [2]))
    m = oh.make_value_info("m", entries)
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    model = oh.make_model(oh.make_graph([oh.make_node("Identity", ["m"], ["y"])], "g", [m], [y]),
                          opset_imports=[oh.make_opsetid("", 17)])
    with pytest.raises(UnsupportedError, match="'m' is a map_type"):
        braze.parse_onnx(model, check=False)


def test_sequence_of_strings_is_unsupported():
    seq = oh.make_tensor_sequence_value_info("s", onnx.TensorProto.STRING, [2])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.INT64, [])
    model = oh.make_model(oh.make_graph([oh.make_node("SequenceLength", ["s"], ["y"])], "g", [seq], [y]),
                          opset_imports=[oh.make_opsetid("", 17)])
    with pytest.raises(UnsupportedError, match="(?i)'?s'? .*string"):
        braze.parse_onnx(model, check=False)


def test_tensor_op_reading_a_sequence_names_the_node():
    seq = oh.make_tensor_sequence_value_info("s", onnx.TensorProto.FLOAT, [2])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    model = oh.make_model(oh.make_graph([oh.make_node("Relu", ["s"], ["y"], name="relu")], "g", [seq], [y]),
                          opset_imports=[oh.make_opsetid("", 17)])
    graph = braze.parse_onnx(model, check=False)
    assert graph.inputs[0].kind == "sequence" and graph.inputs[0].type_str() == "seq(float32[2])"
    with pytest.raises(braze.BrazeError, match="node 'relu' \\(Relu\\).*'s' is a sequence; Relu takes tensors"):
        braze.Builder().build(graph)


def test_bad_attribute_names_node():
    model = tiny_act()
    model.graph.node[1].attribute.append(oh.make_attribute("bogus", 3))
    with pytest.raises(braze.BrazeError, match="node 'sigmoid' \\(Sigmoid\\).*bogus"):
        braze.parse_onnx(model, check=False)
