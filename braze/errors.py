"""Every failure braze reports to a user is a BrazeError (or one of its few subclasses).

The message says what was wrong and where: which model, node, op, input or file, and what
was expected instead. Code inside braze raises these; exceptions from torch or onnx that
reach a user-facing entry point are wrapped into one, with the original chained as cause.
"""

from __future__ import annotations


def first_line(e: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type's name where it has none), for a one-line report."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__


class BrazeError(Exception):
    """Base of every user-facing braze error."""


class ModelError(BrazeError):
    """The model itself is malformed: not ONNX, fails checking, inconsistent graph."""


class UnsupportedError(BrazeError):
    """The model uses ops, dtypes or attributes braze does not implement."""


class ShapeError(BrazeError):
    """Shapes do not fit: a dim left symbolic, an op whose inputs' shapes disagree."""


class EngineFormatError(BrazeError):
    """An engine file that is truncated, corrupted or of another format version."""


class DeviceMismatchError(BrazeError):
    """An engine built for another device than the one it is loaded on."""


class InputError(BrazeError):
    """Inputs handed to an execution context do not match the engine's bindings."""


class ExecutionError(BrazeError):
    """A layer failed while running."""
