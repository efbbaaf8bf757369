"""The reference tactic: an op's reference implementation, writing into preallocated outputs."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...device import Target
from ...errors import ExecutionError
from ...ir import Node
from ...ops import REGISTRY
from ...ops.opdef import input_dtypes
from ..tactic import TacticBase


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
                    # NOTE: a result that is a view of an input (a Reshape to a run-time shape) must not
                    # outlive it: the memory plan does not know of the alias and reuses the input's memory.
                    # Sequences and optionals hold tensors of their own (braze/ops/sequence.py).
                    if isinstance(res, torch.Tensor) and _aliases(res, inputs):
                        results[i] = res.clone()
                    continue
                if not isinstance(res, torch.Tensor):
                    raise ExecutionError(f"output {name!r} came out as {_kind(res)}, planned as a tensor")
                if out.shape != res.shape or out.dtype != res.dtype:
                    raise ExecutionError(f"output {name!r} came out as {res.dtype}{list(res.shape)}, "
                                         f"planned as {out.dtype}{list(out.shape)}")
                out.copy_(res)
            return results

        return kernel


def _aliases(t: torch.Tensor, inputs: Sequence[Any]) -> bool:
    storage = t.untyped_storage().data_ptr()
    return any(isinstance(x, torch.Tensor) and x.untyped_storage().data_ptr() == storage for x in inputs)


def _kind(value: Any) -> str:
    return "nothing (an empty optional)" if value is None else f"a {type(value).__name__}"
