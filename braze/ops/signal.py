"""Signal processing: DFT, STFT, the Hann, Hamming and Blackman windows, and MelWeightMatrix.

ONNX carries complex numbers as a trailing dim of 2 (real, imaginary); a trailing dim of 1 is a
real signal. Transforms run through torch.fft in double precision and come back in the input's
type. The scalars that decide an output's length (a DFT's length and axis, an STFT's step and
frame length, a window's size, the mel matrix's sizes) are `value_inputs`: when they are only
known at run time, so is the output's shape.
"""

from __future__ import annotations

import math

import torch

from ..ir import DType, Node
from .generator import onnx_dtype
from .opdef import op

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _scalar(t: torch.Tensor, what: str) -> int:
    """The value of a scalar integer input (a value input, so a real tensor)."""
    if t.numel() != 1 or t.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{what} must be an int32 or int64 scalar, got {t.dtype} of shape {list(t.shape)}")
    return int(t.reshape(()))


def _as_complex(x: torch.Tensor, what: str) -> tuple[torch.Tensor, bool]:
    """An ONNX [..., 1|2] tensor as a float64 real or complex128 tensor without the last dim."""
    if x.dtype not in _FLOATS:
        raise TypeError(f"{what} must be a floating-point tensor, got {x.dtype}")
    if x.dim() < 2 or x.shape[-1] not in (1, 2):
        raise ValueError(f"{what} must end in a dim of 1 (real) or 2 (complex), got shape {list(x.shape)}")
    x = x.to(torch.float64)
    if x.shape[-1] == 1:
        return x[..., 0], False
    return torch.complex(x[..., 0], x[..., 1]), True


