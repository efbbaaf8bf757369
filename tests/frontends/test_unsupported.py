"""Unsupported ops: one UnsupportedError names every offending node, its inputs' types as the model
declares them, and what would avoid the op (another opset, another exporter setting)."""

from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest

import braze
from braze.errors import UnsupportedError
from braze.frontends.onnx.unsupported import DETAILED_NODES

F, I64, STR = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.STRING
BERT = Path(__file__).parents[1] / "data" / "bert_torchscript.onnx"


def model_of(nodes, inputs, outputs, opsets=(("", 17),), initializers=(), value_info=()):
    graph = oh.make_graph(nodes, "g", inputs, outputs, list(initializers), value_info=list(value_info))
    return oh.make_model(graph, opset_imports=[oh.make_opsetid(d, v) for d, v in opsets])


def error_of(model) -> str:
    with pytest.raises(UnsupportedError) as info:
        braze.parse_onnx(model, check=False)
    return str(info.value)


def single_op(op_type, domain="", opset=17, inputs=(("x", F, ["batch", 4]),), **attrs) -> str:
    """The error for a model of one node of `op_type` reading graph inputs of the given types."""
    values = [oh.make_tensor_value_info(name, elem, shape) for name, elem, shape in inputs]
    node = oh.make_node(op_type, [name for name, _, _ in inputs], ["y"], name="the_node", domain=domain, **attrs)
    opsets = [("", opset)] + ([(domain, 1)] if domain else [])
    return error_of(model_of([node], values, [oh.make_tensor_value_info("y", F, None)], opsets))


def test_every_offender_named_with_its_inputs_types_in_one_error():
    w = onh.from_array(np.ones((4, 3), np.float32), "w")
    nodes = [oh.make_node("Relu", ["x"], ["a"], name="ok"),
             oh.make_node("Constant", [], ["k"], name="k", value=onh.from_array(np.arange(2, dtype=np.int64))),
             oh.make_node("FancyOp", ["a", "w", "", "k"], ["b"], name="fancy1", domain="acme"),
             oh.make_node("FancyOp", ["b"], ["c"], domain="acme"),
             oh.make_node("FusedConv", ["c", "mystery"], ["y"], name="ms", domain="com.microsoft")]
    model = model_of(nodes, [oh.make_tensor_value_info("x", F, ["batch", 4]),
                             oh.make_tensor_value_info("mystery", onnx.TensorProto.UNDEFINED, None)],
                     [oh.make_tensor_value_info("y", F, [2])],
                     [("", 17), ("acme", 1), ("com.microsoft", 1)], [w],
                     [oh.make_tensor_value_info("b", onnx.TensorProto.FLOAT16, [None, 3])])
    text = error_of(model)
    assert text.startswith("model uses 2 op type(s) braze does not support (3 node(s), opset 17):\n")
    lines = text.splitlines()
    assert lines[1].startswith("  acme.FancyOp x2 - custom domain 'acme'")
    assert lines[2] == ("    node 'fancy1' inputs: a float32[batch,4], w float32[4,3] (initializer), "
                        "k int64[2] (constant)")
    assert lines[3] == "    node '<unnamed, output c>' inputs: b float16[?,3]"
    assert lines[4].startswith("  com.microsoft.FusedConv x1 - an onnxruntime contrib op")
    assert lines[5] == "    node 'ms' inputs: c (undeclared), mystery ?"
    assert "Relu" not in text and len(lines) == 6


def test_types_filled_in_by_shape_inference():
    nodes = [oh.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             oh.make_node("FancyOp", ["h"], ["y"], name="fancy", domain="acme")]
    w = onh.from_array(np.ones((4, 8), np.float32), "w")
    model = model_of(nodes, [oh.make_tensor_value_info("x", F, ["batch", 4])],
                     [oh.make_tensor_value_info("y", F, None)], [("", 17), ("acme", 1)], [w])
    assert "node 'fancy' inputs: h float32[batch,8]" in error_of(model)


def test_many_nodes_of_one_op_listed_by_name_past_the_detailed_ones():
    count = DETAILED_NODES + 3
    nodes = [oh.make_node("FancyOp", [f"v{i}"], [f"v{i + 1}"], name=f"f{i}", domain="acme") for i in range(count)]
    text = error_of(model_of(nodes, [oh.make_tensor_value_info("v0", F, [2])],
                             [oh.make_tensor_value_info(f"v{count}", F, [2])], [("", 17), ("acme", 1)]))
    assert f"acme.FancyOp x{count} " in text
    assert sum(line.startswith("    node ") for line in text.splitlines()) == DETAILED_NODES
    assert text.endswith(f"and 3 more: 'f{count - 3}', 'f{count - 2}', 'f{count - 1}'")


