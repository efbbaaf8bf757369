"""Attention on CUDA: torch's scaled-dot-product attention with one back-end per configuration
(flash, memory-efficient, cuDNN, math), so the builder times them on the layer's real shapes."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ...device import Target
from ...ir import Node
from ...ops.kinds import Kind, is_kind
from ..tactic import TacticBase

_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}


class SdpaTactic(TacticBase):
    name = "sdpa"
    writes_output = False

    def supports(self, node: Node, target: Target) -> bool:
        return (target.is_cuda and is_kind(node, Kind.ATTENTION)
                and all(t.rank == 4 and t.is_static for t in node.inputs[:3]))

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        half = node.inputs[0].dtype.torch != torch.float32  # type: ignore[union-attr]
        masked = node.input(3) is not None
        names = [b for b in ("flash", "cudnn", "efficient", "math")
                 if half or b in ("efficient", "math")]
        if masked:
            names = [b for b in names if b != "flash"]
        found = [{"backend": b} for b in names]
        return found[:1] if level == 0 else found

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        backend = _BACKENDS[config["backend"]]
        scale = float(node.attrs.get("scale", 1.0))
        transposed = bool(node.attrs.get("k_transposed", 1))

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            q, k, v = inputs[0], inputs[1], inputs[2]
            mask = inputs[3] if len(inputs) > 3 else None
            if transposed:
                k = k.transpose(-1, -2)  # type: ignore[union-attr]
            if k.stride(-1) != 1:  # type: ignore[union-attr]
                k = k.contiguous()  # type: ignore[union-attr]  # the fused back-ends need unit inner stride
            with sdpa_kernel([backend]):
                return [F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)]

        return kernel
