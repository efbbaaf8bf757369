"""Layout: convolutional regions run channels-last (NHWC) where the target's kernels are fastest in it:
on a GPU lowered to FP16/BF16 (cuDNN's tensor-core kernels) and on a CPU with oneDNN in FP32. Every 2-D
convolution is marked `layout=nhwc`; pooling and elementwise kernels keep that layout and the memory plan
gives their outputs channels-last strides, so tensors change layout only at the region's boundaries (the
first convolution converts the NCHW input once). Kernels and the tuner honour the mark.
"""

from __future__ import annotations

from ..ir import Graph
from ..ops.fused import DOMAIN
from .util import node


def prefers_nhwc(target: str, precision: str) -> bool:
    if target == "cuda":
        return precision in ("fp16", "bf16")
    from ..kernels.cpu.conv import onednn_available

    return precision == "fp32" and onednn_available()


def run(graph: Graph, ctx) -> None:
    if not prefers_nhwc(ctx.target, ctx.precision):
        return
    for i, n in enumerate(graph.nodes):
        w = n.input(1)
        if n.op not in ("Conv", "FusedConv") or w is None or w.rank != 4 or not w.is_constant:
            continue
        if n.op == "Conv":
            attrs = {**n.attrs, "activation": "none", "act_params": []}
            n = graph.nodes[i] = node(graph, "FusedConv", list(n.inputs), n.outputs, attrs, name=n.name,
                                      origin=n.origin, domain=DOMAIN)
        n.attrs["layout"] = "nhwc"
        ctx.fired["layout_nhwc"] += 1
