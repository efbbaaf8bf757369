"""The reference tactic: an op's reference implementation, writing into preallocated outputs."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...device import Target
from ...errors import ExecutionError
from ...ir import Node
from ...ops import REGISTRY
from ...ops.opdef import input_dtypes
from ..tactic import TacticBase, detached_from


class ReferenceTactic(TacticBase):
    """Any op, through its reference implementation, copied into the planned output."""

    name = "reference"

    def supports(self, node: Node, target: Target) -> bool:
        return REGISTRY.knows(node)

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        opdef = REGISTRY.for_node(node)
        attrs = node.attrs
        n_out = len(node.outputs)
        names = [t.name for t in node.outputs]
        dtypes = input_dtypes(node)

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            results = opdef.run(inputs, attrs, n_out, dtypes)
            for i, (name, out, res) in enumerate(zip(names, outputs, results)):
                if out is None:
                    # NOTE: sequences and optionals hold tensors of their own (braze/ops/sequence.py)
                    results[i] = detached_from([res], inputs)[0]
                    continue
                if not isinstance(res, torch.Tensor):
                    raise ExecutionError(f"output {name!r} came out as {_kind(res)}, planned as a tensor")
                if out.shape != res.shape or out.dtype != res.dtype:
                    raise ExecutionError(f"output {name!r} came out as {res.dtype}{list(res.shape)}, "
                                         f"planned as {out.dtype}{list(out.shape)}")
                out.copy_(res)
            return results

        return kernel


def _kind(value: Any) -> str:
    return "nothing (an empty optional)" if value is None else f"a {type(value).__name__}"
