"""Targets: the device an engine is built for, and the signature an engine records of it.

An engine is specific to the hardware it was tuned on, as TensorRT's are. Its signature names
the device kind, the GPU (name, compute capability, multiprocessor count) or CPU architecture, and
the library versions. Loading checks the signature and refuses an engine built for another
architecture with a message that says what it was built for and what was found.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import torch

from . import __version__
from .errors import BrazeError, DeviceMismatchError


_DEVICES = "the device must be 'cpu' or 'cuda' (or 'cuda:N', N a GPU's index)"


@dataclass(frozen=True)
class Target:
    device: torch.device

    @property
    def kind(self) -> str:
        return self.device.type

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @staticmethod
    def parse(device: "str | torch.device | Target") -> "Target":
        if isinstance(device, Target):
            return device
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise BrazeError(f"unknown device {device!r}: {_DEVICES}") from None
        if dev.type == "cpu":
            return Target(torch.device("cpu"))
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise BrazeError(f"device {device!r} asked for, but torch sees no CUDA GPU here "
                                 f"(torch {torch.__version__}); build for device='cpu' instead")
            index = dev.index if dev.index is not None else torch.cuda.current_device()
            if index >= torch.cuda.device_count():
                raise BrazeError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
            return Target(torch.device("cuda", index))
        raise BrazeError(f"device {device!r}: {_DEVICES}")

    def signature(self) -> dict[str, Any]:
        sig: dict[str, Any] = {"kind": self.kind, "braze": __version__, "torch": torch.__version__.split("+")[0]}
        if self.is_cuda:
            props = torch.cuda.get_device_properties(self.device)
            sig.update(
                name=props.name,
                compute_capability=f"{props.major}.{props.minor}",
                sm_count=props.multi_processor_count,
                cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version(),
            )
            try:
                import triton

                sig["triton"] = triton.__version__
            except ImportError:
                sig["triton"] = None
        else:
            sig.update(name=platform.processor() or platform.machine(), arch=platform.machine())
        return sig

    def __str__(self) -> str:
        return str(self.device)


def check_signature(built_for: dict[str, Any], target: Target) -> None:
    """Refuse an engine whose device signature does not fit `target`."""
    found = target.signature()
    kind = built_for.get("kind")
    if kind != found["kind"]:
        raise DeviceMismatchError(f"this engine was built for a {kind} device ({describe(built_for)}); "
                                  f"it cannot run on {target} ({describe(found)}); rebuild it for {target}")
    keys = ("compute_capability",) if kind == "cuda" else ("arch",)
    for key in keys:
        if built_for.get(key) != found.get(key):
            raise DeviceMismatchError(
                f"this engine was built for {describe(built_for)} and cannot run on {describe(found)}: "
                f"{key.replace('_', ' ')} {built_for.get(key)} != {found.get(key)}; rebuild the engine on this device")


def describe(sig: dict[str, Any]) -> str:
    if sig.get("kind") == "cuda":
        return f"{sig.get('name')} (compute capability {sig.get('compute_capability')}, {sig.get('sm_count')} SMs)"
    return f"CPU {sig.get('arch')}"
