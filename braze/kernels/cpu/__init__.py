"""CPU tactics: torch CPU ops behind the tactic protocol.

The reference tactic runs any op through its reference implementation and writes the result
into the layer's output views; specialised tactics come first in TACTICS and win where they apply.
"""

from .reference import ReferenceTactic

TACTICS = [ReferenceTactic()]

__all__ = ["TACTICS"]