def _from_complex(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if y.is_complex():
        return torch.stack((y.real, y.imag), dim=-1).to(dtype)
    return y.unsqueeze(-1).to(dtype)


def _dft(x: torch.Tensor, dft_length: torch.Tensor | None, axis: int, inverse: int, onesided: int) -> torch.Tensor:
    rank = x.dim()
    if not (-rank <= axis <= -2 or 0 <= axis <= rank - 2):
        raise ValueError(f"axis {axis} is out of range for an input of rank {rank} (the last dim holds the "
                         "real and imaginary parts)")
    axis %= rank
    signal, is_complex = _as_complex(x, "the input")
    if onesided and is_complex != bool(inverse):
        raise ValueError("onesided=1 takes a real input forward (RFFT) and a complex one inverse (IRFFT)")
    if dft_length is not None:
        n = _scalar(dft_length, "dft_length")
    else:
        n = 2 * (signal.shape[axis] - 1) if inverse and onesided else signal.shape[axis]
    if n < 1:
        raise ValueError(f"dft_length must be positive, got {n}")
    if inverse:
        y = torch.fft.irfft(signal, n=n, dim=axis) if onesided else torch.fft.ifft(signal, n=n, dim=axis)
    else:
        y = torch.fft.fft(signal, n=n, dim=axis)
        if onesided:
            y = y.narrow(axis, 0, n // 2 + 1)
    return _from_complex(y, x.dtype)


@op("DFT", since=17, value_inputs=(1,))
def dft_17(x, dft_length=None, *, axis: int = 1, inverse: int = 0, onesided: int = 0):
    return _dft(x, dft_length, axis, inverse, onesided)


@op("DFT", since=20, value_inputs=(1, 2))
def dft_20(x, dft_length=None, axis=None, *, inverse: int = 0, onesided: int = 0):
    return _dft(x, dft_length, -2 if axis is None else _scalar(axis, "axis"), inverse, onesided)


@op("STFT", since=17, value_inputs=(1, 3))
def stft(signal, frame_step, window=None, frame_length=None, *, onesided: int = 1):
    if signal.dim() != 3:
        raise ValueError(f"the signal must be [batch][length][1 or 2], got shape {list(signal.shape)}")
    x, is_complex = _as_complex(signal, "the signal")
    if onesided and is_complex:
        raise ValueError("onesided=1 needs a real signal; set onesided=0 for a complex one")
    step = _scalar(frame_step, "frame_step")
    if window is not None and (window.dim() != 1 or window.dtype != signal.dtype):
        raise ValueError(f"the window must be a vector of the signal's type, got {window.dtype} of shape "
                         f"{list(window.shape)}")
    length = x.shape[1] if window is None else window.shape[0]
    if frame_length is not None:
        length_given = _scalar(frame_length, "frame_length")
        if window is not None and length_given != length:
            raise ValueError(f"frame_length {length_given} differs from the window's length {length}")
        length = length_given
    if step < 1 or not 1 <= length <= x.shape[1]:
        raise ValueError(f"frame_step ({step}) must be positive and frame_length ({length}) between 1 and the "
                         f"signal's length {x.shape[1]}")
    frames = x.unfold(1, length, step)  # batch, frames, length
    if window is not None:
        frames = frames * window.to(torch.float64)
    y = torch.fft.fft(frames, dim=-1)
    if onesided:
        y = y[..., : length // 2 + 1]
    return _from_complex(y, signal.dtype)


# -- windows -----------------------------------------------------------------------------------

def _window_dtype(node: Node) -> list[DType]:
    return [DType.from_torch(onnx_dtype(node.attrs["output_datatype"]))]


def _cosine_window(size: torch.Tensor, periodic: int, output_datatype: int, a0: float, a1: float,
                   a2: float = 0.0) -> torch.Tensor:
    """a0 - a1 cos(2 pi n / N) + a2 cos(4 pi n / N), N = size (periodic) or size - 1 (symmetric)."""
    n = _scalar(size, "size")
    if n < 0:
        raise ValueError(f"size must not be negative, got {n}")
    dtype = onnx_dtype(output_datatype)
    denominator = n if periodic else n - 1
    if denominator == 0:  # a symmetric window of one point, as torch's windows define it
        return torch.ones(n, dtype=dtype, device=size.device)
    phase = torch.arange(n, dtype=torch.float64, device=size.device) * (2 * math.pi / denominator)
    w = a0 - a1 * torch.cos(phase)
    if a2:
        w = w + a2 * torch.cos(2 * phase)
    return w.to(dtype)


@op("HannWindow", since=17, value_inputs=(0,), dtype_rule=_window_dtype)
def hann_window(size, *, output_datatype: int = 1, periodic: int = 1):
    return _cosine_window(size, periodic, output_datatype, 0.5, 0.5)


@op("HammingWindow", since=17, value_inputs=(0,), dtype_rule=_window_dtype)
def hamming_window(size, *, output_datatype: int = 1, periodic: int = 1):
    return _cosine_window(size, periodic, output_datatype, 25 / 46, 21 / 46)


@op("BlackmanWindow", since=17, value_inputs=(0,), dtype_rule=_window_dtype)
def blackman_window(size, *, output_datatype: int = 1, periodic: int = 1):
    return _cosine_window(size, periodic, output_datatype, 0.42, 0.5, 0.08)


# -- MelWeightMatrix ---------------------------------------------------------------------------

def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595 * torch.log10(1 + hz / 700)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700 * (torch.pow(10, mel / 2595) - 1)


@op("MelWeightMatrix", since=17, value_inputs=(0, 1, 2, 3, 4), dtype_rule=_window_dtype)
def mel_weight_matrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz, *,
                      output_datatype: int = 1):
    """[dft_length // 2 + 1, num_mel_bins] triangular filters with peaks of 1, spaced evenly in mel."""
    bins, length, rate = (_scalar(t, name) for t, name in ((num_mel_bins, "num_mel_bins"),
                                                            (dft_length, "dft_length"), (sample_rate, "sample_rate")))
    if bins < 1 or length < 1 or rate < 1:
        raise ValueError(f"num_mel_bins ({bins}), dft_length ({length}) and sample_rate ({rate}) must be positive")
    low, high = (t.reshape(()).to(torch.float64) for t in (lower_edge_hertz, upper_edge_hertz))
    if not 0 <= float(low) < float(high):
        raise ValueError(f"the edges must satisfy 0 <= lower ({float(low)}) < upper ({float(high)})")
    spectrogram_bins = length // 2 + 1
    low_mel, high_mel = _hz_to_mel(low), _hz_to_mel(high)
    points = torch.arange(bins + 2, dtype=torch.float64) * ((high_mel - low_mel) / (bins + 2)) + low_mel
    edges = torch.floor((length + 1) * _mel_to_hz(points) / rate).to(torch.int64)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    if int(center.max()) >= spectrogram_bins or int(right.max()) > spectrogram_bins:
        raise ValueError(f"upper_edge_hertz {float(high)} reaches past the {spectrogram_bins} bins of a "
                         f"{length}-point DFT at sample_rate {rate}")
    j = torch.arange(spectrogram_bins, dtype=torch.float64).unsqueeze(1)
    left, center, right = left.to(torch.float64), center.to(torch.float64), right.to(torch.float64)
    rising = torch.where(center > left, (j - left) / (center - left).clamp(min=1.0), 1.0)
    falling = (right - j) / (right - center).clamp(min=1.0)
    out = torch.where((j >= left) & (j <= center), rising, torch.where((j > center) & (j < right), falling, 0.0))
    return out.to(onnx_dtype(output_datatype))


OPS = [dft_17, dft_20, stft, hann_window, hamming_window, blackman_window, mel_weight_matrix]
