"""Precision: the policy that says what each layer may run in (policy.py), lowering an engine's float
computation to FP16 or BF16 (lower.py: weights stored in that type, accumulations kept in FP32), and INT8:
calibration, Q/DQ insertion and the accuracy guard. The design: docs/quantization.md."""

from .int8 import Calibration
from .lower import lower_precision
from .policy import Precision, PrecisionPolicy

__all__ = ["Calibration", "Precision", "PrecisionPolicy", "lower_precision"]
