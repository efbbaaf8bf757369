"""ExecutionContext: one engine's activation memory, allocated once, and the loop that runs it.

Each context owns an arena (one allocation of `engine.device_memory_size` bytes) carved into
the views the builder planned; weights and kernels are the engine's, shared. A context runs one
inference at a time; use one context per thread to run an engine concurrently.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from ..errors import BrazeError, ExecutionError, InputError
from ..ir import DType, contiguous_strides, format_shape, to_numpy, to_torch
from .engine import Engine


class ExecutionContext:
    def __init__(self, engine: Engine):
        self.engine = engine
        device = engine.target.device
        self.arena = torch.empty(engine.device_memory_size, dtype=torch.uint8, device=device)
        self._values: list[torch.Tensor | None] = list(engine.weights)
        strides = engine.plan.memory.strides
        for i, slot in enumerate(engine.slots):
            if slot.kind == "activation":
                t = slot.tensor
                typed = self.arena[slot.offset:].view(t.dtype.torch)  # type: ignore[union-attr]
                stride = strides.get(t.name) or contiguous_strides(t.shape)  # type: ignore[arg-type]
                self._values[i] = typed.as_strided(t.shape, stride)  # type: ignore[arg-type]
        self._fixed = list(self._values)

    def infer(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run the engine on `feeds` (name -> numpy array or torch tensor).

        Returns name -> output, as numpy arrays, or as torch tensors when any input was torch.
        """
        as_torch = any(isinstance(v, torch.Tensor) for v in feeds.values())
        self._bind(feeds)
        self._run()
        results = {}
        for binding, slot in zip(self.engine.outputs, self.engine.output_slots):
            value = self._values[slot]
            assert value is not None
            value = value.clone()
            results[binding.name] = value if as_torch else to_numpy(value)
        self._values[:] = self._fixed
        return results

    # -- internals ---------------------------------------------------------------------------

    def _bind(self, feeds: Mapping[str, Any]) -> None:
        expected = [b.name for b in self.engine.inputs]
        missing = [n for n in expected if n not in feeds]
        extra = [n for n in feeds if n not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
            if extra:
                parts.append(f"unknown input(s) {', '.join(map(repr, extra))}")
            raise InputError(f"{'; '.join(parts)}; the engine's inputs are {self._describe_inputs()}")
        device = self.engine.target.device
        for binding, slot in zip(self.engine.inputs, self.engine.input_slots):
            value = _as_tensor(feeds[binding.name], binding.name)
            got = DType.from_torch(value.dtype)
            if got != binding.dtype:
                raise InputError(f"input {binding.name!r} is {got}, the engine expects {binding.dtype} "
                                 f"(cast it, e.g. x.astype(np.{binding.dtype}) or x.to(torch.{binding.dtype}))")
            if tuple(value.shape) != tuple(binding.shape):
                what = "rank" if value.dim() != len(binding.shape) else "shape"
                raise InputError(f"input {binding.name!r} has {what} mismatch: got {format_shape(tuple(value.shape))}, "
                                 f"the engine was built for {format_shape(binding.shape)}")
            self._values[slot] = value.to(device).contiguous()

    def _run(self) -> None:
        values = self._values
        for step in self.engine.steps:
            ins = [None if s is None else values[s] for s in step.inputs]
            outs = [values[s] for s in step.outputs]
            try:
                produced = step.kernel(ins, outs)
            except BrazeError as e:
                raise ExecutionError(f"layer {step.node.name!r} ({step.node.op}, tactic {step.tactic}): {e}") from e
            except Exception as e:
                shapes = ", ".join("_" if x is None else f"{str(x.dtype).removeprefix('torch.')}{list(x.shape)}" for x in ins)
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise ExecutionError(f"layer {step.node.name!r} ({step.node.op}, tactic {step.tactic}) failed "
                                     f"on inputs ({shapes}): {first}") from e
            for i, (s, out) in enumerate(zip(step.outputs, outs)):
                if out is None:
                    if produced is None or i >= len(produced):
                        raise ExecutionError(f"layer {step.node.name!r} ({step.node.op}) produced no output for "
                                             f"{self.engine.slots[s].tensor.name!r}")
                    values[s] = produced[i]

    def _describe_inputs(self) -> str:
        return ", ".join(f"{b.name!r}: {b.dtype}{format_shape(b.shape)}" for b in self.engine.inputs) or "none"


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.generic):  # a numpy scalar such as np.float32(1.5): a 0-d array
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        try:
            return to_torch(value)
        except TypeError:
            raise InputError(f"input {name!r} has numpy dtype {value.dtype}, which braze does not support") from None
    raise InputError(f"input {name!r} is a {type(value).__name__}; pass a numpy array or a torch tensor")
