"""The model zoo: reference architectures defined in braze's own code, with seeded random weights,
exported to ONNX in-process, so that tests, benchmarks and the demo need no download.

    braze.zoo.names()                      # ['resnet50', 'mobilenetv2', 'bert', 'vit']
    model = braze.zoo.load("resnet50")     # onnx.ModelProto, batch dim dynamic ("batch")
    braze.parse_onnx("zoo:resnet50")       # the same, wherever a model path is taken
    feeds = braze.zoo.sample_inputs("bert", batch=1)
    reference = braze.zoo.torch_module("bert")(*(torch.from_numpy(v) for v in feeds.values()))

One module per architecture (resnet, mobilenet, bert, vit) holds its nn.Module, its weight
initialization and its `SPEC`; `common` what they share; `export` the trip to ONNX.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
from torch import nn

from ..errors import ModelError
from . import bert, mobilenet, resnet, vit
from .common import ZooModel
from .export import to_onnx

MODELS: dict[str, ZooModel] = {spec.name: spec for spec in (resnet.SPEC, mobilenet.SPEC, bert.SPEC, vit.SPEC)}


def names() -> list[str]:
    """The zoo's model names."""
    return list(MODELS)


def spec(name: str) -> ZooModel:
    """The description of one zoo model; a ModelError (a BrazeError) listing the known names for any other."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ModelError(f"no zoo model named {name!r}; the zoo has {', '.join(MODELS)}") from None


def load(name: str, opset: int = 17) -> onnx.ModelProto:
    """The model exported to ONNX at `opset` (11 to 20), batch dim dynamic.

    Exports are cached for the process; each call returns its own copy, free to modify.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(_exported(spec(name).name, int(opset)))
    return copy


@functools.lru_cache(maxsize=None)
def _exported(name: str, opset: int) -> onnx.ModelProto:
    model = MODELS[name]
    return to_onnx(model, model.build(), opset)


def torch_module(name: str) -> nn.Module:
    """A fresh torch module, in eval mode, with the weights the ONNX export has."""
    return spec(name).build()


def default_shapes(name: str, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """Every input's shape at this batch size, as BuilderConfig(shapes=...) takes them."""
    return spec(name).shapes(batch)


def sample_inputs(name: str, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the model's shapes and dtypes, the same for the same seed: normalized random
    images, or token ids in range with an attention mask padded with zeros at the end of each row."""
    return spec(name).sample(batch, np.random.default_rng(seed))


__all__ = ["MODELS", "ZooModel", "default_shapes", "load", "names", "sample_inputs", "spec", "torch_module"]
