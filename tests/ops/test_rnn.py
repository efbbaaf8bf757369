"""RNN, GRU and LSTM against onnxruntime (which runs layout 0 only: layout 1 is checked against
onnxruntime on the transposed problem)."""

import numpy as np
import pytest

from braze.testing import assert_close

from .harness import check_op, make_model, rand, run_braze, run_ort
from .test_attention import expect_build_error

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
OUTPUTS = {"RNN": 2, "GRU": 2, "LSTM": 3}
SEQ, BATCH, INPUT, HIDDEN = 5, 3, 4, 6


def rnn_inputs(kind, dirs=1, *, bias=True, initial=True, lens=None, peepholes=False, seed=0, dtype=np.float32):
    g = GATES[kind]
    inputs = {"x": rand(SEQ, BATCH, INPUT, seed=seed, dtype=dtype),
              "w": rand(dirs, g * HIDDEN, INPUT, seed=seed + 1, low=-0.6, high=0.6, dtype=dtype),
              "r": rand(dirs, g * HIDDEN, HIDDEN, seed=seed + 2, low=-0.6, high=0.6, dtype=dtype),
              "b": rand(dirs, 2 * g * HIDDEN, seed=seed + 3, dtype=dtype) if bias else None,
              "lens": None if lens is None else np.array(lens, dtype=np.int32),
              "h0": rand(dirs, BATCH, HIDDEN, seed=seed + 4, dtype=dtype) if initial else None}
    if kind == "LSTM":
        inputs["c0"] = rand(dirs, BATCH, HIDDEN, seed=seed + 5, dtype=dtype) if initial else None
        inputs["p"] = rand(dirs, 3 * HIDDEN, seed=seed + 6, dtype=dtype) if peepholes else None
    return inputs


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("extras", [dict(), dict(bias=False, initial=False), dict(lens=[0, 5, 2])])
def test_recurrent(kind, direction, extras):
    dirs = 2 if direction == "bidirectional" else 1
    inputs = rnn_inputs(kind, dirs, **extras)
    check_op(kind, inputs, {"hidden_size": HIDDEN, "direction": direction}, opset=14, n_outputs=OUTPUTS[kind])


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_recurrent_opset7_without_hidden_size(kind):
    """hidden_size, which onnxruntime requires, comes from R's shape."""
    inputs = rnn_inputs(kind, 2)
    feeds = {k: v for k, v in inputs.items() if v is not None}
    attrs = {"direction": "bidirectional"}
    actual = run_braze(make_model(kind, inputs, attrs, opset=7, n_outputs=OUTPUTS[kind]), feeds)
    expected = run_ort(make_model(kind, inputs, {**attrs, "hidden_size": HIDDEN}, opset=7, n_outputs=OUTPUTS[kind]),
                       feeds)
    for a, e in zip(actual, expected):
        assert_close(a, e)


@pytest.mark.parametrize("kind,activations,alpha,beta", [
    ("RNN", ["LeakyRelu"], [0.2], None),
    ("RNN", ["Relu", "ScaledTanh"], [0.7], [1.3]),
    ("GRU", ["HardSigmoid", "Softsign"], [0.3], [0.4]),
    ("GRU", ["Sigmoid", "Elu", "HardSigmoid", "Affine"], [0.8, 0.25, 1.5], [0.45, -0.2]),
    ("LSTM", ["Sigmoid", "Softplus", "ThresholdedRelu"], [0.1], None),
    ("LSTM", ["HardSigmoid", "Tanh", "Elu", "Sigmoid", "LeakyRelu", "Softsign"], None, None),  # the defaults
])
def test_recurrent_activations(kind, activations, alpha, beta):
    per = {"RNN": 1, "GRU": 2, "LSTM": 3}[kind]
    dirs = len(activations) // per
    attrs = {"hidden_size": HIDDEN, "activations": activations,
             "direction": "bidirectional" if dirs == 2 else "forward"}
    if alpha is not None:
        attrs["activation_alpha"] = alpha
    if beta is not None:
        attrs["activation_beta"] = beta
    check_op(kind, rnn_inputs(kind, dirs), attrs, opset=14, n_outputs=OUTPUTS[kind])


