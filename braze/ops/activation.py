"""Activation functions: Relu and its relatives, sigmoids, GELU, clipping."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .opdef import op


@op("Relu")
def relu(x):
    return torch.relu(x)


@op("LeakyRelu")
def leaky_relu(x, *, alpha: float = 0.01):
    return torch.where(x < 0, x * alpha, x)


@op("PRelu")
def prelu(x, slope):
    return torch.where(x < 0, x * slope, x).to(x.dtype)


@op("Sigmoid")
def sigmoid(x):
    return torch.sigmoid(x)


@op("Tanh")
def tanh(x):
    return torch.tanh(x)


@op("HardSigmoid")
def hard_sigmoid(x, *, alpha: float = 0.2, beta: float = 0.5):
    return torch.clamp(x * alpha + beta, 0, 1)


@op("HardSwish", since=14)
def hard_swish(x):
    return x * torch.clamp(x * (1 / 6) + 0.5, 0, 1)


@op("Clip", since=6)
def clip_6(x, *, min: float = -math.inf, max: float = math.inf):
    return torch.clamp(x, min, max)


@op("Clip", since=11)
def clip_11(x, min=None, max=None):
    if min is not None:
        x = torch.maximum(x, min.to(x.dtype))
    if max is not None:
        x = torch.minimum(x, max.to(x.dtype))
    return x


@op("Gelu", since=20)
def gelu(x, *, approximate: str = "none"):
    return F.gelu(x, approximate=approximate)


@op("Elu", since=6)
def elu(x, *, alpha: float = 1.0):
    return torch.where(x < 0, alpha * torch.expm1(x), x)


@op("Selu", since=6)
def selu(x, *, alpha: float = 1.67326319217681884765625, gamma: float = 1.05070102214813232421875):
    return gamma * torch.where(x <= 0, alpha * torch.expm1(x), x)


@op("Celu", since=12)
def celu(x, *, alpha: float = 1.0):
    return torch.clamp(x, min=0) + torch.clamp(alpha * torch.expm1(x / alpha), max=0)


@op("ThresholdedRelu", since=10)
def thresholded_relu(x, *, alpha: float = 1.0):
    return torch.where(x > alpha, x, torch.zeros_like(x))


@op("Softplus")
def softplus(x):
    return F.softplus(x.float()).to(x.dtype) if x.dtype in (torch.float16, torch.bfloat16) else F.softplus(x)


@op("Softsign")
def softsign(x):
    return x / (1 + torch.abs(x))


@op("Mish", since=18)
def mish(x):
    return x * torch.tanh(F.softplus(x))


OPS = [
    relu, leaky_relu, prelu, sigmoid, tanh, hard_sigmoid, hard_swish, clip_6, clip_11, gelu,
    elu, selu, celu, thresholded_relu, softplus, softsign, mish,
]
