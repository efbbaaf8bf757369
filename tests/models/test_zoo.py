"""The model zoo: each model's export has the structure of the real architecture, its torch module
and onnxruntime agree, and a braze CPU engine built from it matches onnxruntime."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from onnx.numpy_helper import to_array
from torch import nn

import braze
from braze import zoo
from braze.frontends.onnx.loader import load_model
from braze.testing import rel_l2, tolerance

RTOL_L2 = tolerance("float32").rel_l2
CNNS = ("resnet50", "mobilenetv2")


def test_names():
    assert zoo.names() == ["resnet50", "mobilenetv2", "bert", "vit"]


def test_unknown_name_lists_the_known_ones():
    for call in (zoo.load, zoo.torch_module, zoo.default_shapes, zoo.sample_inputs, braze.parse_onnx):
        arg = "zoo:resnet18" if call is braze.parse_onnx else "resnet18"
        with pytest.raises(braze.BrazeError, match="resnet18.*resnet50, mobilenetv2, bert, vit"):
            call(arg)


def test_other_opsets():
    assert zoo.load("vit", opset=13).opset_import[0].version == 13
    with pytest.raises(braze.BrazeError, match="opset 21"):
        zoo.load("vit", opset=21)


def test_zoo_name_is_a_model_source():
    model, where = load_model("zoo:vit")
    assert where == "zoo:vit" and model == zoo.load("vit")


def test_sample_inputs(zoo_name):
    first, again = zoo.sample_inputs(zoo_name, batch=2), zoo.sample_inputs(zoo_name, batch=2)
    other = zoo.sample_inputs(zoo_name, batch=2, seed=1)
    shapes = zoo.default_shapes(zoo_name, batch=2)
    assert list(first) == list(shapes)
    for spec, (name, value) in zip(zoo.spec(zoo_name).inputs, first.items()):
        assert value.shape == shapes[name] and value.dtype == spec.dtype
        np.testing.assert_array_equal(value, again[name])
        assert not np.array_equal(value, other[name])
    if zoo_name == "bert":
        ids, mask = first["input_ids"], first["attention_mask"]
        assert ids.min() >= 0 and ids.max() < 30522
        assert set(np.unique(mask)) == {0, 1}
        for row in mask:  # ones, then padding zeros to the end
            length = int(row.sum())
            assert 0 < length < len(row) and row[:length].all() and not row[length:].any()
    else:
        assert first["input"].std() > 0.5


def test_export_structure(zoo_name, zoo_model):
    spec = zoo.spec(zoo_name)
    ops = Counter(n.op_type for n in zoo_model.graph.node)
    assert spec.op_types <= set(ops), f"missing {spec.op_types - set(ops)}"
    assert [i.name for i in zoo_model.graph.input] == [i.name for i in spec.inputs]
    assert [o.name for o in zoo_model.graph.output] == list(spec.outputs)
    for value in (*zoo_model.graph.input, *zoo_model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    if zoo_name in CNNS:  # BatchNorm left for braze to fold, one per convolution, with nontrivial parameters
        assert ops["BatchNormalization"] == ops["Conv"]
        weights = {i.name: i for i in zoo_model.graph.initializer}
        for node in zoo_model.graph.node:
            if node.op_type == "BatchNormalization":
                for name in node.input[1:]:
                    assert not np.isin(to_array(weights[name]), (0.0, 1.0)).any(), name
    else:
        assert ops["Softmax"] == ops["Erf"] == 12
        assert ops["LayerNormalization"] == 25


def test_torch_matches_onnxruntime(zoo_name, ort_reference):
    module = zoo.torch_module(zoo_name)
    assert not module.training
    scales = []
    hooks = [m.register_forward_hook(lambda m, i, out: scales.append(float(out.float().std())))
             for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.LayerNorm, nn.BatchNorm2d))]
    with torch.no_grad():
        outputs = module(*(torch.from_numpy(v) for v in ort_reference.feeds.values()))
    for h in hooks:
        h.remove()
    assert 0.01 < min(scales) and max(scales) < 100, "activations collapse or blow up inside the network"
    expected = ort_reference.outputs[zoo.spec(zoo_name).outputs[0]]
    actual = outputs.numpy()
    assert np.isfinite(actual).all()
    assert actual.std() > 0.05 and np.ptp(actual) > 0.1
    assert rel_l2(actual, expected) <= RTOL_L2


def test_zoo_name_parses(zoo_name, zoo_model, zoo_graph):
    assert [t.name for t in zoo_graph.inputs] == [i.name for i in zoo_model.graph.input]
    assert [t.name for t in zoo_graph.outputs] == list(zoo.spec(zoo_name).outputs)


def test_braze_matches_onnxruntime(zoo_name, zoo_graph, ort_reference):
    config = braze.BuilderConfig(shapes=zoo.default_shapes(zoo_name))
    engine = braze.Builder("cpu").build(zoo_graph, config)
    outputs = engine.create_execution_context().infer(ort_reference.feeds)
    for name, expected in ort_reference.outputs.items():
        assert rel_l2(outputs[name], expected) <= RTOL_L2, name


def test_builder_takes_zoo_name():
    engine = braze.Builder("cpu").build("zoo:vit", braze.BuilderConfig(shapes=zoo.default_shapes("vit", batch=2)))
    assert [(b.name, tuple(b.shape)) for b in engine.inputs] == [("input", (2, 3, 224, 224))]
