"""Attention (opsets 23-25) against onnxruntime, FlexAttention against ONNX's reference evaluator."""

import math

import ml_dtypes
import numpy as np
import onnx
import onnx.helper as oh
import pytest
import torch
from onnx.reference import ReferenceEvaluator

import braze
from braze.testing import assert_close

from .harness import check_op, feeds_of, make_model, rand, run_braze, run_ort

F16 = np.float16


def expect_build_error(op_type, inputs, attrs=None, *, opset, match, n_outputs=1, domain="", dtype=np.float32):
    """Building and running the node in braze fails with a BrazeError that names the node."""
    model = make_model(op_type, inputs, attrs, opset=opset, n_outputs=n_outputs, domain=domain)
    for out in model.graph.output:  # ONNX's inference gave up on the bad node: declare a type
        if out.type.tensor_type.elem_type == onnx.TensorProto.UNDEFINED:
            out.type.tensor_type.elem_type = oh.np_dtype_to_tensor_dtype(np.dtype(dtype))
            out.type.tensor_type.shape.SetInParent()
    with pytest.raises(braze.BrazeError, match=match) as info:
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False), braze.BuilderConfig())
        engine.create_execution_context().infer(feeds_of(inputs))
    assert f"{op_type.lower()}_node" in str(info.value)


def qkv(b, hq, hkv, s, l, d, dv=None, *, dtype=np.float32, three_d=False):
    dv = d if dv is None else dv
    q, k, v = rand(b, hq, s, d, dtype=dtype), rand(b, hkv, l, d, dtype=dtype), rand(b, hkv, l, dv, dtype=dtype)
    if three_d:
        q, k, v = (x.transpose(0, 2, 1, 3).reshape(b, x.shape[2], -1) for x in (q, k, v))
    return {"q": q, "k": k, "v": v}


@pytest.mark.parametrize("opset", [23, 24, 25])
@pytest.mark.parametrize("dims", [(2, 3, 3, 4, 6, 8, 8), (1, 4, 2, 5, 5, 16, 8), (2, 6, 1, 1, 7, 4, 4)])
@pytest.mark.parametrize("attrs", [{}, {"scale": 0.3}, {"is_causal": 1}, {"softcap": 1.5, "is_causal": 1}])
def test_attention_4d(opset, dims, attrs):
    check_op("Attention", qkv(*dims), attrs, opset=opset)


@pytest.mark.parametrize("heads", [(3, 3), (6, 2), (4, 1)])
@pytest.mark.parametrize("attrs", [{}, {"is_causal": 1, "scale": 0.2}])
def test_attention_3d(heads, attrs):
    inputs = qkv(2, *heads, 5, 7, 4, 6, three_d=True)
    check_op("Attention", inputs, {"q_num_heads": heads[0], "kv_num_heads": heads[1], **attrs}, opset=23)


@pytest.mark.parametrize("mask_shape", [(4, 6), (2, 1, 4, 6), (2, 3, 4, 6), (3, 4, 6)])
@pytest.mark.parametrize("kind", ["float", "bool"])
@pytest.mark.parametrize("causal", [0, 1])
def test_attention_masks(mask_shape, kind, causal):
    mask = rand(*mask_shape, dtype=bool if kind == "bool" else np.float32, seed=7)
    if kind == "bool":
        mask[..., 0] = True  # every row keeps a key
    check_op("Attention", {**qkv(2, 3, 3, 4, 6, 8), "attn_mask": mask}, {"is_causal": causal}, opset=23)


def test_attention_fully_masked_rows_are_zero():
    mask = np.ones((4, 6), dtype=bool)
    mask[1] = False
    y = check_op("Attention", {**qkv(1, 2, 2, 4, 6, 8), "attn_mask": mask}, opset=24)[0]
    assert not np.isnan(y).any() and (y[:, :, 1] == 0).all()


@pytest.mark.parametrize("three_d", [False, True])
@pytest.mark.parametrize("causal", [0, 1])
def test_attention_past_and_present(three_d, causal):
    inputs = qkv(2, 4, 2, 3, 3, 8, three_d=three_d)
    attrs = {"is_causal": causal, **({"q_num_heads": 4, "kv_num_heads": 2} if three_d else {})}
    past = {"attn_mask": None, "past_key": rand(2, 2, 5, 8, seed=3), "past_value": rand(2, 2, 5, 8, seed=4)}
    check_op("Attention", {**inputs, **past}, attrs, opset=23, n_outputs=3)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_attention_qk_matmul_output(mode):
    """Y and qk_matmul_output, without the present key and value (left out of the node)."""
    inputs = {**qkv(2, 2, 2, 4, 6, 8), "attn_mask": rand(4, 6, seed=5)}
    model = make_model("Attention", inputs, {"qk_matmul_output_mode": mode, "softcap": 2.0}, opset=23, n_outputs=4)
    node = model.graph.node[0]
    node.output[1] = node.output[2] = ""
    kept = [o for o in model.graph.output if o.name in node.output]
    del model.graph.output[:]
    model.graph.output.extend(oh.make_tensor_value_info(o.name, onnx.TensorProto.FLOAT, [2, 2, 4, None]) for o in kept)
    feeds = feeds_of(inputs)
    for actual, expected in zip(run_braze(model, feeds), run_ort(model, feeds)):
        assert_close(actual, expected)


@pytest.mark.parametrize("causal", [0, 1])
def test_attention_nonpad_kv_seqlen(causal):
    inputs = {**qkv(3, 4, 2, 2, 6, 8), "attn_mask": None, "past_key": None, "past_value": None,
              "nonpad_kv_seqlen": np.array([6, 3, 4], dtype=np.int64)}
    check_op("Attention", inputs, {"is_causal": causal}, opset=24)


