"""Engine and Runtime: a deserialized plan bound to kernels on one device.

An Engine compiles each layer's kernel once, from the tactic name and configuration the plan
recorded, and holds the weights on its device; every ExecutionContext it creates shares both
and owns only its activation memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..device import Target, check_memory, check_signature, describe
from ..errors import BrazeError, DeviceMismatchError, EngineFormatError
from ..ir import TENSOR, DType, Node, Tensor
from ..kernels import Kernel, tactic_by_name
from .format import deserialize, serialize
from .plan import Plan
from .validate import validate_plan


@dataclass(frozen=True)
class Binding:
    """One engine input or output: its name, dtype and shape (of each tensor, for a sequence or optional)."""

    name: str
    dtype: DType
    shape: tuple[int | None, ...] | None
    kind: str = TENSOR


@dataclass
class Step:
    node: Node
    tactic: str
    kernel: Kernel
    inputs: list[int | None]  # slot indices
    outputs: list[int]
    release: list[int]  # slots of run-time allocated tensors read for the last time here

    @property
    def capturable(self) -> bool:
        return getattr(self.kernel, "capturable", True)


@dataclass
class SlotInfo:
    tensor: Tensor
    kind: str  # "input", "weight", "activation", "dynamic" (allocated at run time: also sequences, optionals)
    offset: int = -1


class Engine:
    def __init__(self, plan: Plan, target: Target):
        self.plan = plan
        self.target = target
        self.graph = plan.graph
        self.inputs = [Binding(t.name, t.dtype, t.shape, t.kind) for t in self.graph.inputs]  # type: ignore[arg-type]
        self.outputs = [Binding(t.name, t.dtype, t.shape, t.kind) for t in self.graph.outputs]  # type: ignore[arg-type]
        self.slots: list[SlotInfo] = []
        self.weights: list[torch.Tensor | None] = []
        self.steps = self._compile()
        self.input_slots = [self._slot_of[(id(t), False)] for t in self.graph.inputs]
        self.output_slots = [self._slot_of[(id(t), False)] for t in self.graph.outputs]
        self._plan_releases()
        self.graphable = self.target.is_cuda and all(
            step.capturable for step in self.steps) and all(s.tensor.is_static for s in self.slots)

    # -- public ------------------------------------------------------------------------------

    @property
    def device_memory_size(self) -> int:
        """Bytes of activation memory each execution context allocates (Plan.device_memory_size)."""
        return self.plan.device_memory_size

    @property
    def tf32(self) -> bool:
        return bool(self.plan.build.get("tf32", False))

    @property
    def num_layers(self) -> int:
        return len(self.steps)

    def create_execution_context(self) -> "ExecutionContext":
        from .context import ExecutionContext

        return ExecutionContext(self)

    def serialize(self) -> bytes:
        return serialize(self.plan)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_bytes(self.serialize())

    def __repr__(self) -> str:
        return (f"Engine({self.graph.name!r}, {self.target}, {self.num_layers} layers, "
                f"inputs={[b.name for b in self.inputs]}, outputs={[b.name for b in self.outputs]})")

    # -- binding the plan to kernels ---------------------------------------------------------

    def _compile(self) -> list[Step]:
        self._slot_of: dict[tuple[int, bool], int] = {}
        offsets = self.plan.memory.offsets
        for t in self.graph.inputs:
            self._add_slot(t, "input")
        steps = []
        for node in self.graph.nodes:
            choice = self.plan.layers.get(node.name)
            if choice is None:
                raise EngineFormatError(f"engine plan has no tactic for layer {node.name!r}")
            tactic = tactic_by_name(self.target, choice.tactic)
            if tactic is None:
                raise EngineFormatError(f"layer {node.name!r} uses tactic {choice.tactic!r}, "
                                        f"which this braze does not have for {self.target.kind}")
            owned = getattr(tactic, "owned_inputs", ())
            host = _value_inputs(node)
            ins = [None if t is None or (i in owned and t.is_constant) else self._slot(t, offsets, on_host=i in host)
                   for i, t in enumerate(node.inputs)]
            outs = [self._slot(t, offsets) for t in node.outputs]
            try:
                kernel = tactic.compile(node, choice.config, self.target)
            except BrazeError:
                raise
            except Exception as e:
                raise BrazeError(f"layer {node.name!r} ({node.op}): tactic {choice.tactic!r} failed to compile: "
                                 f"{e}") from e
            steps.append(Step(node, choice.tactic, kernel, ins, outs, []))
        for t in self.graph.outputs:
            self._slot(t, offsets)
        return steps

    def _plan_releases(self) -> None:
        """Drop each run-time allocated tensor after its last reader, so its memory is reused."""
        keep = set(self.output_slots) | set(self.input_slots)
        last: dict[int, int] = {}
        for i, step in enumerate(self.steps):
            for s in list(step.inputs) + step.outputs:
                if s is not None and self.slots[s].kind == "dynamic" and s not in keep:
                    last[s] = i
        for s, i in last.items():
            self.steps[i].release.append(s)

    def _slot(self, t: Tensor, offsets: dict[str, int], on_host: bool = False) -> int:
        key = (id(t), on_host and t.is_constant)
        if key in self._slot_of:
            return self._slot_of[key]
        if t.is_constant:
            # NOTE: constants that give shapes (a Reshape's target, Slice starts) stay on the host: reading
            # them there costs no device synchronization, which a CUDA graph capture would forbid.
            device = torch.device("cpu") if on_host else self.target.device
            return self._add_slot(t, "weight", value=t.value.to(device), key=key)  # type: ignore[union-attr]
        if t.name in offsets:
            return self._add_slot(t, "activation", offset=offsets[t.name], key=key)
        return self._add_slot(t, "dynamic", key=key)

    def _add_slot(self, t: Tensor, kind: str, offset: int = -1, value: torch.Tensor | None = None,
                  key: tuple[int, bool] | None = None) -> int:
        self._slot_of[key or (id(t), False)] = len(self.slots)
        self.slots.append(SlotInfo(t, kind, offset))
        self.weights.append(value)
        return len(self.slots) - 1


def _value_inputs(node: Node) -> frozenset[int]:
    from ..ops import REGISTRY

    try:
        return REGISTRY.for_node(node).value_inputs
    except BrazeError:
        return frozenset()


class Runtime:
    """Loads engines: `Runtime().load("model.engine")` or `.load(engine_bytes)`.

    With no device given, an engine runs on the kind of device it was built for (the current
    CUDA device for GPU engines); loading refuses an engine built for another architecture.
    """

    def __init__(self, device: str | torch.device | None = None):
        self.device = device

    def load(self, source: str | os.PathLike | bytes | bytearray | memoryview) -> Engine:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            path = Path(source)
            if not path.is_file():
                raise BrazeError(f"no such engine file: {path}")
            data = path.read_bytes()
        header, plan = deserialize(data)
        target = self._target(header["device"])
        check_signature(plan.device, target)
        validate_plan(plan, target)
        check_memory(plan.device_memory_size, plan.graph.weight_bytes(), target)
        return Engine(plan, target)

    def _target(self, built_for: dict[str, Any]) -> Target:
        if self.device is not None:
            return Target.parse(self.device)
        kind = built_for.get("kind")
        if kind == "cuda" and not torch.cuda.is_available():
            raise DeviceMismatchError(f"this engine was built for a CUDA GPU ({describe(built_for)}); "
                                      "torch sees no CUDA device here")
        if kind not in ("cpu", "cuda"):
            raise DeviceMismatchError(f"this engine was built for an unknown device kind {kind!r}")
        return Target.parse(kind)
