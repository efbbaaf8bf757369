"""The CUDA fallback for every op: its reference implementation, run by torch on the GPU.

The result is adopted as the layer's output (no copy, unless it is a view of an input); an op whose
implementation cannot run on the GPU is detected when the builder times it, and runs on the CPU instead
(`device: cpu`), which keeps the engine correct but out of CUDA graphs.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...device import Target
from ...ir import Node
from ...ops import REGISTRY
from ...ops.opdef import input_dtypes
from ..tactic import TacticBase, detached_from


class TorchTactic(TacticBase):
    name = "torch"
    writes_output = False

    def supports(self, node: Node, target: Target) -> bool:
        return REGISTRY.knows(node)

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        if _host_work(node):  # NOTE: one configuration: the tuner cannot make sample sequences or run a body alone
            return [{"device": "cuda"}]
        return [{"device": "cuda"}, {"device": "cpu"}]

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        opdef = REGISTRY.for_node(node)
        attrs, n_out, dtypes = node.attrs, len(node.outputs), input_dtypes(node)
        if config.get("device") == "cpu":
            device = target.device

            def on_cpu(inputs: Sequence[Any], outputs: Sequence[torch.Tensor | None]):
                args = [_moved(x, torch.device("cpu")) for x in inputs]
                return [_moved(r, device) for r in opdef.run(args, attrs, n_out, dtypes)]

            on_cpu.capturable = False  # type: ignore[attr-defined]
            return on_cpu

        def kernel(inputs: Sequence[Any], outputs: Sequence[torch.Tensor | None]):
            return detached_from(opdef.run(inputs, attrs, n_out, dtypes), inputs)

        kernel.capturable = not _host_work(node)  # type: ignore[attr-defined]
        return kernel


def _host_work(node: Node) -> bool:
    """Control flow (decided on the host) or sequences and optionals (host lists): never in a CUDA graph."""
    return REGISTRY.for_node(node).outer_inputs or any(
        t is not None and not t.is_tensor for t in list(node.inputs) + list(node.outputs))


def _moved(value: Any, device: torch.device) -> Any:
    if isinstance(value, list):
        return [x.to(device) for x in value]
    return None if value is None else value.to(device)


class GatherTactic(TacticBase):
    """Gather (embedding lookups) on the GPU without a host round trip. Indices are wrapped (negative
    counts from the end) and then clamped into range on the device: validating them would need a host
    synchronization, which a CUDA graph cannot contain. The CPU backend raises on out-of-range indices."""

    name = "gather"
    writes_output = False

    def supports(self, node: Node, target: Target) -> bool:
        if not (target.is_cuda and node.op == "Gather" and node.domain == ""):
            return False
        data, indices = node.inputs[0], node.inputs[1]
        return (data.is_static and indices.is_static and indices.dtype is not None and indices.dtype.is_integer
                and node.outputs[0].is_static)

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        axis = int(node.attrs.get("axis", 0)) % node.inputs[0].rank  # type: ignore[operator]
        size = int(node.inputs[0].shape[axis])  # type: ignore[index]
        out_shape = tuple(node.outputs[0].shape)  # type: ignore[arg-type]

        def kernel(inputs: Sequence[torch.Tensor | None], outputs: Sequence[torch.Tensor | None]):
            data, idx = inputs[0], inputs[1].long().reshape(-1)  # type: ignore[union-attr]
            idx = torch.where(idx < 0, idx + size, idx).clamp_(0, size - 1)
            return [torch.index_select(data, axis, idx).reshape(out_shape)]  # type: ignore[arg-type]

        return kernel
