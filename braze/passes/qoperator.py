"""QOperator models into the QDQ form: onnxruntime's quantized operators become DequantizeLinear -> float op ->
QuantizeLinear, so that the Q/DQ fusion rules (fuse_qdq.py) make INT8 layers of them as of any QDQ model.

    QLinearConv(x, xs, xz, w, ws, 0, ys, yz, B)      -> Q(Conv(DQ(x), DQ(w), B * xs * ws), ys, yz)
    QLinearMatMul(a, as, az, b, bs, bz, ys, yz)      -> Q(MatMul(DQ(a), DQ(b)), ys, yz)
    com.microsoft QGemm(a, .., b, .., C, ys?, yz?)   -> [Q](Gemm(DQ(a), DQ(b, alpha * bs), C * as * bs * alpha))
    com.microsoft QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu, QLinearGlobalAveragePool,
                  QLinearAveragePool, QLinearConcat -> Q(op(DQ(x), ...))

It runs first, before fold_constants: a weight's DequantizeLinear of constants folds into a float weight that is
exactly int8 times its scale, from which fuse_qdq recovers the model's integers and scales. The float op keeps the
ONNX node's name (pins and `compare --per-layer` find it); the Q/DQ nodes carry its origin.

A node stays as it is (and runs as its exact reference) where the QDQ form would change its meaning: a weight
that is not int8 with zero points 0 (the fusion would re-round it), scales or zero points that are not constants,
an activation quantized per row, channels-last pools. ConvInteger, MatMulInteger, DynamicQuantizeLinear and the
dynamic com.microsoft ops are not rewritten: an int32 output or a scale found per run has no static Q/DQ form.

Refused with a ModelError naming the node (onnxruntime returns garbage or refuses them too): a constant scale that
is zero, negative or not finite; a per-axis scale or zero point whose length is not the output channels'; a
QLinearConv whose weight zero points differ between channels.
"""

from __future__ import annotations

import torch

from ..errors import ModelError
from ..ir import DType, Graph, Node, Tensor
from ..ops.msquant import MS_DOMAIN, qgemm
from .fuse_qdq import int8_weight as recover_int8
from .pattern import Match, Op, Rule, rewrite
from .util import constant

# The (scale, zero point) inputs of each op, by index (QLinearConcat's follow each of its inputs).
_PARAMS = {"QLinearConv": ((1, 2), (4, 5), (6, 7)), "QLinearMatMul": ((1, 2), (4, 5), (6, 7)),
           qgemm.name: ((1, 2), (4, 5), (7, 8)), "QLinearAdd": ((1, 2), (4, 5), (6, 7)),
           "QLinearMul": ((1, 2), (4, 5), (6, 7)), "QLinearSigmoid": ((1, 2), (3, 4)),
           "QLinearLeakyRelu": ((1, 2), (3, 4)), "QLinearGlobalAveragePool": ((1, 2), (3, 4)),
           "QLinearAveragePool": ((1, 2), (3, 4))}


def _where(node: Node) -> str:
    return f"node {node.name!r} ({node.op})"


def check_scales(node: Node) -> None:
    """Refuse a constant scale of `node` that is zero, negative or not finite (the message of build/checks.py)."""
    pairs = _PARAMS.get(node.op, ())
    if node.op == "QLinearConcat":
        pairs = ((0, 1), *((i + 1, i + 2) for i in range(2, len(node.inputs), 3)))
    for s, _ in pairs:
        scale = node.input(s)
        if scale is None or scale.value is None or not scale.value.is_floating_point():
            continue
        bad = ~(scale.value.float() > 0) | scale.value.float().isinf()
        if bool(bad.any()):
            at = int(bad.reshape(-1).nonzero()[0])
            where = f" at index {at} of {scale.value.numel()}" if scale.value.numel() > 1 else ""
            raise ModelError(f"{_where(node)}: its scale {scale.name!r} is {float(scale.value.reshape(-1)[at]):.6g}"
                             f"{where}; a quantization scale must be positive and finite")


def _per_tensor(scale: Tensor | None, zero_point: Tensor | None) -> bool:
    """A constant scale and zero point (or none) of one value each."""
    return (scale is not None and scale.value is not None and scale.value.numel() == 1
            and (zero_point is None or (zero_point.value is not None and zero_point.value.numel() == 1)))


