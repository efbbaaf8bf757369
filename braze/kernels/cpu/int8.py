"""INT8 convolutions and matrix products on the CPU (QConv, QGemm) through oneDNN's quantized primitives: the
ops PyTorch's own x86 quantization path calls (onednn.qconv2d_pointwise, onednn.qlinear_pointwise), on plain
uint8/int8 tensors, with the weights prepacked once at compile into oneDNN's blocked layout.

oneDNN accumulates u8 x s8 products exactly in int32 on CPUs with VNNI (AVX512-VNNI, AVX-VNNI, AMX); without
it, it halves the weights to avoid int16 saturation, which rounds them. `exact_int8_available` therefore asks
for VNNI and checks on a probe that the sums are exact; elsewhere these tactics decline and the reference runs.

Each layer takes one of two paths:
  fused     oneDNN does it all: scales, bias, the activation (where oneDNN has it), a quantized residual (its
            "sum" post-op, which adds before the activation: QConv with no activation or relu, QGemm with none;
            dequantized to float32 first for a float output) and the requantized or float32 output. Its float
            arithmetic differs from the reference's in rounding only, so an output is within one step of the
            reference (braze.testing.quantized_tolerance).
  epilogue  oneDNN gives acc * scale + bias (and QGemm's activation) in float32, and the rest runs in torch as
            the reference writes it: a float residual (which may hold NaN or inf, which oneDNN's unary post-ops
            do not keep), activations oneDNN lacks, and the final quantize.
A float16 or bfloat16 output is the float32 result cast by the copy into the planned output.

oneDNN's activations must be uint8 (an int8 input takes its slow reference path, or is refused): an int8 tensor
with zero point z holds the values of the uint8 tensor x ^ 0x80 with zero point z + 128, one pass over the input.
Asymmetric pads are applied first, with the zero point as the value.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ...device import Target
from ...ir import Node, Tensor
from ...ops.epilogue import activate, subset
from ...ops.kinds import Kind, is_kind
from ...ops.quantize import dtype_of_code
from ..operands import conv_geometry
from ..tactic import TacticBase

_CL = torch.channels_last
_INTEGER = (torch.int8, torch.uint8)
_FLOAT = (torch.float32, torch.float16, torch.bfloat16)
# NOTE: oneDNN's unary post-ops keep no NaN (relu/hardtanh map it to 0); they are fused only where their input is
# finite: a product of integers plus a finite bias, before any float residual is added.
_CONV_UNARY = {"relu": "relu", "clip": "hardtanh", "silu": "swish", "hardswish": "hardswish"}
_GEMM_UNARY = {**_CONV_UNARY, "gelu": "gelu", "gelu_tanh": "gelu", "tanh": "tanh", "leaky_relu": "leaky_relu"}
subset(_GEMM_UNARY, "oneDNN's INT8 post-ops")


def _onednn_ops_present() -> bool:
    ops = torch.ops.onednn
    return torch.backends.mkldnn.is_available() and all(
        hasattr(ops, n) for n in ("qconv_prepack", "qconv2d_pointwise", "qlinear_prepack", "qlinear_pointwise"))


@functools.lru_cache(maxsize=None)
def exact_int8_available() -> bool:
    """oneDNN's INT8 convolution and matrix product are present and exact on this CPU (VNNI, and a probe with
    the extreme values that int16 saturation or halved weights would change agrees with exact sums)."""
    if not _onednn_ops_present():
        return False
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    if not any(caps.get(k) for k in ("avx512_vnni", "avx_vnni", "amx_int8")):
        return False
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (1, 32, 6, 6), generator=g, dtype=torch.uint8)
    x[:, :, :3] = 255
    w = torch.randint(-128, 128, (16, 32, 3, 3), generator=g, dtype=torch.int8)
    w[:8] = 127
    ones, zeros = torch.ones(16), torch.zeros(16, dtype=torch.int64)
    packed = torch.ops.onednn.qconv_prepack(w, ones, 1.0, 3, [1, 1], [1, 1], [1, 1], 1, list(x.shape))
    y = torch.ops.onednn.qconv2d_pointwise(x.contiguous(memory_format=_CL), 1.0, 3, packed, ones, zeros, None,
                                           [1, 1], [1, 1], [1, 1], 1, 1.0, 0, torch.float32, "none", [], "")
    exact = F.conv2d(x.double() - 3, w.double(), padding=1)
    xm = x.permute(0, 2, 3, 1).reshape(36, 32)
    wm = w[:, :, 1, 1].t().contiguous()
    packed = torch.ops.onednn.qlinear_prepack(wm.t().contiguous(), [36, 32])
    ym = torch.ops.onednn.qlinear_pointwise(xm, 1.0, 3, packed, ones, zeros, None, 1.0, 0, torch.float32, "none",
                                            [], "")
    return torch.equal(y.double(), exact) and torch.equal(ym.double(), (xm.double() - 3) @ wm.double())


@dataclass(frozen=True)
class QuantAttrs:
    """The quantization attributes shared by QConv and QGemm, resolved to torch types."""
    x_dtype: torch.dtype
    x_scale: float
    x_zero_point: int
    activation: str
    act_params: list[float]
    residual: str  # "none", "float" or "quantized"
    residual_scale: float
    residual_zero_point: int
    out_dtype: torch.dtype
    out_scale: float  # 0: a float output
    out_zero_point: int

    @staticmethod
    def of(node: Node) -> QuantAttrs | None:
        """The node's attributes, or None where they fall outside what the INT8 tactics do exactly."""
        a, x, r = node.attrs, node.inputs[0], node.input(4)
        try:
            out = dtype_of_code(int(a.get("output_dtype", 1)), "output_dtype").torch
        except Exception:
            return None
        x_dtype = x.dtype.torch if x.dtype is not None else None
        rs = float(a.get("residual_scale", 0.0))
        q = QuantAttrs(x_dtype, float(a.get("x_scale", 0.0)), int(a.get("x_zero_point", 0)), a.get("activation", "none"),
                       [float(p) for p in a.get("act_params") or []],
                       "none" if r is None else "float" if rs == 0 else "quantized", rs,
                       int(a.get("residual_zero_point", 0)), out, float(a.get("out_scale", 0.0)),
                       int(a.get("out_zero_point", 0)))
        r_dtype = None if r is None or r.dtype is None else r.dtype.torch
        ok = (x_dtype in _INTEGER and _in_range(q.x_zero_point, x_dtype) and _positive(q.x_scale)
              and (out in _INTEGER and _positive(q.out_scale) and _in_range(q.out_zero_point, out)
                   if q.out_scale != 0 else out in _FLOAT)
              and (q.residual == "none" or (q.residual == "float" and r_dtype in _FLOAT)
                   or (r_dtype in _INTEGER and _positive(rs) and _in_range(q.residual_zero_point, r_dtype))))
        return q if ok else None

    def unary(self, table: dict[str, str]) -> tuple[str, list[float], str] | None:
        """oneDNN's post-op for the activation (name, scalars, algorithm), or None where it has none."""
        if self.activation == "none":
            return "none", [], ""
        if self.activation not in table:
            return None
        if self.activation == "clip":
            return ("hardtanh", self.act_params, "") if all(abs(p) != float("inf") for p in self.act_params) else None
        scalars = self.act_params if self.activation == "leaky_relu" else []
        algorithm = "tanh" if self.activation == "gelu_tanh" else "none" if self.activation == "gelu" else ""
        return table[self.activation], scalars, algorithm


