import numpy as np
import onnx.helper as oh
import pytest
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator

import braze

from .harness import check_op, feeds_of, make_model, rand, run_braze

# float32 FFTs in onnxruntime and in double precision here differ by rounding: compare absolutely
# against the size of the values (sums of up to 16 terms of magnitude 2).
FFT_TOL = {"rtol": 1e-4, "atol": 2e-5}


def i64(v):
    return np.array(v, np.int64)


def _raises(op_type, inputs, attrs, match, *, opset=17, constants=()):
    model = make_model(op_type, inputs, attrs, opset=opset, constants=constants)
    with pytest.raises(braze.BrazeError, match=f"{op_type.lower()}_node.*{match}"):
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False), braze.BuilderConfig())
        engine.create_execution_context().infer(feeds_of(inputs, constants))


# -- DFT ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", [((2, 8, 1), 1), ((3, 5, 6, 2), 1), ((3, 5, 6, 2), 2), ((2, 4, 6, 1), -2)])
@pytest.mark.parametrize("inverse", [0, 1])
def test_dft_17(shape, axis, inverse):
    check_op("DFT", {"x": rand(*shape)}, {"axis": axis, "inverse": inverse}, opset=17, **FFT_TOL)


@pytest.mark.parametrize("length", [4, 8, 11])
def test_dft_17_length(length):
    check_op("DFT", {"x": rand(2, 8, 2), "n": i64(length)}, {"axis": 1}, opset=17, constants=("n",), **FFT_TOL)


def test_dft_17_rfft():
    check_op("DFT", {"x": rand(3, 10, 1)}, {"axis": 1, "onesided": 1}, opset=17, **FFT_TOL)


@pytest.mark.parametrize("axis", [0, 1, -2, -3])
@pytest.mark.parametrize("inverse", [0, 1])
def test_dft_20_axis_input(axis, inverse):
    check_op("DFT", {"x": rand(4, 6, 5, 2), "n": None, "axis": i64(axis)}, {"inverse": inverse}, opset=20,
             constants=("axis",), **FFT_TOL)


def test_dft_20_default_axis_and_length():
    check_op("DFT", {"x": rand(3, 7, 2), "n": i64(9)}, {}, opset=20, constants=("n",), **FFT_TOL)


@pytest.mark.parametrize("length", [None, 12, 9])
def test_dft_20_rfft_and_irfft(length):
    """A real spectrum, and back: IRFFT's default length is 2 * (bins - 1)."""
    x = rand(2, 12, 1)
    n = None if length is None else i64(length)
    spectrum = check_op("DFT", {"x": x, "n": n, "axis": i64(1)}, {"onesided": 1}, opset=20,
                        constants=("n", "axis"), **FFT_TOL)[0]
    back = run_braze(make_model("DFT", {"y": spectrum, "n": n, "axis": i64(1)}, {"onesided": 1, "inverse": 1},
                                opset=20, constants=("n", "axis")), {"y": spectrum})[0]
    if length in (None, 12):
        np.testing.assert_allclose(back, x, atol=1e-5)
    else:
        expected = np.fft.irfft(spectrum[..., 0] + 1j * spectrum[..., 1], n=length, axis=1)[..., None]
        np.testing.assert_allclose(back, expected, atol=1e-5)


def test_dft_axis_known_only_at_run_time():
    """The axis a graph input: the output's shape is found at run time."""
    x = rand(2, 6, 4, 1)
    model = make_model("DFT", {"x": x, "n": None, "axis": i64(2)}, {"onesided": 1}, opset=20)
    got = run_braze(model, {"x": x, "axis": i64(2)})[0]
    assert got.shape == (2, 6, 3, 2)
    full = np.fft.fft(x[..., 0], axis=2)[:, :, :3]
    np.testing.assert_allclose(got, np.stack([full.real, full.imag], -1), atol=1e-5)


def test_dft_double():
    check_op("DFT", {"x": rand(2, 9, 2, dtype=np.float64)}, {"axis": 1}, opset=17)


def test_dft_errors():
    _raises("DFT", {"x": rand(2, 8, 3)}, {"axis": 1}, "dim of 1")
    _raises("DFT", {"x": rand(2, 8, 2)}, {"axis": 2}, "axis 2 is out of range")
    _raises("DFT", {"x": rand(2, 8, 2)}, {"axis": 1, "onesided": 1}, "onesided")
    _raises("DFT", {"x": rand(2, 8, 2), "n": i64(0)}, {"axis": 1}, "positive", constants=("n",))
    _raises("DFT", {"x": rand(2, 8, 2).astype(np.int32)}, {"axis": 1}, "floating-point")


# -- STFT --------------------------------------------------------------------------------------

@pytest.mark.parametrize("step,length", [(4, 8), (3, 16), (16, 16)])
@pytest.mark.parametrize("onesided", [0, 1])
def test_stft_frame_length(step, length, onesided):
    check_op("STFT", {"x": rand(2, 64, 1), "step": i64(step), "w": None, "n": i64(length)}, {"onesided": onesided},
             constants=("step", "n"), **FFT_TOL)


