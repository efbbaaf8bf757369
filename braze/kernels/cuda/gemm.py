"""GEMM tactics for CUDA: cuBLAS(Lt) through torch, writing into the planned output, with the bias
and ReLU/GELU epilogues cuBLASLt offers (where they keep NaN and inf: nan_safety.py); and the Triton GEMM
with braze's fused epilogue (bias, activation, residual) in one kernel."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...device import Target
from ...ir import Node
from ...ops.epilogue import activate
from ..operands import gemm_operands
from ..tactic import TacticBase
from .nan_safety import cublaslt_epilogue_propagates

def prepared(node: Node, target: Target, transposed: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight as a [K, N] operand (a view of a row-major [N, K] copy when `transposed`) and the bias."""
    dtype = node.inputs[0].dtype.torch  # type: ignore[union-attr]
    w = node.inputs[1].value.to(target.device, dtype)  # type: ignore[union-attr]
    w = w.t().contiguous().t() if transposed else w.contiguous()
    b = node.input(2)
    return w, (b.value.to(target.device, dtype).reshape(-1) if b is not None else None)  # type: ignore[union-attr]


class CublasGemmTactic(TacticBase):
    """x @ W (+ bias) (+ activation) (+ residual) with torch.addmm / _addmm_activation into the output."""

    name = "cublas"
    owned_inputs = (1, 2)  # weight and bias, prepared at compile

    def supports(self, node: Node, target: Target) -> bool:
        return target.is_cuda and gemm_operands(node) is not None

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        return [{"weight": "nk"}] if level == 0 else [{"weight": "nk"}, {"weight": "kn"}]

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        k, n = gemm_operands(node)  # type: ignore[misc]
        w, bias = prepared(node, target, config.get("weight") == "nk")
        act = node.attrs.get("activation", "none")
        params = list(node.attrs.get("act_params") or [])
        half = node.inputs[0].dtype.torch != torch.float32  # type: ignore[union-attr]
        # NOTE: cuBLASLt's GELU epilogue is the tanh approximation; it stands in for erf-GELU only where the
        # engine's own precision (fp16/bf16) is coarser than the difference between the two.
        epilogue = act == "relu" or act == "gelu_tanh" or (act == "gelu" and half)
        use_gelu = act.startswith("gelu")
        epilogue = epilogue and cublaslt_epilogue_propagates(target.device, w.dtype, gelu=use_gelu)
        zeros = torch.zeros(n, dtype=w.dtype, device=target.device)

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            x2 = inputs[0].reshape(-1, k)  # type: ignore[union-attr]
            out = outputs[0].view(-1, n)  # type: ignore[union-attr]
            residual = inputs[3] if len(inputs) > 3 else None
            if residual is not None and bias is None and act == "none":
                torch.addmm(residual.reshape(-1, n), x2, w, out=out)
                return None
            if epilogue:
                torch._addmm_activation(bias if bias is not None else zeros, x2, w, use_gelu=use_gelu, out=out)
            else:
                if bias is not None:
                    torch.addmm(bias, x2, w, out=out)
                else:
                    torch.mm(x2, w, out=out)
                if act != "none":
                    out.copy_(activate(out, act, params))
            if residual is not None:
                out.add_(residual.reshape(-1, n))
            return None

        return kernel


class TritonGemmTactic(TacticBase):
    """braze's Triton GEMM: act(x @ W + bias) + residual in one kernel; the block shape is tuned."""

    name = "triton_gemm"
    owned_inputs = (1, 2)  # weight and bias, prepared at compile

    def supports(self, node: Node, target: Target) -> bool:
        from ..triton.gemm import ACTIVATIONS

        return (target.is_cuda and gemm_operands(node) is not None
                and node.attrs.get("activation", "none") in ACTIVATIONS)

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        from ..triton.gemm import CONFIGS

        m = node.inputs[0].numel // node.inputs[0].shape[-1]  # type: ignore[operator,index]
        fitting = [c for c in CONFIGS if c["BLOCK_M"] <= max(16, 2 * m)] or CONFIGS[:1]
        chosen = fitting[:1] if level == 0 else fitting[: 2 if level == 1 else len(fitting)]
        tf32 = bool(torch.backends.cuda.matmul.allow_tf32)  # the builder sets it from BuilderConfig.tf32
        return [{**c, "allow_tf32": tf32} for c in chosen]

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        from ..triton.gemm import gemm

        k, n = gemm_operands(node)  # type: ignore[misc]
        w, bias = prepared(node, target, transposed=False)
        act = node.attrs.get("activation", "none")

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            residual = inputs[3] if len(inputs) > 3 else None
            gemm(inputs[0].reshape(-1, k), w, outputs[0].view(-1, n), bias=bias,  # type: ignore[union-attr]
                 residual=None if residual is None else residual.reshape(-1, n), activation=act, **config)
            return None

        return kernel