def _in_range(value: int, dtype: torch.dtype) -> bool:
    info = torch.iinfo(dtype)
    return info.min <= value <= info.max


def _positive(value: float) -> bool:
    return 0 < value < float("inf")


def _constant_ok(t: Tensor | None, numel: int) -> bool:
    """A constant float vector of `numel` finite values (a scale or bias), or no tensor."""
    return t is None or (t.is_constant and t.value.is_floating_point() and t.value.numel() == numel  # type: ignore
                         and bool(torch.isfinite(t.value).all()))  # type: ignore[union-attr]


def supports_node(node: Node, op: Kind, target: Target) -> bool:
    """The checks QConv and QGemm share: the op, a constant int8 weight with finite scales (and bias), static
    shapes, a residual of the output's shape, and attributes QuantAttrs accepts."""
    if target.is_cuda or not is_kind(node, op) or len(node.inputs) < 3 or not exact_int8_available():
        return False
    x, w, y, r = node.inputs[0], node.inputs[1], node.outputs[0], node.input(4)
    if not (x.is_static and y.is_static and w.is_constant and w.dtype is not None and w.dtype.torch == torch.int8):
        return False
    channels = int(w.shape[0] if op == Kind.QCONV else w.shape[1])  # type: ignore[index]
    reduction = w.numel // channels  # type: ignore[operator]
    scale = node.inputs[2]
    # NOTE: oneDNN sums into int32: every sum of `reduction` products of a uint8 and an int8 must fit
    return (x.numel > 0 and reduction * 255 * 128 < 2**31 and _constant_ok(scale, channels) and scale is not None
            and bool((scale.value > 0).all())  # type: ignore[union-attr]
            and _constant_ok(node.input(3), channels) and (r is None or (r.is_static and r.shape == y.shape))
            and QuantAttrs.of(node) is not None)


