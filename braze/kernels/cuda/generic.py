"""The CUDA fallback for every op: its reference implementation, run by torch on the GPU.

The result is adopted as the layer's output (no copy); an op whose implementation cannot run on
the GPU is detected when the builder times it, and runs on the CPU instead (`device: cpu`), which
keeps the engine correct but out of CUDA graphs.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...device import Target
from ...errors import UnsupportedError
from ...ir import Node
from ...ops import REGISTRY
from ..tactic import TacticBase


class TorchTactic(TacticBase):
    name = "torch"
    writes_output = False

    def supports(self, node: Node, target: Target) -> bool:
        try:
            REGISTRY.for_node(node)
        except UnsupportedError:
            return False
        return True

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        return [{"device": "cuda"}, {"device": "cpu"}]

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        opdef = REGISTRY.for_node(node)
        attrs, n_out = node.attrs, len(node.outputs)
        if config.get("device") == "cpu":
            device = target.device

            def on_cpu(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
                args = [None if x is None else x.cpu() for x in inputs]
                return [r.to(device) for r in opdef.run(args, attrs, n_out)]

            on_cpu.capturable = False  # type: ignore[attr-defined]
            return on_cpu

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            return opdef.run(inputs, attrs, n_out)

        return kernel