def test_node_inside_a_subgraph_is_reported():
    inner = oh.make_graph([oh.make_node("FancyOp", ["x"], ["z"], name="inner_fancy", domain="acme")], "then", [],
                          [oh.make_tensor_value_info("z", F, [2])])
    other = oh.make_graph([oh.make_node("Identity", ["x"], ["z2"])], "else", [],
                          [oh.make_tensor_value_info("z2", F, [2])])
    node = oh.make_node("If", ["cond"], ["y"], name="branch", then_branch=inner, else_branch=other)
    model = model_of([node], [oh.make_tensor_value_info("cond", onnx.TensorProto.BOOL, []),
                              oh.make_tensor_value_info("x", F, [2])],
                     [oh.make_tensor_value_info("y", F, [2])], [("", 17), ("acme", 1)])
    assert "node 'inner_fancy' inputs: x float32[2]" in error_of(model)


def test_op_braze_has_from_a_later_opset():
    text = single_op("Gelu", opset=17)
    assert "Gelu x1 - braze implements it from opset 20: re-export with opset >= 20" in text
    assert "opset_version=20" in text


def test_onnxruntime_contrib_op_and_its_standard_counterpart():
    text = single_op("Gelu", domain="com.microsoft")
    assert "onnxruntime contrib op" in text and "before onnxruntime optimized it" in text
    assert "standard ONNX has Gelu from opset 20, which braze implements" in text
    assert "standard ONNX" not in single_op("BiasGelu", domain="com.microsoft")


def test_onnxruntime_quantized_op_points_to_qdq():
    assert "quant_format=QuantFormat.QDQ" in single_op("QLinearConv", domain="com.microsoft")


def test_training_op():
    text = single_op("Adam", domain="ai.onnx.preview.training")
    assert "a training op: export the model for inference" in text and "TrainingMode.EVAL" in text


def test_strings():
    text = single_op("StringNormalizer", inputs=(("text", STR, [1, 3]),))
    assert "node 'the_node' inputs: text string[1,3]" in text
    assert "works on strings, which braze does not support" in text
    assert "works on strings" in single_op("MadeUpTextOp", domain="acme", inputs=(("text", STR, [2]),))


def test_aten_fallback_named_even_where_the_checker_fails():
    """The TorchScript exporter's ATen fallback also writes a Constant of a string, which fails checking:
    the unsupported ops are the story worth telling, with the checker's complaint after it."""
    nodes = [oh.make_node("Constant", [], ["mode"], name="c", value="L"),
             oh.make_node("ATen", ["x", "mode"], ["y"], name="eig", domain="org.pytorch.aten",
                          operator="linalg_eigvalsh", overload_name="")]
    model = model_of(nodes, [oh.make_tensor_value_info("x", F, [2, 4, 4])], [oh.make_tensor_value_info("y", F, None)],
                     [("", 17), ("org.pytorch.aten", 1)])
    with pytest.raises(UnsupportedError) as info:
        braze.parse_onnx(model)
    text = str(info.value)
    assert "org.pytorch.aten.ATen x1 - a PyTorch op the TorchScript exporter had no ONNX translation for" in text
    assert "node 'eig' (aten::linalg_eigvalsh) inputs: x float32[2,4,4]" in text
    assert text.splitlines()[-1].startswith("(it also fails ONNX checking: ")


def test_checker_error_stands_where_every_op_is_supported():
    model = model_of([oh.make_node("Relu", ["x"], ["y"], name="r", bogus=1)], [oh.make_tensor_value_info("x", F, [2])],
                     [oh.make_tensor_value_info("y", F, [2])])
    with pytest.raises(braze.BrazeError, match="fails ONNX checking") as info:
        braze.parse_onnx(model)
    assert not isinstance(info.value, UnsupportedError)


def test_not_an_onnx_op_and_an_onnx_op_braze_lacks():
    assert "not an ONNX op" in single_op("MyCustomOp")
    assert single_op("ImageDecoder", opset=20, inputs=(("data", onnx.TensorProto.UINT8, [100]),)).splitlines()[1] \
        == "  ImageDecoder x1 - an ONNX op braze does not implement"


def test_domain_not_imported():
    node = oh.make_node("Thing", ["x"], ["y"], name="t", domain="nowhere")
    text = error_of(model_of([node], [oh.make_tensor_value_info("x", F, [2])],
                             [oh.make_tensor_value_info("y", F, [2])]))
    assert "domain 'nowhere' is not imported by the model" in text


def test_model_optimized_by_onnxruntime():
    """A real exported BERT after onnxruntime's transformer optimizer: its fused contrib ops, all named."""
    optimizer = pytest.importorskip("onnxruntime.transformers.optimizer")
    model = optimizer.optimize_model(str(BERT), model_type="bert", num_heads=2, hidden_size=32, opt_level=1).model
    contrib = {n.name for n in model.graph.node if n.domain == "com.microsoft"}
    assert contrib
    text = error_of(model)
    for name in contrib:
        assert f"    node {name!r} inputs: " in text
    assert "give braze the model as exported, before onnxruntime optimized it" in text
