"""What every zoo entry shares: its description (`ZooModel`), seeded weight initialization, and
sample-input helpers.

Weights are random but shaped like a trained network's: convolutions Kaiming-normal, transformer
weights N(0, 0.02), biases and normalization parameters random and never exactly 0 or 1, and
BatchNorm running statistics measured on a random batch, so every layer's activations keep a
sane scale from input to output and folding BatchNorm into convolutions changes real numbers.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class ZooInput:
    name: str
    shape: tuple[int, ...]  # without the leading batch dim
    dtype: np.dtype


@dataclass(frozen=True)
class ZooModel:
    """One architecture: how to build it, what it takes and returns, and what its export must contain."""

    name: str
    summary: str
    build: Callable[[], nn.Module]  # a fresh module with the seeded weights, in eval mode
    inputs: tuple[ZooInput, ...]
    outputs: tuple[str, ...]
    sample: Callable[[int, np.random.Generator], dict[str, np.ndarray]]  # (batch, rng) -> feeds
    op_types: frozenset[str]  # ONNX op types its opset-17 export must contain

    def shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        return {i.name: (batch, *i.shape) for i in self.inputs}


def random_images(batch: int, rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """Uniform random RGB pixels, normalized with the ImageNet mean and std, NCHW float32."""
    pixels = rng.random((batch, size, size, 3), dtype=np.float32)
    return np.ascontiguousarray(((pixels - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2))


def init_cnn(model: nn.Module) -> None:
    """Kaiming-normal convolutions, N(0, 0.01) classifiers, random biases and BatchNorm affine params."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.05)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, std=0.1)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.normal_(m.bias, std=0.05)


def init_transformer(model: nn.Module) -> None:
    """N(0, 0.02) linear, embedding and patch weights; small random biases; LayerNorm scales near 1."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.02)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        elif isinstance(m, nn.LayerNorm):
            nn.init.normal_(m.weight, mean=1.0, std=0.1)
            nn.init.normal_(m.bias, std=0.05)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, images: torch.Tensor) -> None:
    """Set every BatchNorm's running mean and variance to the statistics of its input on `images`.

    One forward pass in training mode with cumulative averaging; the model is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    model(images)
    for bn in norms:
        bn.momentum = 0.1
    model.eval()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's global generator seeded (nn.init draws from it), and restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_cnn(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A convnet constructed, initialized and BatchNorm-calibrated under one seed."""
    with seeded(seed):
        model = factory()
        init_cnn(model)
        calibrate_batchnorm(model, torch.from_numpy(random_images(2, np.random.default_rng(seed))))
    return model


def image_sample(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs of an image classifier whose input is named `input`."""
    return {"input": random_images(batch, rng)}