@pytest.mark.parametrize("step", [2, 5])
def test_stft_window(step):
    window = np.hanning(12).astype(np.float32)
    check_op("STFT", {"x": rand(1, 50, 1), "step": i64(step), "w": window}, constants=("step",), **FFT_TOL)


def test_stft_complex_signal():
    check_op("STFT", {"x": rand(2, 40, 2), "step": i64(6), "w": rand(8, low=0.5, high=1.0), "n": i64(8)},
             {"onesided": 0}, constants=("step", "n"), **FFT_TOL)


def test_stft_errors():
    _raises("STFT", {"x": rand(1, 32, 2), "step": i64(4), "w": None, "n": i64(8)}, {}, "onesided",
            constants=("step", "n"))
    _raises("STFT", {"x": rand(1, 32, 1), "step": i64(4), "w": rand(8), "n": i64(6)}, {}, "differs",
            constants=("step", "n"))
    _raises("STFT", {"x": rand(1, 32, 1), "step": i64(0), "w": None, "n": i64(8)}, {}, "positive",
            constants=("step", "n"))
    _raises("STFT", {"x": rand(1, 8, 1), "step": i64(1), "w": None, "n": i64(9)}, {}, "between",
            constants=("step", "n"))


# -- windows -----------------------------------------------------------------------------------

@pytest.mark.parametrize("op_type", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic", [0, 1])
@pytest.mark.parametrize("size", [1, 2, 10, 33])
def test_windows(op_type, periodic, size):
    if size == 1 and not periodic:  # a 0/0 in onnxruntime (NaN); braze answers 1, as torch does
        got = run_braze(make_model(op_type, {"n": i64(size)}, {"periodic": 0}, constants=("n",)), {})[0]
        np.testing.assert_array_equal(got, np.ones(1, np.float32))
        return
    check_op(op_type, {"n": i64(size)}, {"periodic": periodic}, constants=("n",), atol=1e-6)


@pytest.mark.parametrize("dtype,code", [(np.float64, TensorProto.DOUBLE), (np.float16, TensorProto.FLOAT16),
                                        (np.int32, TensorProto.INT32)])
def test_window_output_types(dtype, code):
    got = check_op("HannWindow", {"n": np.array(16, np.int32)}, {"output_datatype": code}, constants=("n",),
                   atol=1e-6)[0]
    assert got.dtype == dtype


def test_window_size_known_only_at_run_time():
    model = make_model("HammingWindow", {"n": i64(12)}, {"output_datatype": TensorProto.DOUBLE})
    model.graph.output[0].CopyFrom(oh.make_tensor_value_info("y0", TensorProto.DOUBLE, ["size"]))
    for size in (12, 5):
        got = run_braze(model, {"n": i64(size)})[0]
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, 25 / 46 - 21 / 46 * np.cos(2 * np.pi * np.arange(size) / size), atol=1e-12)


# -- MelWeightMatrix ---------------------------------------------------------------------------

@pytest.mark.parametrize("bins,length,rate,low,high", [
    (8, 16, 8192, 0.0, 4096.0),
    (10, 64, 16000, 20.0, 8000.0),
    (5, 32, 22050, 300.0, 5000.0),
    (40, 512, 16000, 0.0, 8000.0),
])
def test_mel_weight_matrix(bins, length, rate, low, high):
    """onnxruntime has no MelWeightMatrix: ONNX's reference is the oracle."""
    inputs = {"bins": np.array(bins, np.int32), "n": np.array(length, np.int32), "rate": np.array(rate, np.int32),
              "low": np.array(low, np.float32), "high": np.array(high, np.float32)}
    model = make_model("MelWeightMatrix", inputs, constants=tuple(inputs))
    got = run_braze(model, {})[0]
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {})[0])


def test_mel_weight_matrix_double():
    inputs = {"bins": i64(6), "n": i64(32), "rate": i64(8000), "low": np.array(0.0), "high": np.array(4000.0)}
    model = make_model("MelWeightMatrix", inputs, {"output_datatype": TensorProto.DOUBLE}, constants=tuple(inputs))
    got = run_braze(model, {})[0]
    assert got.dtype == np.float64 and got.shape == (17, 6)
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {})[0])


def test_mel_weight_matrix_errors():
    base = {"bins": i64(8), "n": i64(16), "rate": i64(8000), "low": np.array(0.0, np.float32),
            "high": np.array(4000.0, np.float32)}
    _raises("MelWeightMatrix", {**base, "high": np.array(9000.0, np.float32)}, {}, "reaches past",
            constants=tuple(base))
    _raises("MelWeightMatrix", {**base, "bins": i64(0)}, {}, "positive", constants=tuple(base))
    _raises("MelWeightMatrix", {**base, "low": np.array(5000.0, np.float32)}, {}, "lower", constants=tuple(base))