def test_activation_defaults_of_the_specification():
    """Affine and ThresholdedRelu default to the ONNX ops' alpha (1), where onnxruntime takes 0."""
    inputs = rnn_inputs("RNN")
    feeds = {k: v for k, v in inputs.items() if v is not None}
    for name, explicit in (("Affine", {"activation_alpha": [1.0], "activation_beta": [0.0]}),
                           ("ThresholdedRelu", {"activation_alpha": [1.0]})):
        actual = run_braze(make_model("RNN", inputs, {"activations": [name]}, opset=14, n_outputs=2), feeds)
        expected = run_ort(make_model("RNN", inputs, {"activations": [name], "hidden_size": HIDDEN, **explicit},
                                      opset=14, n_outputs=2), feeds)
        for a, e in zip(actual, expected):
            assert_close(a, e)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_recurrent_clip(kind):
    check_op(kind, rnn_inputs(kind, 2, seed=3), {"hidden_size": HIDDEN, "clip": 0.5, "direction": "bidirectional"},
             opset=14, n_outputs=OUTPUTS[kind])


@pytest.mark.parametrize("lens", [None, [3, 5, 1]])
def test_gru_linear_before_reset(lens):
    check_op("GRU", rnn_inputs("GRU", 2, lens=lens), {"hidden_size": HIDDEN, "linear_before_reset": 1,
                                                      "direction": "bidirectional"}, opset=14, n_outputs=2)


@pytest.mark.parametrize("attrs", [{}, {"input_forget": 1}, {"clip": 0.8}])
def test_lstm_peepholes(attrs):
    check_op("LSTM", rnn_inputs("LSTM", 2, peepholes=True, lens=[4, 5, 2]),
             {"hidden_size": HIDDEN, "direction": "bidirectional", **attrs}, opset=14, n_outputs=3)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_recurrent_other_floats(kind, dtype):
    """float16 and double, which onnxruntime's kernels lack, against onnxruntime in float32."""
    inputs = rnn_inputs(kind, 2, dtype=dtype, lens=[5, 1, 3])
    attrs = {"direction": "bidirectional", "hidden_size": HIDDEN}
    actual = run_braze(make_model(kind, inputs, attrs, opset=22, n_outputs=OUTPUTS[kind]),
                       {k: v for k, v in inputs.items() if v is not None})
    wide = {k: None if v is None else v if k == "lens" else v.astype(np.float32) for k, v in inputs.items()}
    expected = run_ort(make_model(kind, wide, attrs, opset=14, n_outputs=OUTPUTS[kind]),
                       {k: v for k, v in wide.items() if v is not None})
    for a, e in zip(actual, expected):
        assert a.dtype == dtype
        assert_close(a, e, np.float16 if dtype == np.float16 else np.float32)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_recurrent_layout_1(kind, direction):
    """Batch-major inputs and outputs: the layout-0 result transposed."""
    dirs = 2 if direction == "bidirectional" else 1
    inputs = rnn_inputs(kind, dirs, lens=[2, 5, 3])
    attrs = {"hidden_size": HIDDEN, "direction": direction}
    expected = run_ort(make_model(kind, inputs, attrs, opset=14, n_outputs=OUTPUTS[kind]),
                       {k: v for k, v in inputs.items() if v is not None})
    batch_major = {k: None if v is None else v.swapaxes(0, 1) if k in ("x", "h0", "c0") else v
                   for k, v in inputs.items()}
    model = make_model(kind, batch_major, {**attrs, "layout": 1}, opset=22, n_outputs=OUTPUTS[kind])
    y, *states = run_braze(model, {k: v for k, v in batch_major.items() if v is not None})
    assert_close(y, expected[0].transpose(2, 0, 1, 3))
    for s, e in zip(states, expected[1:]):
        assert_close(s, e.swapaxes(0, 1))


@pytest.mark.parametrize("kind,inputs,attrs,match", [
    ("RNN", {**rnn_inputs("RNN"), "w": rand(1, HIDDEN, INPUT + 1)}, {"hidden_size": HIDDEN}, "W has shape"),
    ("GRU", rnn_inputs("GRU"), {"hidden_size": HIDDEN + 1}, "W has shape"),
    ("LSTM", {**rnn_inputs("LSTM"), "p": rand(1, 2 * HIDDEN)}, {}, "P has shape"),
    ("GRU", rnn_inputs("GRU"), {"direction": "sideways"}, "direction"),
    ("LSTM", rnn_inputs("LSTM"), {"activations": ["Sigmoid", "Tanh"]}, "activations"),
    ("RNN", rnn_inputs("RNN"), {"activations": ["Swish"]}, "activation 'Swish'"),
    ("RNN", rnn_inputs("RNN"), {"activations": ["ScaledTanh"], "activation_alpha": [2.0]}, "no defaults"),
    ("RNN", rnn_inputs("RNN", lens=[1, 6, 2]), {}, "sequence_lens"),
    ("LSTM", rnn_inputs("LSTM"), {"layout": 2}, "layout"),
])
def test_errors(kind, inputs, attrs, match):
    expect_build_error(kind, inputs, attrs, opset=14, match=match)