def _weight(node: Node, w: Tensor, scale: Tensor, zero_point: Tensor | None, axis: int, *,
            refuse_mixed_zero_points: bool = False, alpha: float | torch.Tensor = 1.0) -> bool:
    """Whether a weight goes through DQ -> fold -> fuse_qdq unchanged: constant int8, zero points 0, a constant scale
    (times alpha) per tensor or per output channel, and integers fuse_qdq finds again in the folded weight (it does
    where they use the full range +-127 in each channel, as onnxruntime's symmetric quantization makes them).
    Refuses per-axis parameters of the wrong length."""
    channels = w.shape[axis] if w.shape is not None and len(w.shape) > axis else None
    for p, what in ((scale, "scale"), (zero_point, "zero point")):
        if p is not None and p.value is not None and p.value.numel() not in (1, channels):
            raise ModelError(f"{_where(node)}: the weight's {what} {p.name!r} has {p.value.numel()} values; it must "
                             f"have 1 (per tensor) or {channels} (one per output channel)")
    if zero_point is not None and zero_point.value is not None:
        values = zero_point.value.reshape(-1)
        if refuse_mixed_zero_points and bool((values != values[0]).any()):
            raise ModelError(f"{_where(node)}: the weight's zero points {zero_point.name!r} differ between output "
                             f"channels ({values.unique().tolist()[:4]}...); one zero point per weight is supported "
                             "(onnxruntime refuses it too)")
        if bool(values.any()):
            return False
    if w.value is None or w.dtype != DType.int8 or scale.value is None or channels is None:
        return False
    shape = [-1 if d == axis else 1 for d in range(w.value.dim())]
    per_channel = scale.value.numel() > 1
    folded = w.value.float() * (alpha * scale.value.float()).reshape(shape if per_channel else ())
    return recover_int8(folded, axis)[2]


def _nodes(graph: Graph, root: Node):
    """A builder of the replacement: DQ, Q and the float op, named after `root` and standing for it."""
    made: list[Node] = []
    names: set[str] = set()

    def fresh(base: str) -> str:
        name, i = graph.unique_name(base), 0
        while name in names:
            i += 1
            name = graph.unique_name(f"{base}_{i}")
        names.add(name)
        return name

    def add(op: str, inputs: list, attrs: dict | None = None, *, out: Tensor | None = None,
            name: str | None = None) -> Tensor:
        """A node of `op` (float32 output unless `out` is given), named `name` or after the root."""
        out = out or Tensor(fresh(f"{root.outputs[0].name}.{op.lower()}"), DType.float32)
        made.append(Node(op, inputs, [out], dict(attrs or {}), name=name or fresh(f"{root.name}.{op.lower()}"),
                         origin=root.origin or (root.name,)))
        return out

    def dq(x: Tensor, scale: Tensor, zero_point: Tensor | None, axis: int | None = None) -> Tensor:
        inputs = [x, scale] if zero_point is None else [x, scale, zero_point]
        out = Tensor(fresh(f"{x.name}.dequantized"), DType.float32, x.shape)
        return add("DequantizeLinear", inputs, {} if axis is None else {"axis": axis}, out=out)

    def q(y: Tensor, scale: Tensor, zero_point: Tensor | None, like: Tensor) -> Tensor:
        """Quantize into the root's output, to the zero point's type (else like's, the root's quantized input)."""
        if zero_point is None:
            zero_point = constant(graph, torch.zeros((), dtype=like.dtype.torch), f"{root.name}.zero_point")
        return add("QuantizeLinear", [y, scale, zero_point], out=root.outputs[0])

    return made, add, dq, q


def _float_bias(graph: Graph, name: str, bias: Tensor | None, scale: torch.Tensor) -> Tensor | None:
    """An int32 bias of scale `scale` (per tensor or per output channel) as float32, as the model means it."""
    if bias is None:
        return None
    return constant(graph, (bias.value.to(torch.float64) * scale.to(torch.float64)).float(), f"{name}.bias")


def _conv(m: Match, graph: Graph) -> list[Node] | None:
    node = m.root
    x, xs, xz, w, ws, wz, ys, yz = node.inputs[:8]
    b = node.input(8)
    if w.shape is None or len(w.shape) < 3 or not isinstance(w.shape[0], int):
        return None
    if not _weight(node, w, ws, wz, 0, refuse_mixed_zero_points=True):
        return None
    if not (_per_tensor(xs, xz) and _per_tensor(ys, yz)) or (b is not None and b.value is None):
        return None
    made, add, dq, q = _nodes(graph, node)
    w_scale = ws.value.reshape(-1).float()
    per_channel = w_scale.numel() > 1
    # NOTE: onnxruntime's bias scale is x_scale * w_scale, in float32
    bias = _float_bias(graph, node.name, b, xs.value.reshape(()).float() * w_scale)
    weight = dq(w, constant(graph, w_scale, f"{node.name}.weight_scale") if per_channel else ws, None,
                0 if per_channel else None)
    y = add("Conv", [dq(x, xs, xz), weight, bias] if bias is not None else [dq(x, xs, xz), weight],
            dict(node.attrs), name=node.name)
    q(y, ys, yz, x)
    return made


def _matmul(m: Match, graph: Graph) -> list[Node] | None:
    node = m.root
    a, a_s, az, b, bs, bz, ys, yz = node.inputs[:8]
    if not (_per_tensor(a_s, az) and _per_tensor(ys, yz)):
        return None
    made, add, dq, q = _nodes(graph, node)
    if b.is_constant:
        if b.shape is None or len(b.shape) != 2 or not _weight(node, b, bs, bz, 1):
            return None
        weight = dq(b, bs, None, 1 if bs.value.numel() > 1 else None)
    elif _per_tensor(bs, bz):
        weight = dq(b, bs, bz)
    else:
        return None
    q(add("MatMul", [dq(a, a_s, az), weight], name=node.name), ys, yz, a)
    return made


