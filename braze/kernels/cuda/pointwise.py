"""Pointwise layers on CUDA: one generated Triton kernel per fused elementwise chain."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...device import Target
from ...ir import Node
from ...ops.kinds import Kind, is_kind
from ..tactic import TacticBase


class TritonPointwiseTactic(TacticBase):
    name = "triton_pointwise"

    def supports(self, node: Node, target: Target) -> bool:
        if not (target.is_cuda and is_kind(node, Kind.POINTWISE)):
            return False
        from ..triton.pointwise import generate

        return generate(node.attrs["body"]) is not None

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        blocks = [1024, 256, 4096]
        return [{"block": b} for b in (blocks[:1] if level == 0 else blocks)]

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        from ..triton.pointwise import compile_pointwise

        compiled = compile_pointwise(node.attrs["body"], target.device, block=int(config.get("block", 1024)))
        assert compiled is not None, "supports() checked that the body compiles"

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            compiled.launch(list(inputs), outputs[0])  # type: ignore[arg-type]
            return None

        return kernel
