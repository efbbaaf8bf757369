"""INT8 tactics for CUDA: the quantized fused kinds QGemm and QConv (ops/qfused.py).

Two ways to each, and the builder times them:
  triton_qgemm, triton_qconv    braze's Triton kernels: int8 tensor-core GEMM / implicit-GEMM convolution with
                                the whole epilogue fused (triton/qgemm.py, triton/qconv.py)
  cublaslt_qgemm, cublaslt_qconv1x1
                                cuBLASLt's int8 GEMM (torch._int_mm: M > 16, K and N multiples of 8) into an
                                int32 accumulator, then the same epilogue as one Triton kernel; a 1x1 convolution
                                without padding is a GEMM over its pixels
Every tactic prepares its weight ([N, K] int8, K-major), scales, zero-point correction and bias once at compile
(it owns inputs 1-3) and writes into the output view it is handed, whatever its layout.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...device import Target
from ...ir import DType, Node
from ...ops.kinds import Kind, is_kind
from ..operands import conv_geometry
from ..tactic import TacticBase

_X_TYPES = (DType.int8, DType.uint8)
_FLOAT_OUT = (DType.float32, DType.float16, DType.bfloat16)
_CL = torch.channels_last


def _quantized_layer(node: Node, kind: Kind, ranks: range) -> int | None:
    """K (the reduction length) when `node` is a `kind` layer the INT8 kernels run: a static int8/uint8 input of a
    rank in `ranks`; a constant int8 weight ([K, N] or [M, C, KH, KW]), scales and bias; a residual of the
    output's shape; an activation the epilogue knows; an output type that matches out_scale; and an int32
    accumulator that holds every sum."""
    from ..triton.qgemm import SUPPORTED_ACTIVATIONS

    if not is_kind(node, kind):
        return None
    x, w, scale, out = node.inputs[0], node.input(1), node.input(2), node.outputs[0]
    bias, residual = node.input(3), node.input(4)
    if x is None or x.dtype not in _X_TYPES or not x.is_static or x.rank not in ranks:
        return None
    if w is None or scale is None or not (w.is_constant and scale.is_constant) or w.dtype != DType.int8:
        return None
    gemm = kind == Kind.QGEMM
    if w.rank != (2 if gemm else 4):
        return None
    channels = int(w.shape[-1] if gemm else w.shape[0])  # type: ignore[index,arg-type]
    if scale.numel not in (1, channels):
        return None
    if bias is not None and (not bias.is_constant or bias.numel not in (1, channels)):
        return None
    if not out.is_static:
        return None
    if residual is not None and (not residual.is_static or residual.shape != out.shape):
        return None
    if node.attrs.get("activation", "none") not in SUPPORTED_ACTIVATIONS:
        return None
    quantized = float(node.attrs.get("out_scale", 0.0)) > 0
    if out.dtype not in (_X_TYPES if quantized else _FLOAT_OUT):
        return None
    k = w.numel // channels
    return k if k * 255 * 128 < 2**31 else None


def _epilogue(node: Node, w_nk: torch.Tensor, target: Target, residual_first: bool):
    from ..triton.qgemm import prepare_epilogue

    scale, bias = node.inputs[2].value, node.input(3)  # type: ignore[union-attr]
    x_dtype, out_dtype = node.inputs[0].dtype.torch, node.outputs[0].dtype.torch  # type: ignore[union-attr]
    return prepare_epilogue(node.attrs, w_nk, scale, None if bias is None else bias.value,  # type: ignore[arg-type]
                            x_dtype=x_dtype, out_dtype=out_dtype, residual=node.input(4) is not None,
                            residual_first=residual_first, device=target.device)


def _residual(inputs: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    return inputs[4] if len(inputs) > 4 else None


def _int_mm_shape(m: int, k: int, n: int) -> bool:
    return hasattr(torch, "_int_mm") and m > 16 and k % 8 == 0 and n % 8 == 0


_EPILOGUE_CONFIGS = [{"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4}, {"BLOCK_M": 32, "BLOCK_N": 128, "num_warps": 4},
                     {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8}]


def _epilogue_configs(level: int) -> list[dict[str, Any]]:
    return _EPILOGUE_CONFIGS[:1] if level == 0 else _EPILOGUE_CONFIGS


def _as_int8(a: torch.Tensor, flip: bool) -> torch.Tensor:
    """int8 rows for cuBLASLt: a uint8 x shifted by -128 (the epilogue's correction adds it back)."""
    return a.view(torch.int8) ^ -128 if flip else a.view(torch.int8)


class _QGemmBase(TacticBase):
    owned_inputs = (1, 2, 3)  # weight, weight scale and bias, prepared at compile

    @staticmethod
    def _shape(node: Node) -> tuple[int, int, int] | None:
        k = _quantized_layer(node, Kind.QGEMM, range(2, 9))
        if k is None:
            return None
        n = int(node.inputs[1].shape[1])  # type: ignore[union-attr,index]
        return node.inputs[0].numel // k, k, n  # type: ignore[union-attr]

    @staticmethod
    def _prepare(node: Node, target: Target):
        w_nk = node.inputs[1].value.t().contiguous()  # type: ignore[union-attr]
        return w_nk.to(target.device), _epilogue(node, w_nk, target, residual_first=False)


class TritonQGemmTactic(_QGemmBase):
    """x[..., K] @ W[K, N] in int8 with the epilogue fused, one Triton kernel; the block shape is tuned."""

    name = "triton_qgemm"

    def supports(self, node: Node, target: Target) -> bool:
        return target.is_cuda and self._shape(node) is not None

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        from ..triton.qgemm import tuning_space

        m, k, n = self._shape(node)  # type: ignore[misc]
        return tuning_space(m, n, k, level)

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        from ..triton.qgemm import qgemm

        w_nk, epi = self._prepare(node, target)
        k, n = w_nk.shape[1], w_nk.shape[0]

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            residual = _residual(inputs)
            qgemm(inputs[0].reshape(-1, k), w_nk, outputs[0].view(-1, n), epi,  # type: ignore[union-attr]
                  None if residual is None else residual.reshape(-1, n), **config)
            return None

        return kernel


class CublasLtQGemmTactic(_QGemmBase):
    """torch._int_mm (cuBLASLt int8, int32 out) and the fused epilogue as a second Triton kernel."""

    name = "cublaslt_qgemm"

    def supports(self, node: Node, target: Target) -> bool:
        shape = self._shape(node) if target.is_cuda else None
        return shape is not None and _int_mm_shape(*shape)

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        return _epilogue_configs(level)

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        from ..triton.qgemm import int32_epilogue

        w_nk, epi = self._prepare(node, target)
        w_kn = w_nk.t()  # NOTE: column-major [K, N]: the layout cuBLASLt's int8 GEMM runs fast in
        k, n = w_nk.shape[1], w_nk.shape[0]

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            rows = inputs[0].reshape(-1, k).contiguous()  # type: ignore[union-attr]
            acc = torch._int_mm(_as_int8(rows, epi.flip), w_kn)
            residual = _residual(inputs)
            int32_epilogue(acc, outputs[0].view(-1, n), epi,  # type: ignore[union-attr]
                           None if residual is None else residual.reshape(-1, n), **config)
            return None

        return kernel


class _QConvBase(TacticBase):
    owned_inputs = (1, 2, 3)  # weight, weight scale and bias, prepared at compile

    @staticmethod
    def _conv(node: Node) -> int | None:
        """K = C*KH*KW of a 2-D, group-1 QConv the kernels run."""
        k = _quantized_layer(node, Kind.QCONV, range(4, 5))
        return k if k is not None and int(node.attrs.get("group", 1)) == 1 else None

    @staticmethod
    def _prepare(node: Node, target: Target):
        from ..triton.qconv import prepare_weight

        w_mk = prepare_weight(node.inputs[1].value)  # type: ignore[union-attr,arg-type]
        return w_mk.to(target.device), _epilogue(node, w_mk, target, residual_first=True)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_contiguous(memory_format=_CL) else x.contiguous(memory_format=_CL)


class TritonQConvTactic(_QConvBase):
    """INT8 implicit-GEMM convolution in Triton (any stride, padding, dilation; group 1) with the epilogue fused;
    the input is read channels-last (converted first where it arrives otherwise)."""

    name = "triton_qconv"

    def supports(self, node: Node, target: Target) -> bool:
        return target.is_cuda and self._conv(node) is not None

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        from ..triton.qgemm import tuning_space

        n, m, oh, ow = node.outputs[0].shape  # type: ignore[misc]
        return tuning_space(n * oh * ow, m, int(node.inputs[0].shape[1]), level)  # type: ignore[index]

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        from ..triton.qconv import qconv

        w_mk, epi = self._prepare(node, target)
        win = conv_geometry(node)

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            x = _channels_last(inputs[0])  # type: ignore[arg-type]
            qconv(x, w_mk, outputs[0], epi, win, _residual(inputs), **config)  # type: ignore[arg-type]
            return None

        return kernel


class CublasLtQConv1x1Tactic(_QConvBase):
    """A 1x1 convolution without padding (any stride) as torch._int_mm over its pixels, channels-last rows, and
    the fused epilogue writing the output in its own layout."""

    name = "cublaslt_qconv1x1"

    def supports(self, node: Node, target: Target) -> bool:
        if not target.is_cuda or self._conv(node) is None:
            return False
        if tuple(node.inputs[1].shape[2:]) != (1, 1):  # type: ignore[union-attr,index]
            return False
        win = conv_geometry(node)
        n, m, oh, ow = node.outputs[0].shape  # type: ignore[misc]
        unpadded = win.begin == (0, 0) and win.end == (0, 0)
        return unpadded and _int_mm_shape(n * oh * ow, int(node.inputs[0].shape[1]), m)  # type: ignore[index]

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        return _epilogue_configs(level)

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        from ..triton.qgemm import int32_epilogue

        w_mk, epi = self._prepare(node, target)
        w_kn = w_mk.t()  # NOTE: column-major [C, M], as in cublaslt_qgemm
        sh, sw = conv_geometry(node).strides
        c = w_mk.shape[1]

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            x = inputs[0]
            if (sh, sw) != (1, 1):
                x = x[:, :, ::sh, ::sw]  # type: ignore[index]
            rows = _channels_last(x).permute(0, 2, 3, 1).reshape(-1, c)  # type: ignore[union-attr]
            acc = torch._int_mm(_as_int8(rows, epi.flip), w_kn)
            int32_epilogue(acc, outputs[0], epi, _residual(inputs), **config)  # type: ignore[arg-type]
            return None

        return kernel


TACTICS = [TritonQConvTactic(), CublasLtQConv1x1Tactic(), TritonQGemmTactic(), CublasLtQGemmTactic()]
