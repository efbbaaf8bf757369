"""ONNX's experimental ops of opsets 1 to 9: ImageScaler, ScaledTanh, ParametricSoftplus.

ONNX dropped them at opset 10 and onnx's schemas no longer know them (its checker only warns), but
models converted by older tools still carry them, and TensorRT's and onnxruntime's ONNX readers
accept them. Each keeps its input's shape and element type, and takes floating-point tensors only.
"""

from __future__ import annotations

import torch

from .elementwise import FLOATS, check_inputs
from .opdef import op


@op("ImageScaler")
def image_scaler(x, *, scale: float = 1.0, bias: list[float] | None = None):
    """scale * x + bias[c] over an NCHW image batch, one bias per channel."""
    check_inputs("ImageScaler", FLOATS, x)
    if x.dim() != 4:
        raise ValueError(f"ImageScaler takes an NCHW input, got rank {x.dim()}")
    y = x * scale
    if bias is None:
        return y
    if len(bias) != x.shape[1]:
        raise ValueError(f"ImageScaler has {len(bias)} biases for {x.shape[1]} channels")
    return y + torch.tensor(bias, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)


@op("ScaledTanh")
def scaled_tanh(x, *, alpha: float = 1.0, beta: float = 1.0):
    """alpha * tanh(beta * x)."""
    check_inputs("ScaledTanh", FLOATS, x)
    return alpha * torch.tanh(beta * x)


@op("ParametricSoftplus")
def parametric_softplus(x, *, alpha: float = 1.0, beta: float = 1.0):
    """alpha * ln(1 + exp(beta * x)), computed without overflow."""
    check_inputs("ParametricSoftplus", FLOATS, x)
    return alpha * torch.nn.functional.softplus(beta * x)


OPS = [image_scaler, scaled_tanh, parametric_softplus]
