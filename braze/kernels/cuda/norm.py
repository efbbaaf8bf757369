"""LayerNormalization on CUDA: one Triton kernel per layer (braze/kernels/triton/norm.py), scale and bias
prepared once, statistics in float32."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ...device import Target
from ...ir import DType, Node
from ..tactic import TacticBase

_FLOATS = (DType.float32, DType.float16, DType.bfloat16)


class TritonLayerNormTactic(TacticBase):
    """LayerNormalization with constant scale/bias of the normalized shape and only its first output used."""

    name = "triton_layernorm"
    owned_inputs = (1, 2)

    def supports(self, node: Node, target: Target) -> bool:
        if not (target.is_cuda and node.op == "LayerNormalization" and node.domain == ""):
            return False
        x, scale, bias = node.input(0), node.input(1), node.input(2)
        if x is None or scale is None or not x.is_static or x.dtype not in _FLOATS:
            return False
        if any(t is not None for t in node.outputs[1:]):  # Mean and InvStdDev are not computed
            return False
        normalized = tuple(x.shape[int(node.attrs.get("axis", -1)) % x.rank:])  # type: ignore[index,operator]
        from ..triton.norm import MAX_COLS

        return math.prod(normalized) <= MAX_COLS and all(
            t is None or (t.is_constant and tuple(t.shape) == normalized) for t in (scale, bias))

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        from ..triton.norm import CONFIGS

        return CONFIGS[:1] if level == 0 else list(CONFIGS)

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        from ..triton.norm import layer_norm

        dtype = node.inputs[0].dtype.torch  # type: ignore[union-attr]
        scale, bias = (None if t is None else t.value.to(target.device, dtype).reshape(-1).contiguous()
                       for t in (node.input(1), node.input(2)))  # type: ignore[union-attr]
        eps = float(node.attrs.get("epsilon", 1e-5))
        rows, warps = int(config.get("ROWS", 1)), int(config.get("num_warps", 4))

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            x, out = inputs[0].contiguous(), outputs[0]  # type: ignore[union-attr]
            dense = out if out.is_contiguous() else torch.empty_like(x)  # type: ignore[union-attr]
            layer_norm(x, scale, bias, dense, eps, ROWS=rows, num_warps=warps)
            if dense is not out:
                out.copy_(dense)  # type: ignore[union-attr]
            return None

        return kernel
