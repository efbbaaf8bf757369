"""The reference tactic: an op's reference implementation, writing into preallocated outputs."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...device import Target
from ...errors import ExecutionError, UnsupportedError
from ...ir import Node
from ...ops import REGISTRY
from ..tactic import TacticBase


class ReferenceTactic(TacticBase):
    """Any op, through its reference implementation, copied into the planned output."""

    name = "reference"

    def supports(self, node: Node, target: Target) -> bool:
        try:
            REGISTRY.for_node(node)
        except UnsupportedError:
            return False
        return True

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        opdef = REGISTRY.for_node(node)
        attrs = node.attrs
        n_out = len(node.outputs)
        names = [t.name for t in node.outputs]

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            results = opdef.run(inputs, attrs, n_out)
            for i, (name, out, res) in enumerate(zip(names, outputs, results)):
                if out is None:
                    # NOTE: a result that is a view of an input (a Reshape to a run-time shape) must not
                    # outlive it: the memory plan does not know of the alias and reuses the input's memory.
                    if _aliases(res, inputs):
                        results[i] = res.clone()
                    continue
                if out.shape != res.shape or out.dtype != res.dtype:
                    raise ExecutionError(f"output {name!r} came out as {res.dtype}{list(res.shape)}, "
                                         f"planned as {out.dtype}{list(out.shape)}")
                out.copy_(res)
            return results

        return kernel


def _aliases(t: torch.Tensor, inputs: Sequence[torch.Tensor | None]) -> bool:
    storage = t.untyped_storage().data_ptr()
    return any(x is not None and x.untyped_storage().data_ptr() == storage for x in inputs)