@pytest.mark.parametrize("window", [(2, 0), (1, 2), (0, -1), (-1, 1)])
def test_attention_sliding_window(window):
    attrs = {"left_window_size": window[0], "right_window_size": window[1]}
    check_op("Attention", qkv(2, 2, 2, 5, 5, 4), attrs, opset=25)


def test_attention_float16():
    check_op("Attention", qkv(2, 4, 2, 4, 6, 8, dtype=F16), {"is_causal": 1}, opset=23)


def test_attention_bfloat16_matches_float32():
    inputs = qkv(2, 2, 2, 4, 6, 8)
    rounded = {k: v.astype(ml_dtypes.bfloat16) for k, v in inputs.items()}
    expected = check_op("Attention", {k: v.astype(np.float32) for k, v in rounded.items()}, opset=23)[0]
    actual = run_braze(make_model("Attention", rounded, opset=23), rounded)[0]
    assert actual.dtype == ml_dtypes.bfloat16
    assert_close(actual, expected, "bfloat16")


def test_attention_against_torch_sdpa():
    q, k, v = (torch.from_numpy(x) for x in qkv(2, 3, 3, 5, 5, 8).values())
    inputs = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()}
    y = run_braze(make_model("Attention", inputs, {"is_causal": 1}, opset=23), inputs)[0]
    assert_close(y, torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).numpy())


@pytest.mark.parametrize("inputs,attrs,opset,match", [
    (qkv(1, 2, 2, 3, 3, 4, three_d=True), {}, 23, "q_num_heads"),
    (qkv(1, 3, 2, 3, 3, 4), {}, 23, "multiple"),
    ({**qkv(1, 2, 2, 3, 3, 4), "k": rand(1, 2, 3, 5)}, {}, 23, "head size"),
    (qkv(1, 2, 2, 3, 3, 4), {"qk_matmul_output_mode": 4}, 23, "qk_matmul_output_mode"),
    (qkv(1, 2, 2, 3, 3, 4), {"q_num_heads": 2, "kv_num_heads": 2}, 25, "4-D"),
    (qkv(1, 2, 2, 3, 3, 4), {"softmax_precision": 7}, 23, "softmax_precision"),
    (qkv(1, 2, 2, 3, 3, 4), {"left_window_size": -2}, 25, "window"),
    ({**qkv(1, 2, 2, 3, 3, 4), "attn_mask": rand(3, 4)}, {}, 23, "attn_mask"),
    ({**qkv(1, 2, 2, 3, 3, 4), "attn_mask": None, "past_key": rand(1, 2, 2, 4)}, {}, 23, "together"),
])
def test_attention_errors(inputs, attrs, opset, match):
    expect_build_error("Attention", inputs, attrs, opset=opset, match=match)


# -- FlexAttention (ai.onnx.preview) -------------------------------------------------------------

def flex_model(inputs, attrs=None):
    model = make_model("FlexAttention", inputs, attrs, domain="ai.onnx.preview", opset=1)
    model.opset_import.append(oh.make_opsetid("", 26))
    return model


def score_mod_graph(name, nodes, inits=()):
    io = [oh.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("s", "out")]
    return oh.make_graph(nodes, name, io[:1], io[1:], list(inits))


@pytest.mark.parametrize("dims", [(2, 4, 4, 5, 6, 8, 8), (1, 6, 2, 3, 4, 8, 12)])
@pytest.mark.parametrize("attrs", [{}, {"scale": 0.25}, {"softmax_precision": 11}])
def test_flex_attention(dims, attrs):
    b, hq, hkv, s, l, d, dv = dims
    inputs = {"q": rand(b, hq, s, d), "k": rand(b, hkv, l, d), "v": rand(b, hkv, l, dv)}
    model = flex_model(inputs, attrs)
    (expected,) = ReferenceEvaluator(model).run(None, inputs)
    assert_close(run_braze(model, inputs)[0], expected)


def test_flex_attention_modifiers():
    inputs = {"q": rand(1, 2, 4, 8), "k": rand(1, 2, 4, 8), "v": rand(1, 2, 4, 8)}
    half = oh.make_tensor("half", onnx.TensorProto.FLOAT, [], [0.5])
    softcap = score_mod_graph("cap", [oh.make_node("Mul", ["s", "half"], ["t"]), oh.make_node("Tanh", ["t"], ["out"])],
                              [half])
    scale_probs = score_mod_graph("probs", [oh.make_node("Mul", ["s", "half"], ["out"])], [half])
    model = flex_model(inputs, {"score_mod": softcap, "prob_mod": scale_probs})
    actual = run_braze(model, inputs)[0]
    q, k, v = (torch.from_numpy(x) for x in inputs.values())
    scores = torch.tanh(q @ k.transpose(-1, -2) / math.sqrt(8) * 0.5)
    assert_close(actual, (torch.softmax(scores, -1) * 0.5 @ v).numpy())
    (expected,) = ReferenceEvaluator(model).run(None, inputs)
    assert_close(actual, expected)


def test_flex_attention_errors():
    inputs = {"q": rand(1, 3, 4, 8), "k": rand(1, 2, 4, 8), "v": rand(1, 2, 4, 8)}
    model = flex_model(inputs)
    with pytest.raises(braze.BrazeError, match="flexattention_node.*multiple"):
        braze.Builder("cpu").build(braze.parse_onnx(model, check=False), braze.BuilderConfig())
