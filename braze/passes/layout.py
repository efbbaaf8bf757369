"""Layout: on a GPU target lowered to FP16/BF16, convolutional regions run channels-last (NHWC), where
cuDNN's tensor-core kernels are fastest. Every 2-D convolution is marked `layout=nhwc`; torch's
pooling and elementwise kernels keep that layout, so tensors change layout only at the region's
boundaries (the first convolution converts the NCHW input once). Kernels and the tuner honour the mark.
"""

from __future__ import annotations

from ..ir import Graph
from ..ops.fused import DOMAIN
from .util import node


def run(graph: Graph, ctx) -> None:
    if ctx.target != "cuda" or ctx.precision not in ("fp16", "bf16"):
        return
    for i, n in enumerate(graph.nodes):
        w = n.input(1)
        if n.op not in ("Conv", "FusedConv") or w is None or w.rank != 4 or not w.is_constant:
            continue
        if n.op == "Conv":
            n = graph.nodes[i] = node(graph, "FusedConv", list(n.inputs), n.outputs, dict(n.attrs), name=n.name,
                                      origin=n.origin, domain=DOMAIN)
        n.attrs["layout"] = "nhwc"
        ctx.fired["layout_nhwc"] += 1
