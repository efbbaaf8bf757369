"""Q/DQ fusion: a float layer between Dequantize and Quantize nodes becomes one INT8 layer.

    DequantizeLinear(x_q) -> FusedConv | Conv (constant weight)   -> QConv (float output)
    DequantizeLinear(x_q) -> FusedGemm | MatMul (constant weight) -> QGemm (float output)
    QConv | QGemm (float output) -> QuantizeLinear                -> the same layer, output requantized
    a residual read through DequantizeLinear(r_q)                 -> the layer reads r_q (the quantized skip)

The Q/DQ pairs come from calibration (precision/qdq.py) or from the model itself (onnxruntime's QDQ format,
ModelOpt, PT2E): both meet here. The activation's scale and zero point must be per tensor, constant, int8 or
uint8; the weight is quantized symmetric per output channel from its values (max |w| / 127). A weight that
was DequantizeLinear(int8, a scale per channel or per tensor) in the model, folded to float, is exactly such
a product and is recovered exactly (the scale found is checked by multiplying back); any other is rounded. A
pair no rule fuses stays, and runs in float with its rounding kept.

Runs before the float types are lowered: the scales are float32 here, and lowering keeps a quantized
layer's weight scales in float32.
"""

from __future__ import annotations

import torch

from ..ir import DType, Graph, Node, Tensor
from ..ops.kinds import DOMAIN, Kind
from .pattern import Any, Const, Match, Op, Rule, rewrite
from .util import constant, merged_origin, node

_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
_QUANTIZED = (DType.int8, DType.uint8)
_ONNX_CODE = {DType.int8: 3, DType.uint8: 2, DType.float32: 1}
_LAYERS = ("Conv", Kind.FUSED_CONV, "MatMul", Kind.FUSED_GEMM)


def _per_tensor(scale: Tensor, zero_point: Tensor | None, x_q: Tensor) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor Q/DQ on an int8/uint8 tensor, else None."""
    if x_q.dtype not in _QUANTIZED or scale.value is None or scale.value.numel() != 1:
        return None
    if zero_point is not None and (zero_point.value is None or zero_point.value.numel() != 1
                                   or zero_point.dtype != x_q.dtype):
        return None
    s = float(scale.value.reshape(()))
    if not s > 0 or s == float("inf"):
        return None
    return s, 0 if zero_point is None else int(zero_point.value.reshape(()))


def _dequantized(t: Tensor | None, producer: dict[Tensor, Node]) -> tuple[Tensor, float, int] | None:
    """(x_q, scale, zero point) when `t` is made by a per-tensor DequantizeLinear."""
    dq = producer.get(t) if t is not None else None
    if dq is None or dq.op != "DequantizeLinear" or dq.domain not in ("", "ai.onnx"):
        return None
    params = _per_tensor(dq.inputs[1], dq.input(2), dq.inputs[0])
    return None if params is None else (dq.inputs[0], *params)


def int8_weight(w: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Symmetric int8 per channel along `axis`: (w_q, scale, exact). `exact` says w is int8 (within +-127) times
    the scale found, per channel or per tensor, to the last bit: a model's DequantizeLinear, folded, is recovered
    so. Otherwise the weight is rounded to max |w| / 127 per channel, which only calibration's layers may take."""
    dims = [d for d in range(w.dim()) if d != axis]
    shape = [-1 if d == axis else 1 for d in range(w.dim())]
    amax = w.abs().amax(dim=dims)
    rounded = torch.where(amax > 0, (amax.double() / 127).float(), torch.ones_like(amax))
    for top in (rounded, rounded.max().expand_as(rounded)):  # per channel, then per tensor
        scale, exact = _exact_scale(w, top, shape, dims)
        if exact:
            return torch.round(w.double() / scale.double().reshape(shape)).to(torch.int8), scale, True
    return torch.round(w.double() / rounded.double().reshape(shape)).clamp(-127, 127).to(torch.int8), rounded, False


def _exact_scale(w: torch.Tensor, scale: torch.Tensor, shape: list[int], dims: list[int]) -> tuple[torch.Tensor, bool]:
    """Per channel, the first of `scale` and its two float32 neighbours by which w is int8 times it exactly (the
    division that found it may land one ulp off the model's scale); whether every channel has one."""
    found = scale.clone()
    done = torch.zeros_like(scale, dtype=torch.bool)
    for candidate in (scale, torch.nextafter(scale, torch.full_like(scale, float("inf"))),
                      torch.nextafter(scale, torch.zeros_like(scale))):
        q = torch.round(w.double() / candidate.double().reshape(shape))
        fits = (q.abs() <= 127) & (q.float() * candidate.reshape(shape) == w)
        ok = fits.all(dim=dims) if dims else fits
        found = torch.where(~done & ok, candidate, found)
        done |= ok
    return found, bool(done.all())


