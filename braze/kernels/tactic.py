"""The tactic protocol: a candidate implementation of a layer, with its tuning space.

A tactic says whether it can run a node on a target (`supports`), which configurations are
worth trying (`configs`; level 0 is the heuristic default alone), and turns a node plus one
configuration into a kernel (`compile`). The builder picks a tactic and a config per layer and
records both by name in the engine; the runtime compiles them again when it loads the engine.

A kernel is called as `kernel(inputs, outputs)`. `outputs` holds preallocated tensors (views of
the context's arena) the kernel must fill; an entry is None where the output's shape is only
known at run time, and then the kernel returns the list of tensors it produced. A tactic whose
`writes_output` is False always returns its outputs (vendor-library calls that allocate their
result): the memory plan gives those tensors no arena space, and on CUDA they come from the
execution graph's private memory pool, allocated once at capture. Such a result must be memory of
its own, never a view of an input (`detached_from`): the plan reuses an input's memory once its last
reader has run, and only the view tactics' outputs are planned as aliases.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import torch

from ..device import Target
from ..ir import Node

Kernel = Callable[[Sequence[torch.Tensor | None], Sequence[torch.Tensor | None]], "list[torch.Tensor] | None"]


class Tactic(Protocol):
    name: str
    writes_output: bool
    owned_inputs: tuple[int, ...]
    moves_no_data: bool

    def supports(self, node: Node, target: Target) -> bool: ...

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]: ...

    def compile(self, node: Node, config: dict[str, Any], target: Target) -> Kernel: ...


class TacticBase:
    """Defaults for the tactic protocol: one configuration, outputs written in place."""

    name = "base"
    writes_output = True
    owned_inputs: tuple[int, ...] = ()  # constant inputs the kernel prepared its own copy of at compile
    moves_no_data = False  # the kernel only makes views: it launches no GPU work, so it is not timed

    def supports(self, node: Node, target: Target) -> bool:
        raise NotImplementedError

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        return [{}]

    def compile(self, node: Node, config: dict[str, Any], target: Target) -> Kernel:
        raise NotImplementedError


def detached_from(results: Sequence[Any], inputs: Sequence[Any]) -> list[Any]:
    """`results` with every tensor that shares memory with one of `inputs` (a reference implementation's
    Reshape, Transpose or Identity returns a view) replaced by a copy of its own."""
    storages = {x.untyped_storage().data_ptr() for x in inputs if isinstance(x, torch.Tensor)}
    return [r.clone() if isinstance(r, torch.Tensor) and r.untyped_storage().data_ptr() in storages else r
            for r in results]
