"""braze's own op vocabulary: the domain of the ops the optimizer makes, and their names (the kinds).

Every pass, kernel and planner names a braze op through `Kind`, never through its string:

    node(graph, Kind.FUSED_CONV, inputs, outputs, attrs, ..., domain=DOMAIN)
    if is_kind(node, Kind.POINTWISE): ...

`Kind` is a `StrEnum`: a member equals (and hashes as) its plain string, so `node.op == Kind.FUSED_CONV`
holds for a node read back from a plan's JSON, and a plan written from one stays readable JSON.
"""

from __future__ import annotations

from enum import StrEnum

from ..ir import Node

DOMAIN = "braze"


class Kind(StrEnum):
    """The ops of braze's domain. Each has a reference in braze/ops (fused.py, qfused.py) equal to the
    composition of the ops it replaces."""

    FUSED_CONV = "FusedConv"  # activation(conv(x, w) + bias [+ residual])
    FUSED_GEMM = "FusedGemm"  # activation(x @ w + bias) [+ residual]
    ATTENTION = "Attention"  # softmax(q @ k^T * scale [+ mask]) @ v
    POINTWISE = "Pointwise"  # a chain of elementwise ops, carried as a subgraph
    CONCAT_IN_PLACE = "ConcatInPlace"  # a Concat whose producers write into their slices of its output
    SILU = "SiLU"  # x * sigmoid(x)
    QCONV = "QConv"  # FusedConv on INT8 input and weights, output requantized or dequantized
    QGEMM = "QGemm"  # FusedGemm on INT8 input and weights, output requantized or dequantized


def is_kind(node: Node, *kinds: Kind) -> bool:
    """Whether `node` is one of braze's own `kinds`: its op is one of them and its domain is braze's."""
    return node.domain == DOMAIN and node.op in kinds
