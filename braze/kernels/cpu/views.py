"""Tactics that move no data: view layers and concats whose inputs were planned in place."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...device import Target
from ...ir import Node
from ...ops.kinds import Kind, is_kind
from ...ops.views import is_view, view_outputs
from ..tactic import TacticBase


class ViewTactic(TacticBase):
    """Reshape, Flatten, Squeeze, Unsqueeze, Identity, Split, Transpose as views of the input (no copy)."""

    name = "view"
    writes_output = False
    moves_no_data = True

    def supports(self, node: Node, target: Target) -> bool:
        return is_view(node)

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            return view_outputs(node, inputs[0])  # type: ignore[arg-type]

        return kernel


class ConcatInPlaceTactic(TacticBase):
    """A concat whose producers already wrote into its output; copies only if the plan did not place them."""

    name = "concat_in_place"

    def supports(self, node: Node, target: Target) -> bool:
        return is_kind(node, Kind.CONCAT_IN_PLACE)

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        axis = int(node.attrs["axis"])

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            out = outputs[0]
            if out is None:
                return [torch.cat(list(inputs), dim=axis)]  # type: ignore[arg-type]
            if inputs[0].data_ptr() != out.data_ptr():  # type: ignore[union-attr]
                torch.cat(list(inputs), dim=axis, out=out)  # type: ignore[arg-type]
            return None

        return kernel
