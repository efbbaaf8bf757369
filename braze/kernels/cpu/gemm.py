"""Matrix products on the CPU through oneDNN: the constant weight reordered once into oneDNN's blocked
layout for the layer's row count, bias and activation fused as post-ops, a residual added after (the path
PyTorch's own CPU compiler takes for linear layers). Activations whose post-op would lose NaN or inf run in place
after the product, as in conv.py."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...device import Target
from ...ir import Node
from ..operands import gemm_operands
from ..tactic import TacticBase
from .conv import finish_in_place, onednn_available, onednn_post_op


def onednn_linear_available() -> bool:
    return onednn_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class OneDnnGemmTactic(TacticBase):
    name = "onednn_gemm"
    owned_inputs = (1, 2)  # weight and bias, prepared at compile

    def supports(self, node: Node, target: Target) -> bool:
        if target.is_cuda or not onednn_linear_available() or gemm_operands(node) is None:
            return False
        x = node.inputs[0]
        act, params = node.attrs.get("activation", "none"), list(node.attrs.get("act_params") or [])
        return x.dtype is not None and x.dtype.value == "float32" and onednn_post_op(act, params) is not None

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        k, n = gemm_operands(node)  # type: ignore[misc]
        rows = node.inputs[0].numel // k
        w = node.inputs[1].value.t().contiguous()  # type: ignore[union-attr]
        weight = torch.ops.mkldnn._reorder_linear_weight(w, rows)
        b = node.input(2)
        bias = b.value.reshape(-1).contiguous() if b is not None else None  # type: ignore[union-attr]
        act, params = node.attrs.get("activation", "none"), list(node.attrs.get("act_params") or [])
        unary, scalars, algorithm = onednn_post_op(act, params)  # type: ignore[misc]
        finish = finish_in_place(act, params)
        linear = torch.ops.mkldnn._linear_pointwise

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            x = inputs[0].reshape(-1, k).contiguous()  # type: ignore[union-attr]
            residual = inputs[3] if len(inputs) > 3 else None
            y = linear(x, weight, bias, unary, scalars, algorithm or None)
            if finish is not None:
                finish(y)
            if residual is not None:  # NOTE: oneDNN's binary-add post-op is 5x slower here than adding after
                y.add_(residual.reshape(-1, n))
            out = outputs[0]
            if out is None:
                return [y.view(node.outputs[0].shape)]  # type: ignore[arg-type]
            out.view(-1, n).copy_(y)
            return None

        return kernel
