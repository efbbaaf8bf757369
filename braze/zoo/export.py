"""Exporting a zoo module to ONNX in-process, with the TorchScript exporter, to a ModelProto.

The batch dim of every input and output is dynamic (named "batch"). The module is traced in eval
mode, but with `TrainingMode.PRESERVE`, which keeps the exporter from folding BatchNormalization
into the preceding convolution: that folding is braze's optimizer's job and is tested on these
graphs. Everything else (shape arithmetic, constant subgraphs) is folded, as real exporters do.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import torch
from torch import nn

from ..errors import BrazeError
from .common import ZooModel

MIN_OPSET = 11  # the oldest opset braze's frontend reads
MAX_OPSET = 20  # the newest the TorchScript exporter writes


def to_onnx(spec: ZooModel, module: nn.Module, opset: int) -> onnx.ModelProto:
    """Trace `module` on a sample batch of 2 and return the exported ModelProto."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BrazeError(f"zoo model {spec.name!r}: opset {opset} is not available; "
                         f"the zoo exports opsets {MIN_OPSET} to {MAX_OPSET}")
    feeds = spec.sample(2, np.random.default_rng(0))
    args = tuple(torch.from_numpy(feeds[i.name]) for i in spec.inputs)
    names = [i.name for i in spec.inputs] + list(spec.outputs)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated
        warnings.filterwarnings("ignore", "It is recommended that constant folding be turned off", UserWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module.eval(), args, buffer, dynamo=False, opset_version=opset,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
                          input_names=[i.name for i in spec.inputs], output_names=list(spec.outputs),
                          dynamic_axes={name: {0: "batch"} for name in names})
    model = onnx.load_from_string(buffer.getvalue())
    model.graph.name = spec.name
    return model