def _layer(m: Match, graph: Graph, calibrated: frozenset[str]) -> list[Node] | None:
    layer, x_dq = m.root, m["x_dq"]
    producer = graph.producers()
    found = _dequantized(x_dq, producer)
    w = layer.inputs[1]
    if found is None or not w.is_constant or w.dtype != DType.float32 or layer.outputs[0].dtype != DType.float32:
        return None
    x_q, x_scale, x_zero = found
    conv = layer.op in ("Conv", Kind.FUSED_CONV)
    if (conv and w.rank != 4) or (not conv and w.rank != 2):
        return None
    w_q, w_scale, exact = int8_weight(w.value, 0 if conv else 1)
    if not exact and x_q.name not in calibrated:
        return None  # NOTE: a model's own Q/DQ: only weights that are exactly int8 times a scale keep its meaning
    bias, residual = layer.input(2), layer.input(3)
    if bias is not None and not bias.is_constant:
        return None
    attrs = {"x_scale": x_scale, "x_zero_point": x_zero, "activation": layer.attrs.get("activation", "none"),
             "act_params": list(layer.attrs.get("act_params") or []), "output_dtype": _ONNX_CODE[DType.float32]}
    skip = _dequantized(residual, producer)
    if skip is not None and len(graph.consumers().get(residual, [])) == 1:
        residual = skip[0]
        attrs.update(residual_scale=skip[1], residual_zero_point=skip[2])
    if conv:
        attrs.update({k: layer.attrs[k] for k in _CONV_ATTRS if k in layer.attrs})
        if "layout" in layer.attrs:
            attrs["layout"] = layer.attrs["layout"]
    inputs = [x_q, constant(graph, w_q, f"{layer.name}.weight_int8"),
              constant(graph, w_scale, f"{layer.name}.weight_scale"), bias, residual]
    while inputs[-1] is None:
        inputs.pop()
    kind = Kind.QCONV if conv else Kind.QGEMM
    return [node(graph, kind, inputs, layer.outputs, attrs, name=layer.name, origin=layer.origin or (layer.name,),
                 domain=DOMAIN)]


def _requantize(m: Match, graph: Graph) -> list[Node] | None:
    q, layer = m.root, m["layer"]
    out = q.outputs[0]
    params = _per_tensor(q.inputs[1], q.input(2), out) if out.dtype in _QUANTIZED else None
    if params is None or layer.attrs.get("out_scale", 0.0) > 0:
        return None
    attrs = {**layer.attrs, "out_scale": params[0], "out_zero_point": params[1], "output_dtype": _ONNX_CODE[out.dtype]}
    return [node(graph, layer.op, list(layer.inputs), q.outputs, attrs, name=layer.name,
                 origin=merged_origin(layer, q), domain=DOMAIN)]


def rules(calibrated: frozenset[str] = frozenset()) -> list[Rule]:
    """The fusion rules; `calibrated` names the quantized tensors braze's calibration made, whose layers' weights
    may be rounded to int8 (a model's own Q/DQ layers fuse only where the weight is exactly int8)."""
    def layer(m: Match, graph: Graph) -> list[Node] | None:
        return _layer(m, graph, calibrated)

    return [
        Rule("qdq_conv", Op(("Conv", Kind.FUSED_CONV), Any("x_dq"), Const("w"), partial=True), layer),
        Rule("qdq_gemm", Op(("MatMul", Kind.FUSED_GEMM), Any("x_dq"), Const("w"), partial=True), layer),
        REQUANTIZE,
    ]


REQUANTIZE = Rule("qdq_requantize", Op("QuantizeLinear", Op((Kind.QCONV, Kind.QGEMM), any_inputs=True, name="layer",
                                                          domain=DOMAIN), partial=True), _requantize)


def split_shared_dequantize(graph: Graph) -> int:
    """Give each quantizable reader of a shared DequantizeLinear its own copy, so each can fuse it."""
    consumers = graph.consumers()
    made = 0
    for dq in [n for n in graph.nodes if n.op == "DequantizeLinear"]:
        readers = consumers.get(dq.outputs[0], [])
        if len(readers) < 2:
            continue
        for reader in [r for r in readers[1:] if r.op in _LAYERS]:
            copy = Tensor(graph.unique_name(f"{dq.outputs[0].name}.copy"), dq.outputs[0].dtype, dq.outputs[0].shape)
            twin = Node(dq.op, list(dq.inputs), [copy], dict(dq.attrs), name=graph.unique_name(f"{dq.name}.copy"),
                        domain=dq.domain, version=dq.version, origin=dq.origin)
            reader.inputs = [copy if t is dq.outputs[0] else t for t in reader.inputs]
            graph.nodes.insert(graph.nodes.index(reader), twin)
            made += 1
    return made


def run(graph: Graph, ctx) -> None:
    if not any(n.op == "DequantizeLinear" for n in graph.nodes):
        return
    split = split_shared_dequantize(graph)
    if split:
        ctx.fired["split_shared_dequantize"] += split
    rewrite(graph, rules(ctx.calibrated), ctx.fired)
