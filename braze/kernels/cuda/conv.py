"""Convolution tactics for CUDA: cuDNN through torch, in NCHW or NHWC (channels-last) layout, with
cuDNN's fused conv+bias+ReLU and conv+add+ReLU paths, and 1x1 convolutions run as cuBLAS GEMMs. A library's
fused ReLU is used only where it keeps NaN and inf as the reference does (nan_safety.py).

Each tactic prepares its weights once at compile time (layout, dtype) and owns them; it returns
the output torch allocates (on CUDA, from the execution graph's pool)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ...device import Target
from ...ir import Node
from ...ops.epilogue import activate
from ...ops.kinds import DOMAIN, Kind
from ..operands import conv_geometry
from ..tactic import TacticBase
from .nan_safety import cublaslt_epilogue_propagates, cudnn_relu_propagates

_CL = torch.channels_last
_FLOAT = (torch.float16, torch.bfloat16, torch.float32)


def _is_conv2d(node: Node) -> bool:
    if node.op not in ("Conv", Kind.FUSED_CONV) or node.domain not in ("", DOMAIN):
        return False
    x, w = node.inputs[0], node.inputs[1]
    return (w.is_constant and w.rank == 4 and x.is_static and x.dtype is not None and x.dtype.torch in _FLOAT
            and (node.input(2) is None or node.inputs[2].is_constant) and node.outputs[0].is_static)


class CudnnConvTactic(TacticBase):
    """cuDNN convolution; config: layout (nchw | nhwc) and path (plain | fused: cuDNN conv+bias(+add)+ReLU)."""

    name = "cudnn_conv"
    writes_output = False
    owned_inputs = (1, 2)  # weight and bias, prepared at compile

    def supports(self, node: Node, target: Target) -> bool:
        return target.is_cuda and _is_conv2d(node)

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        half = node.inputs[0].dtype.torch != torch.float32  # type: ignore[union-attr]
        marked = node.attrs.get("layout")
        layouts = [marked] if marked else (["nhwc", "nchw"] if half else ["nchw", "nhwc"])
        found = [{"layout": lay, "path": p} for lay in layouts for p in ("fused", "plain")
                 if p == "plain" or self._fusable(node, target, lay == "nhwc")]
        return found[:1] if level == 0 else found

    @staticmethod
    def _fusable(node: Node, target: Target, nhwc: bool) -> bool:
        """cuDNN's conv+bias(+add)+ReLU applies, and keeps NaN and inf as the reference does on this device."""
        return (node.attrs.get("activation") == "relu" and conv_geometry(node).symmetric
                and cudnn_relu_propagates(target.device, node.inputs[0].dtype.torch,  # type: ignore[union-attr]
                                          nhwc, node.input(3) is not None))

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        win = conv_geometry(node)
        dtype = node.inputs[0].dtype.torch  # type: ignore[union-attr]
        nhwc = config.get("layout") == "nhwc"
        w = node.inputs[1].value.to(target.device, dtype)  # type: ignore[union-attr]
        w = w.contiguous(memory_format=_CL) if nhwc else w.contiguous()
        b = node.input(2)
        bias = b.value.to(target.device, dtype) if b is not None else None  # type: ignore[union-attr]
        group = int(node.attrs.get("group", 1))
        act, params = node.attrs.get("activation", "none"), list(node.attrs.get("act_params") or [])
        stride, dilation = list(win.strides), list(win.dilations)
        padding = list(win.begin) if win.symmetric else [0, 0]
        pre_pad = None if win.symmetric else (win.begin[1], win.end[1], win.begin[0], win.end[0])
        # NOTE: checked again at load: the library loading the engine may differ from the one that built it
        fused = config.get("path") == "fused" and self._fusable(node, target, nhwc)

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            x = inputs[0]
            if nhwc and not x.is_contiguous(memory_format=_CL):  # type: ignore[union-attr]
                x = x.contiguous(memory_format=_CL)  # type: ignore[union-attr]
            if pre_pad is not None:
                x = F.pad(x, pre_pad)
            residual = inputs[3] if len(inputs) > 3 else None
            if fused:
                if residual is not None:
                    return [torch.cudnn_convolution_add_relu(x, w, residual, 1.0, bias, stride, padding, dilation,
                                                             group)]
                return [torch.cudnn_convolution_relu(x, w, bias, stride, padding, dilation, group)]
            y = F.conv2d(x, w, bias, stride, padding, dilation, group)
            if residual is not None:
                y.add_(residual)
            if act == "relu":
                return [y.relu_()]
            return [activate(y, act, params)]

        return kernel


class Conv1x1GemmTactic(TacticBase):
    """A 1x1, stride-1, unpadded convolution in NHWC layout is a GEMM: [N*H*W, C] x [C, M] through cuBLAS,
    with bias (and ReLU) in its epilogue."""

    name = "conv1x1_gemm"
    writes_output = False
    owned_inputs = (1, 2)  # weight and bias, prepared at compile

    def supports(self, node: Node, target: Target) -> bool:
        if not (target.is_cuda and _is_conv2d(node)) or int(node.attrs.get("group", 1)) != 1:
            return False
        win = conv_geometry(node)
        one_by_one = tuple(node.inputs[1].shape[2:]) == (1, 1)  # type: ignore[index]
        return (one_by_one and win.strides == (1, 1) and win.begin == (0, 0) and win.end == (0, 0)
                and node.inputs[0].dtype.torch != torch.float32)  # type: ignore[union-attr]

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        dtype = node.inputs[0].dtype.torch  # type: ignore[union-attr]
        w = node.inputs[1].value.to(target.device, dtype)  # type: ignore[union-attr]
        m, c = w.shape[0], w.shape[1]
        wt = w.reshape(m, c).t()  # [C, M] view of the row-major [M, C] weight
        b = node.input(2)
        if b is not None:
            bias = b.value.to(target.device, dtype)  # type: ignore[union-attr]
        else:
            bias = torch.zeros(m, dtype=dtype, device=target.device)
        act, params = node.attrs.get("activation", "none"), list(node.attrs.get("act_params") or [])
        n, _, h, wd = node.outputs[0].shape  # type: ignore[misc]
        lt_relu = act == "relu" and cublaslt_epilogue_propagates(target.device, dtype, gelu=False)

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            x = inputs[0]
            if not x.is_contiguous(memory_format=_CL):  # type: ignore[union-attr]
                x = x.contiguous(memory_format=_CL)  # type: ignore[union-attr]
            rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # type: ignore[union-attr]
            residual = inputs[3] if len(inputs) > 3 else None
            if residual is not None:
                r = residual.contiguous(memory_format=_CL).permute(0, 2, 3, 1).reshape(-1, m)
                y = activate(torch.addmm(r, rows, wt).add_(bias), act, params)
            elif lt_relu:
                y = torch._addmm_activation(bias, rows, wt)
            else:
                y = activate(torch.addmm(bias, rows, wt), act, params)
            return [y.view(n, h, wd, m).permute(0, 3, 1, 2)]

        return kernel