def as_uint8(x: torch.Tensor, zero_point: int, memory_format=torch.contiguous_format) -> tuple[torch.Tensor, int]:
    """x as uint8 in `memory_format` with the zero point that keeps its values (int8: flip the sign bit, z + 128)."""
    if x.dtype == torch.uint8:
        return x.contiguous(memory_format=memory_format), zero_point
    out = torch.empty(x.shape, dtype=torch.uint8, memory_format=memory_format)
    return torch.bitwise_xor(x.view(torch.uint8), 128, out=out), zero_point + 128


def accumulator(r: torch.Tensor, q: QuantAttrs, memory_format=torch.contiguous_format,
                into: torch.Tensor | None = None) -> tuple[torch.Tensor, float, int]:
    """The quantized residual as oneDNN's sum post-op takes it, with its scale and zero point: a buffer (`into`
    when given) that the product overwrites with the output. For an integer output it is in the output's type
    (int8 <-> uint8 flips the sign bit and moves the zero point by 128); for a float output it is dequantized to
    float32 as the reference dequantizes it (exactly: the difference of two integers is exact in float32)."""
    dtype = q.out_dtype if q.out_scale > 0 else torch.float32
    acc = torch.empty(r.shape, dtype=dtype, memory_format=memory_format) if into is None else into
    if q.out_scale == 0:
        return acc.copy_(r).sub_(q.residual_zero_point).mul_(q.residual_scale), 1.0, 0
    if r.dtype == dtype:
        return acc.copy_(r), q.residual_scale, q.residual_zero_point
    torch.bitwise_xor(r.view(torch.uint8), 128, out=acc.view(torch.uint8))
    return acc, q.residual_scale, q.residual_zero_point + (128 if r.dtype == torch.int8 else -128)


def _in_place(out: torch.Tensor | None, q: QuantAttrs, memory_format) -> bool:
    """Whether the planned output can be the sum post-op's buffer (its type and layout are oneDNN's)."""
    dtype = q.out_dtype if q.out_scale > 0 else torch.float32
    return out is not None and out.dtype == dtype and out.is_contiguous(memory_format=memory_format)


