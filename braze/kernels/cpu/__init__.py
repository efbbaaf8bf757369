"""CPU tactics: torch CPU ops behind the tactic protocol.

View layers and in-place concats move no data; every other op runs through its reference
implementation, written into the layer's output views. Earlier entries of TACTICS win.
"""

from .reference import ReferenceTactic
from .views import ConcatInPlaceTactic, ViewTactic

TACTICS = [ViewTactic(), ConcatInPlaceTactic(), ReferenceTactic()]

__all__ = ["TACTICS"]
