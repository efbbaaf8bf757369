"""Precision: lowering an engine's float computation to FP16 or BF16 (weights stored in that type,
accumulations and reductions inside the kernels kept in FP32)."""

from .lower import lower_precision

__all__ = ["lower_precision"]
