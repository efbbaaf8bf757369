"""The reference tactic: an op's reference implementation, writing into preallocated outputs."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...device import Target
from ...errors import ExecutionError
from ...ir import Node
from ...ops import REGISTRY


class ReferenceTactic:
    name = "reference"

    def supports(self, node: Node, target: Target) -> bool:
        try:
            REGISTRY.for_node(node)
        except Exception:
            return False
        return True

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        return [{}]

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        opdef = REGISTRY.for_node(node)
        attrs = node.attrs
        n_out = len(node.outputs)
        names = [t.name for t in node.outputs]

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            results = opdef.run(inputs, attrs, n_out)
            for name, out, res in zip(names, outputs, results):
                if out is None:
                    continue
                if out.shape != res.shape or out.dtype != res.dtype:
                    raise ExecutionError(f"output {name!r} came out as {res.dtype}{list(res.shape)}, "
                                         f"planned as {out.dtype}{list(out.shape)}")
                out.copy_(res)
            return results

        return kernel
