"""Kernels: the tactics each backend offers, per device kind, in the order they are preferred."""

from __future__ import annotations

from ..device import Target
from .cpu import TACTICS as CPU_TACTICS
from .cpu.int8 import TACTICS as CPU_INT8_TACTICS
from .dequantized import TACTICS as DEQUANTIZED_TACTICS
from .quantize import TACTICS as QUANTIZE_TACTICS
from .tactic import Kernel, Tactic

# NOTE: the INT8 tactics take only QConv and QGemm, so they go ahead of the reference tactic, which takes every op;
# the CPU takes the first tactic that supports a layer, so oneDNN's INT8 kernels come before the float candidate
# (kernels/dequantized.py), which runs what they decline far faster than the reference would.
_CPU = [*CPU_INT8_TACTICS, *DEQUANTIZED_TACTICS, *QUANTIZE_TACTICS, *CPU_TACTICS]


def tactics_for(target: Target) -> list[Tactic]:
    if target.is_cuda:
        from .cuda import TACTICS as CUDA_TACTICS  # imports torch's CUDA-only pieces lazily

        return CUDA_TACTICS
    return _CPU


def tactic_by_name(target: Target, name: str) -> Tactic | None:
    return next((t for t in tactics_for(target) if t.name == name), None)


__all__ = ["Kernel", "Tactic", "tactic_by_name", "tactics_for"]