def _gemm(m: Match, graph: Graph) -> list[Node] | None:
    node = m.root
    a, a_s, az, b, bs, bz = node.inputs[:6]
    c, ys, yz = node.input(6), node.input(7), node.input(8)
    trans_b = node.attrs.get("transB", 0)
    if b.shape is None or len(b.shape) != 2 or (c is not None and c.value is None):
        return None
    # NOTE: alpha goes into the weight's scale, so the folded weight stays int8 times a scale
    alpha = torch.tensor(node.attrs.get("alpha", 1.0), dtype=torch.float32)
    if not _weight(node, b, bs, bz, 0 if trans_b else 1, alpha=alpha) or not _per_tensor(a_s, az):
        return None
    if (ys is None) != (yz is None) or (ys is not None and not _per_tensor(ys, yz)):
        return None
    made, add, dq, q = _nodes(graph, node)
    b_scale = alpha * bs.value.reshape(-1).float()
    bias = _float_bias(graph, node.name, c, alpha * a_s.value.reshape(()).float() * bs.value.reshape(-1).float())
    per_column = b_scale.numel() > 1
    weight = dq(b, constant(graph, b_scale if per_column else b_scale.reshape(()), f"{node.name}.weight_scale"),
                None, (0 if trans_b else 1) if per_column else None)
    attrs = {"alpha": 1.0, "beta": 1.0, "transA": node.attrs.get("transA", 0), "transB": trans_b}
    inputs = [dq(a, a_s, az), weight] + ([bias] if bias is not None else [])
    if ys is None:
        add("Gemm", inputs, attrs, out=node.outputs[0], name=node.name)
    else:
        q(add("Gemm", inputs, attrs, name=node.name), ys, yz, a)
    return made


def _elementwise(op: str, n_in: int, attrs=lambda node: {}):
    """QLinearX over `n_in` quantized inputs (each X, scale, zero point) followed by the output's scale and zero
    point -> Q(op(DQ(X)...))."""
    def rewrite_one(m: Match, graph: Graph) -> list[Node] | None:
        node = m.root
        triples = [node.inputs[3 * i:3 * i + 3] for i in range(n_in)]
        ys, yz = node.inputs[3 * n_in], node.input(3 * n_in + 1)
        if not all(_per_tensor(s, z) for _, s, z in triples) or not _per_tensor(ys, yz):
            return None
        if node.attrs.get("channels_last", 0):
            return None
        made, add, dq, q = _nodes(graph, node)
        q(add(op, [dq(x, s, z) for x, s, z in triples], attrs(node), name=node.name), ys, yz, triples[0][0])
        return made
    return rewrite_one


def _concat(m: Match, graph: Graph) -> list[Node] | None:
    node = m.root
    ys, yz = node.inputs[:2]
    triples = [node.inputs[i:i + 3] for i in range(2, len(node.inputs), 3)]
    if not _per_tensor(ys, yz) or not all(len(t) == 3 and _per_tensor(t[1], t[2]) for t in triples):
        return None
    made, add, dq, q = _nodes(graph, node)
    q(add("Concat", [dq(x, s, z) for x, s, z in triples], {"axis": node.attrs["axis"]}, name=node.name), ys, yz,
      triples[0][0])
    return made


_POOL = ("auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides")


def _ms(op: str) -> Op:
    return Op(op, any_inputs=True, domain=MS_DOMAIN)


RULES = [
    Rule("qlinear_conv", Op("QLinearConv", any_inputs=True, domain=""), _conv),
    Rule("qlinear_matmul", Op("QLinearMatMul", any_inputs=True, domain=""), _matmul),
    Rule("qgemm", _ms(qgemm.name), _gemm),
    Rule("qlinear_add", _ms("QLinearAdd"), _elementwise("Add", 2)),
    Rule("qlinear_mul", _ms("QLinearMul"), _elementwise("Mul", 2)),
    Rule("qlinear_sigmoid", _ms("QLinearSigmoid"), _elementwise("Sigmoid", 1)),
    Rule("qlinear_leaky_relu", _ms("QLinearLeakyRelu"),
         _elementwise("LeakyRelu", 1, lambda node: {"alpha": node.attrs.get("alpha", 0.01)})),
    Rule("qlinear_global_average_pool", _ms("QLinearGlobalAveragePool"), _elementwise("GlobalAveragePool", 1)),
    Rule("qlinear_average_pool", _ms("QLinearAveragePool"),
         _elementwise("AveragePool", 1, lambda node: {k: node.attrs[k] for k in _POOL if k in node.attrs})),
    Rule("qlinear_concat", _ms("QLinearConcat"), _concat),
]


def run(graph: Graph, ctx) -> None:
    quantized = [n for n in graph.nodes if n.op in _PARAMS or (n.op == "QLinearConcat" and n.domain == MS_DOMAIN)]
    if not quantized:
        return
    for node in quantized:
        check_scales(node)
    rewrite(graph, RULES, ctx.fired)