def epilogue(y: torch.Tensor, residual: torch.Tensor | None, q: QuantAttrs, *, activated: bool,
             residual_first: bool) -> torch.Tensor:
    """The reference's epilogue (braze/ops/qfused.py) on oneDNN's float32 acc * scale + bias: the residual,
    the activation (unless oneDNN applied it), then the quantize, in the same order and types."""
    r = None
    if residual is not None:
        r = residual.float() if q.residual == "float" else \
            (residual.to(torch.float64) - q.residual_zero_point).float() * q.residual_scale
    if r is not None and residual_first:
        y = y.add_(r)
    if not activated:
        y = activate(y, q.activation, q.act_params)
    if r is not None and not residual_first:
        y = y.add_(r)
    if q.out_scale > 0:
        info = torch.iinfo(q.out_dtype)
        return (torch.round(y.double() / q.out_scale) + q.out_zero_point).clamp(info.min, info.max).to(q.out_dtype)
    return y


def _onednn_output(q: QuantAttrs, fused: bool) -> tuple[float, int, torch.dtype]:
    """Output scale, zero point and type to ask oneDNN for: the layer's own when fused, else float32 (oneDNN
    writes float outputs as float32; the planned output's copy casts to float16 or bfloat16)."""
    if fused and q.out_scale > 0:
        return q.out_scale, q.out_zero_point, q.out_dtype
    return 1.0, 0, torch.float32


class OneDnnQConvTactic(TacticBase):
    """QConv (2-D) through onednn.qconv2d_pointwise."""

    name = "onednn_qconv"
    owned_inputs = (1, 2, 3)  # int8 weight, its scales and the bias, prepacked at compile

    def supports(self, node: Node, target: Target) -> bool:
        return (supports_node(node, Kind.QCONV, target) and node.inputs[0].rank == 4
                and node.inputs[1].rank == 4)

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        q = QuantAttrs.of(node)
        assert q is not None, "supports() checked the attributes"
        win = conv_geometry(node)
        stride, dilation, group = list(win.strides), list(win.dilations), int(node.attrs.get("group", 1))
        padding = list(win.begin) if win.symmetric else [0, 0]
        pre_pad = None if win.symmetric else (win.begin[1], win.end[1], win.begin[0], win.end[0])
        shape = list(node.inputs[0].shape)  # type: ignore[arg-type]
        shape[2:] = [n + b + e for n, b, e in zip(shape[2:], win.begin, win.end)] if pre_pad else shape[2:]
        x_zp = q.x_zero_point + (128 if q.x_dtype == torch.int8 else 0)
        w = node.inputs[1].value.contiguous()  # type: ignore[union-attr]
        w_scale = node.inputs[2].value.float().contiguous()  # type: ignore[union-attr]
        w_zp = torch.zeros(w.shape[0], dtype=torch.int64)
        packed = torch.ops.onednn.qconv_prepack(w, w_scale, q.x_scale, x_zp, stride, padding, dilation, group, shape)
        b = node.input(3)
        bias = None if b is None else b.value.float().contiguous()  # type: ignore[union-attr]
        unary = q.unary(_CONV_UNARY)
        # NOTE: oneDNN's sum post-op adds before the unary one, as QConv adds the residual before its activation
        summed = q.residual == "quantized" and q.activation in ("none", "relu")
        fused = (q.residual == "none" and unary is not None) or summed
        name, scalars, algorithm = unary if fused and unary is not None else ("none", [], "")
        out_scale, out_zp, out_dtype = _onednn_output(q, fused)
        geometry = (stride, padding, dilation, group)
        conv = torch.ops.onednn.qconv2d_pointwise

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            x, zp = as_uint8(inputs[0], q.x_zero_point, _CL)  # type: ignore[arg-type]
            if pre_pad is not None:
                x = F.pad(x, pre_pad, value=zp).contiguous(memory_format=_CL)
            r, out = (inputs[4] if len(inputs) > 4 else None), outputs[0]
            if summed:
                in_place = _in_place(out, q, _CL)
                y, acc_scale, acc_zp = accumulator(r, q, _CL, into=out if in_place else None)  # type: ignore
                conv.binary(x, q.x_scale, zp, packed, w_scale, w_zp, y, bias, *geometry, out_scale, out_zp,
                            out_dtype, acc_scale, acc_zp, "sum", 1.0, name, scalars, algorithm)
                if in_place:
                    return None
            else:
                y = conv(x, q.x_scale, zp, packed, w_scale, w_zp, bias, *geometry, out_scale, out_zp, out_dtype,
                         name, scalars, algorithm)
                if not fused:
                    y = epilogue(y, r, q, activated=False, residual_first=True)
            if out is None:
                return [y.to(q.out_dtype)]
            out.copy_(y)
            return None

        return kernel


