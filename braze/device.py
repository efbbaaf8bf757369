"""Targets: the device an engine is built for, and the signature an engine records of it.

An engine is specific to the hardware it was tuned on, as TensorRT's are. Its signature names
the device kind, the GPU (name, compute capability, multiprocessor count) or CPU architecture, and
the library versions. Loading checks the signature and refuses an engine built for another
architecture with a message that says what it was built for and what was found.

`check_memory` refuses sizes the device cannot hold (the builder, the runtime's loader and each new
execution context call it); `human_bytes` is the one byte formatter its messages and the CLI share.
"""

from __future__ import annotations

import os
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


def check_memory(arena_bytes: int, weight_bytes: int, target: Target, what: str = "this engine") -> None:
    """Refuse to go on when `target` lacks the memory an engine declares: its arena (one per execution
    context) and, on a GPU, its weights. A BrazeError says how much would be needed and how much there is."""
    have = available_memory(target)
    need = arena_bytes + (weight_bytes if target.is_cuda else 0)
    if have is not None and need > have:
        parts = f"{human_bytes(arena_bytes)} of activations"
        if target.is_cuda:
            parts += f" and {human_bytes(weight_bytes)} of weights"
        raise BrazeError(f"{what} needs {human_bytes(need)} of {target} memory ({parts}), and only "
                         f"{human_bytes(have)} is available")


def available_memory(target: Target) -> int | None:
    """Bytes that can still be allocated on `target`, or None where it cannot be told."""
    if target.is_cuda:  # NOTE: what torch's allocator holds but does not use (a dropped context's arena) is free
        cached = torch.cuda.memory_reserved(target.device) - torch.cuda.memory_allocated(target.device)
        return int(torch.cuda.mem_get_info(target.device)[0]) + cached
    found = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:  # NOTE: a cgroup's usage counts the page cache, which the kernel gives back when needed
        with open("/sys/fs/cgroup/memory.max") as f, open("/sys/fs/cgroup/memory.current") as g, \
                open("/sys/fs/cgroup/memory.stat") as h:
            limit, used = f.read().strip(), int(g.read().strip())
            cache = next((int(line.split()[1]) for line in h if line.startswith("file ")), 0)
            if limit != "max":
                found.append(int(limit) - (used - cache))
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            return None
    return max(min(found), 0)


def human_bytes(n: float) -> str:
    """`n` bytes for people: '1000 bytes', '16.00 KiB', '3.00 MiB', '1.50 GiB' (GiB the largest unit)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} bytes"
