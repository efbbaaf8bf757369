"""An INT8 layer (QConv, QGemm) computed in a float type: the float candidate the tuner times against the INT8
kernels, so that "int8 allowed" stays a permission (docs/quantization.md): where INT8 is slower for a layer's
shape, the layer keeps its quantized inputs and outputs but multiplies in float.

The weights are dequantized once at compile (w_q * w_scale, in the compute type: the layer's float16/bfloat16
output type on CUDA, else float32); the input is dequantized on the fly; the library's convolution or GEMM
(cuDNN, cuBLAS, oneDNN) accumulates in float32; the epilogue (bias, residual, activation, requantize) follows
the reference's order.
The result differs from the exact integer sum only by the compute type's rounding of x and w, so a requantized
output is within one step of the reference for any layer whose values are not many thousands of steps.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..device import Target
from ..ir import DType, Node
from ..ops.epilogue import activate
from ..ops.kinds import Kind, is_kind
from ..ops.quantize import dtype_of_code, integer_range
from .operands import conv_geometry
from .tactic import TacticBase


class DequantizedTactic(TacticBase):
    """QConv (2-D) or QGemm, multiplied in the engine's float type (CUDA) or float32 (CPU)."""

    name = "int8_as_float"
    writes_output = False
    owned_inputs = (1, 2, 3)  # the int8 weight, its scales and the bias, prepared at compile

    def supports(self, node: Node, target: Target) -> bool:
        if not is_kind(node, Kind.QCONV, Kind.QGEMM) or not node.inputs[1].is_constant:
            return False
        if node.input(3) is not None and not node.inputs[3].is_constant:
            return False
        return node.op == Kind.QGEMM or node.inputs[1].rank == 4

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        a = node.attrs
        out = dtype_of_code(int(node.attrs.get("output_dtype", 1)), "output_dtype")
        # NOTE: the engine's float type: float16/bfloat16 where the layer outputs it on CUDA, else float32 (an FP32
        # engine's INT8 layer must not lose float32's accuracy when it runs in float)
        compute = out.torch if target.is_cuda and out in (DType.float16, DType.bfloat16) else torch.float32
        conv = node.op == Kind.QCONV
        w_scale = node.inputs[2].value.to(target.device, torch.float32)  # type: ignore[union-attr]
        w_q = node.inputs[1].value.to(target.device)  # type: ignore[union-attr]
        shape = [-1, 1, 1, 1] if conv else [1, -1]
        w = (w_q.float() * w_scale.reshape(shape)).to(compute)
        if conv and a.get("layout") == "nhwc":
            w = w.contiguous(memory_format=torch.channels_last)
        b = node.input(3)
        bias = None if b is None else b.value.to(target.device, torch.float32)  # type: ignore[union-attr]
        x_scale, x_zero = float(a["x_scale"]), int(a.get("x_zero_point", 0))
        r_scale, r_zero = float(a.get("residual_scale", 0.0)), int(a.get("residual_zero_point", 0))
        act, params = a.get("activation", "none"), list(a.get("act_params") or [])
        out_scale, out_zero = float(a.get("out_scale", 0.0)), int(a.get("out_zero_point", 0))
        low, high = integer_range(out) if out_scale > 0 else (0, 0)
        if conv:
            win = conv_geometry(node)
            group, stride, dilation = int(a.get("group", 1)), list(win.strides), list(win.dilations)
            padding = list(win.begin) if win.symmetric else [0, 0]
            pre_pad = None if win.symmetric else (win.begin[1], win.end[1], win.begin[0], win.end[0])

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            x = (inputs[0].to(compute) - x_zero) * x_scale  # type: ignore[union-attr]
            if conv:
                if pre_pad is not None:
                    x = F.pad(x, pre_pad, value=0.0)
                y = F.conv2d(x, w, None, stride, padding, dilation, group).float()
                if bias is not None:
                    y = y + bias.reshape(-1, 1, 1)
            else:
                y = torch.matmul(x, w).float()
                if bias is not None:
                    y = y + bias
            residual = inputs[4] if len(inputs) > 4 else None
            r = None
            if residual is not None:
                r = residual.float() if r_scale == 0 else (residual.float() - r_zero) * r_scale
            if r is not None and conv:
                y = y + r
            y = activate(y, act, params)
            if r is not None and not conv:
                y = y + r
            if out_scale > 0:
                return [(torch.round(y / out_scale) + out_zero).clamp_(low, high).to(out.torch)]
            return [y.to(out.torch)]

        return kernel


TACTICS = [DequantizedTactic()]
