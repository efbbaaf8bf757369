"""Layout: convolutional regions run channels-last (NHWC) where the target's kernels are fastest in it: on a GPU
lowered to FP16/BF16 (cuDNN's tensor-core kernels) or in INT8 (braze's implicit-GEMM QConv), and on a CPU with
oneDNN in FP32 or INT8. Every such 2-D convolution is marked `layout=nhwc`; pooling and elementwise kernels keep
that layout and the memory plan gives their outputs channels-last strides, so tensors change layout only at the
region's boundaries (the first convolution converts the NCHW input once). Kernels and the tuner honour the mark.

It runs after the precision stage, so each convolution is judged by the type it computes in.
"""

from __future__ import annotations

from ..ir import DType, Graph
from ..ops.kinds import DOMAIN, Kind
from .util import node


def prefers_nhwc(target: str, dtype: DType | None) -> bool:
    """Whether a convolution computing in `dtype` is fastest channels-last on `target`."""
    if target == "cuda":
        return dtype in (DType.float16, DType.bfloat16, DType.int8, DType.uint8)
    from ..kernels.cpu.conv import onednn_available
    from ..kernels.cpu.int8 import exact_int8_available

    if dtype in (DType.int8, DType.uint8):
        return exact_int8_available()  # NOTE: oneDNN's INT8 convolution; NCHW int8 costs more in transposes than it
    return dtype == DType.float32 and onednn_available()


def run(graph: Graph, ctx) -> None:
    for i, n in enumerate(graph.nodes):
        w = n.input(1)
        if n.op not in ("Conv", Kind.FUSED_CONV, Kind.QCONV) or w is None or w.rank != 4 or not w.is_constant:
            continue
        if not prefers_nhwc(ctx.target, n.inputs[0].dtype):
            continue
        if n.op == "Conv":
            attrs = {**n.attrs, "activation": "none", "act_params": []}
            n = graph.nodes[i] = node(graph, Kind.FUSED_CONV, list(n.inputs), n.outputs, attrs, name=n.name,
                                      origin=n.origin, domain=DOMAIN)
        n.attrs["layout"] = "nhwc"
        ctx.fired["layout_nhwc"] += 1
