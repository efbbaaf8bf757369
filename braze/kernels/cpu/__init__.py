"""CPU tactics: torch CPU ops behind the tactic protocol.

View layers and in-place concats move no data; 2-D convolutions and matrix products with constant
weights run through oneDNN with fused post-ops; every other op runs through its reference
implementation, written into the layer's output views. Earlier entries of TACTICS win (the CPU
builder does not time candidates).
"""

from .conv import OneDnnConvTactic
from .gemm import OneDnnGemmTactic
from .reference import ReferenceTactic
from .views import ConcatInPlaceTactic, ViewTactic

TACTICS = [ViewTactic(), ConcatInPlaceTactic(), OneDnnConvTactic(), OneDnnGemmTactic(), ReferenceTactic()]

__all__ = ["TACTICS"]
