"""Activation functions: Relu and its relatives, sigmoids, GELU, clipping.

All of them keep their input's shape and element type; most take floating-point tensors only
(torch would silently compute an integer input in float).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .elementwise import FLOATS, INTEGERS, NUMERIC, SIGNED, check_inputs, maximum, minimum
from .opdef import op

_HALF = (torch.float16, torch.bfloat16)
_GELU_APPROXIMATIONS = ("none", "tanh")


def _floats(name: str, x: torch.Tensor) -> None:
    check_inputs(name, FLOATS, x)


@op("Relu", elementwise=True, keeps_layout=True, commutes_with_quantize=True)
def relu(x):
    check_inputs("Relu", FLOATS + SIGNED, x)
    return torch.relu(x)


@op("LeakyRelu", elementwise=True, keeps_layout=True)
def leaky_relu(x, *, alpha: float = 0.01):
    _floats("LeakyRelu", x)
    return torch.where(x < 0, x * alpha, x)


@op("PRelu", elementwise=True)
def prelu(x, slope):
    check_inputs("PRelu", FLOATS + INTEGERS, x, slope)
    if torch.broadcast_shapes(x.shape, slope.shape) != x.shape:
        raise ValueError(f"PRelu's slope of shape {list(slope.shape)} does not broadcast to X's {list(x.shape)}")
    if not x.dtype.is_signed:
        return x.clone()
    return torch.where(x < 0, x * slope, x)


@op("Sigmoid", elementwise=True, keeps_layout=True)
def sigmoid(x):
    _floats("Sigmoid", x)
    return torch.sigmoid(x)


@op("Tanh", elementwise=True)
def tanh(x):
    _floats("Tanh", x)
    return torch.tanh(x)


@op("HardSigmoid", elementwise=True)
def hard_sigmoid(x, *, alpha: float = 0.2, beta: float = 0.5):
    _floats("HardSigmoid", x)
    return torch.clamp(x * alpha + beta, 0, 1)


@op("HardSwish", since=14, elementwise=True, keeps_layout=True)
def hard_swish(x):
    _floats("HardSwish", x)
    return x * torch.clamp(x * (1 / 6) + 0.5, 0, 1)


@op("Clip", since=6, elementwise=True, keeps_layout=True)
def clip_6(x, *, min: float = -math.inf, max: float = math.inf):
    _floats("Clip", x)
    return torch.clamp(x, min, max)


def _bound(name: str, bound: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if bound.numel() != 1:
        raise ValueError(f"Clip's {name} must be a scalar, got a tensor of shape {list(bound.shape)}")
    if bound.dtype != x.dtype:
        raise TypeError(f"Clip's {name} is {str(bound.dtype).removeprefix('torch.')}, "
                        f"X is {str(x.dtype).removeprefix('torch.')}")
    return bound.reshape(())


@op("Clip", since=11, elementwise=True, keeps_layout=True)
def clip_11(x, min=None, max=None):
    check_inputs("Clip", NUMERIC, x)
    if min is not None:
        x = maximum(x, _bound("min", min, x))
    if max is not None:
        x = minimum(x, _bound("max", max, x))
    return x.clone() if min is None and max is None else x


def gelu_onnx(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU as ONNX defines it: torch's CPU erf-GELU gives NaN for +inf, where 0.5·x·(1 + erf(x/√2)) is +inf."""
    y = F.gelu(x, approximate=approximate)
    return y.masked_fill_(x == math.inf, math.inf) if approximate == "none" else y


@op("Gelu", since=20, elementwise=True)
def gelu(x, *, approximate: str = "none"):
    _floats("Gelu", x)
    if approximate not in _GELU_APPROXIMATIONS:
        raise ValueError(f"Gelu's approximate must be 'none' or 'tanh', got {approximate!r}")
    return gelu_onnx(x, approximate)


@op("Elu", since=6, elementwise=True)
def elu(x, *, alpha: float = 1.0):
    _floats("Elu", x)
    return torch.where(x < 0, alpha * torch.expm1(x), x)


@op("Selu", since=6, elementwise=True)
def selu(x, *, alpha: float = 1.67326319217681884765625, gamma: float = 1.05070102214813232421875):
    _floats("Selu", x)
    return gamma * torch.where(x <= 0, alpha * torch.expm1(x), x)


@op("Celu", since=12, elementwise=True)
def celu(x, *, alpha: float = 1.0):
    _floats("Celu", x)
    return torch.clamp(x, min=0) + torch.clamp(alpha * torch.expm1(x / alpha), max=0)


@op("ThresholdedRelu", since=10, elementwise=True)
def thresholded_relu(x, *, alpha: float = 1.0):
    _floats("ThresholdedRelu", x)
    return torch.where(x > alpha, x, torch.zeros_like(x))


def _softplus(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x.float()).to(x.dtype) if x.dtype in _HALF else F.softplus(x)


@op("Softplus", elementwise=True)
def softplus(x):
    _floats("Softplus", x)
    return _softplus(x)


@op("Softsign", elementwise=True)
def softsign(x):
    _floats("Softsign", x)
    return x / (1 + torch.abs(x))


@op("Mish", since=18, elementwise=True)
def mish(x):
    _floats("Mish", x)
    return x * torch.tanh(_softplus(x))


OPS = [
    relu, leaky_relu, prelu, sigmoid, tanh, hard_sigmoid, hard_swish, clip_6, clip_11, gelu,
    elu, selu, celu, thresholded_relu, softplus, softsign, mish,
]
