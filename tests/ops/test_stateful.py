"""LinearAttention and CausalConvWithState against onnxruntime, plus hand-written recurrences."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from braze.testing import assert_close

from .harness import check_op, make_model, rand, run_braze
from .test_attention import expect_build_error

B, T = 2, 5


def la_inputs(rule, hq=4, hkv=2, dk=8, dv=6, *, steps=T, past=False, per_head_decay=False, scalar_beta=False,
              dtype=np.float32):
    inputs = {"q": rand(B, steps, hq * dk, seed=1, dtype=dtype),
              "k": rand(B, steps, hkv * dk, seed=2, low=-0.5, high=0.5, dtype=dtype),
              "v": rand(B, steps, hkv * dv, seed=3, dtype=dtype),
              "past": rand(B, hkv, dk, dv, seed=4, dtype=dtype) if past else None, "decay": None, "beta": None}
    if rule in ("gated", "gated_delta"):
        inputs["decay"] = rand(B, steps, hkv if per_head_decay else hkv * dk, seed=5, low=-1, high=0, dtype=dtype)
    if rule in ("delta", "gated_delta"):
        inputs["beta"] = rand(B, steps, 1 if scalar_beta else hkv, seed=6, low=0, high=1, dtype=dtype)
    return inputs


@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
@pytest.mark.parametrize("heads", [(2, 2), (4, 2), (4, 1)])
@pytest.mark.parametrize("past", [False, True])
def test_linear_attention(rule, heads, past):
    attrs = {"q_num_heads": heads[0], "kv_num_heads": heads[1], "update_rule": rule}
    check_op("LinearAttention", la_inputs(rule, *heads, past=past), attrs, opset=27, n_outputs=2)


@pytest.mark.parametrize("options", [dict(per_head_decay=True), dict(scalar_beta=True), dict(steps=1, past=True)])
def test_linear_attention_shapes(options):
    attrs = {"q_num_heads": 4, "kv_num_heads": 2, "scale": 0.3}
    check_op("LinearAttention", la_inputs("gated_delta", **options), attrs, opset=27, n_outputs=2)


def test_linear_attention_against_recurrence():
    """Gated DeltaNet, written out for one head: S = a S + b k (v - a S^T k), o = q^T S / sqrt(d)."""
    inputs = la_inputs("gated_delta", 1, 1, 4, 3, past=True, per_head_decay=True)
    out, state = run_braze(make_model("LinearAttention", inputs, {"q_num_heads": 1, "kv_num_heads": 1}, opset=27,
                                      n_outputs=2), {k: v for k, v in inputs.items() if v is not None})
    s = inputs["past"][:, 0].astype(np.float64)
    for t in range(T):
        q, k, v = (inputs[n][:, t].astype(np.float64) for n in ("q", "k", "v"))
        a, b = np.exp(inputs["decay"][:, t, :1])[:, :, None], inputs["beta"][:, t, :1, None]
        s = a * s
        s = s + b * k[:, :, None] * (v - np.einsum("bdm,bd->bm", s, k))[:, None, :]
        assert_close(out[:, t], np.einsum("bd,bdm->bm", q, s) / 2, rtol=1e-4, atol=1e-5)
    assert_close(state[:, 0], s, rtol=1e-4, atol=1e-5)


def test_linear_attention_float16():
    inputs = la_inputs("gated_delta", dtype=np.float16)
    check_op("LinearAttention", inputs, {"q_num_heads": 4, "kv_num_heads": 2}, opset=27, n_outputs=2)


def conv_inputs(channels=4, length=7, k=3, *, bias=False, past=False, dtype=np.float32):
    return {"x": rand(B, channels, length, dtype=dtype), "w": rand(channels, 1, k, seed=2, dtype=dtype),
            "b": rand(channels, seed=3, dtype=dtype) if bias else None,
            "past": rand(B, channels, k - 1, seed=4, dtype=dtype) if past else None}


@pytest.mark.parametrize("activation", ["none", "silu", "swish"])
@pytest.mark.parametrize("options", [dict(), dict(bias=True), dict(past=True), dict(bias=True, past=True, length=1),
                                     dict(k=1), dict(k=5, length=2)])
def test_causal_conv_with_state(activation, options):
    check_op("CausalConvWithState", conv_inputs(**options), {"activation": activation}, opset=27, n_outputs=2)


def test_causal_conv_with_state_against_torch():
    inputs = conv_inputs(bias=True, past=True)
    out, state = run_braze(make_model("CausalConvWithState", inputs, {"activation": "silu"}, opset=27, n_outputs=2),
                           inputs)
    x, w, b, past = (torch.from_numpy(v) for v in inputs.values())
    padded = torch.cat([past, x], dim=2)
    assert_close(out, F.silu(F.conv1d(padded, w, b, groups=4)).numpy())
    assert_close(state, padded[:, :, -2:].numpy())


def test_causal_conv_with_state_float16():
    check_op("CausalConvWithState", conv_inputs(dtype=np.float16, bias=True), opset=27, n_outputs=2)


@pytest.mark.parametrize("op,inputs,attrs,match", [
    ("LinearAttention", la_inputs("linear"), {"q_num_heads": 3, "kv_num_heads": 2, "update_rule": "linear"},
     "multiple"),
    ("LinearAttention", la_inputs("gated"), {"q_num_heads": 4, "kv_num_heads": 2, "update_rule": "linear"},
     "takes no decay"),
    ("LinearAttention", la_inputs("linear"), {"q_num_heads": 4, "kv_num_heads": 2}, "needs decay"),
    ("LinearAttention", la_inputs("linear"), {"q_num_heads": 4, "kv_num_heads": 2, "update_rule": "fast"},
     "update_rule"),
    ("LinearAttention", {**la_inputs("linear"), "past": rand(B, 2, 8, 5)},
     {"q_num_heads": 4, "kv_num_heads": 2, "update_rule": "linear"}, "past_state"),
    ("CausalConvWithState", conv_inputs(), {"activation": "relu"}, "activation"),
    ("CausalConvWithState", {**conv_inputs(), "w": rand(4, 2, 3)}, {}, "weight"),
    ("CausalConvWithState", {**conv_inputs(), "past": rand(B, 4, 3)}, {}, "past_state"),
])
def test_errors(op, inputs, attrs, match):
    expect_build_error(op, inputs, attrs, opset=27, match=match, n_outputs=2)