class OneDnnQGemmTactic(TacticBase):
    """QGemm (x [..., K] @ w [K, N]) through onednn.qlinear_pointwise."""

    name = "onednn_qgemm"
    owned_inputs = (1, 2, 3)  # int8 weight, its scales and the bias, prepacked at compile

    def supports(self, node: Node, target: Target) -> bool:
        if not supports_node(node, Kind.QGEMM, target):
            return False
        x, w = node.inputs[0], node.inputs[1]
        return w.rank == 2 and x.rank is not None and x.rank >= 2 and x.shape[-1] == w.shape[0]  # type: ignore

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        q = QuantAttrs.of(node)
        assert q is not None, "supports() checked the attributes"
        k, n = (int(d) for d in node.inputs[1].shape)  # type: ignore[union-attr]
        rows = node.inputs[0].numel // k
        out_shape = list(node.outputs[0].shape)  # type: ignore[arg-type]
        packed = torch.ops.onednn.qlinear_prepack(node.inputs[1].value.t().contiguous(), [rows, k])  # type: ignore
        w_scale = node.inputs[2].value.float().contiguous()  # type: ignore[union-attr]
        w_zp = torch.zeros(n, dtype=torch.int64)
        b = node.input(3)
        bias = None if b is None else b.value.float().contiguous()  # type: ignore[union-attr]
        unary = q.unary(_GEMM_UNARY)
        # NOTE: QGemm adds the residual after its activation; oneDNN's sum post-op comes before its unary one
        summed = q.residual == "quantized" and q.activation == "none"
        fused = (q.residual == "none" and unary is not None) or summed
        name, scalars, algorithm = unary if unary is not None else ("none", [], "")
        out_scale, out_zp, out_dtype = _onednn_output(q, fused)
        linear = torch.ops.onednn.qlinear_pointwise

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            # NOTE: oneDNN's int8 (s8) activations take a slow reference path: uint8 it is
            x, zp = as_uint8(inputs[0].reshape(rows, k), q.x_zero_point)  # type: ignore[union-attr]
            r, out = (inputs[4] if len(inputs) > 4 else None), outputs[0]
            if summed:
                planned = None if out is None else out.view(rows, n)
                in_place = _in_place(planned, q, torch.contiguous_format)
                y, acc_scale, acc_zp = accumulator(r.reshape(rows, n), q,  # type: ignore[union-attr]
                                                   into=planned if in_place else None)
                linear.binary(x, q.x_scale, zp, packed, w_scale, w_zp, y, bias, out_scale, out_zp, out_dtype,
                              acc_scale, acc_zp, "sum", 1.0, name, scalars, algorithm)
                if in_place:
                    return None
            else:
                y = linear(x, q.x_scale, zp, packed, w_scale, w_zp, bias, out_scale, out_zp, out_dtype, name,
                           scalars, algorithm)
                if not fused:
                    y = epilogue(y, None if r is None else r.reshape(rows, n), q, activated=unary is not None,
                                 residual_first=False)
            if out is None:
                return [y.to(q.out_dtype).reshape(out_shape)]
            out.view(rows, n).copy_(y)
            return None

        return kernel


TACTICS = [OneDnnQConvTactic(), OneDnnQGemmTactic()]
