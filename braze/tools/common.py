"""What the CLI commands share: log lines, --shapes parsing, model sources, random inputs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ..engine import Binding
from ..errors import BrazeError

ZOO_PREFIX = "zoo:"


def info(msg: str) -> None:
    print(f"[I] {msg}", flush=True)


def info_to_stderr(msg: str) -> None:
    """Progress lines when stdout carries a machine-readable result."""
    print(f"[I] {msg}", file=sys.stderr, flush=True)


def error(msg: str) -> None:
    print(f"[E] {msg}", file=sys.stderr, flush=True)


def parse_shapes(items: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    """`input:1x3x224x224` (several separated by commas or given separately) -> {"input": (1, 3, 224, 224)}."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items or ():
        for spec in filter(None, item.split(",")):
            name, sep, dims = spec.rpartition(":")
            if not sep or not name:
                raise BrazeError(f"--shapes {spec!r}: expected NAME:DIMS, e.g. input:1x3x224x224")
            try:
                shapes[name] = tuple(int(d) for d in dims.split("x")) if dims else ()
            except ValueError:
                raise BrazeError(f"--shapes {spec!r}: dims must be integers separated by 'x'") from None
    return shapes


def default_shapes(model: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """For a zoo model, its batch-1 shapes unless given."""
    if not model.startswith(ZOO_PREFIX) or shapes:
        return shapes
    from .. import zoo

    return dict(zoo.default_shapes(model[len(ZOO_PREFIX):]))


def model_label(model: str) -> str:
    return model if model.startswith(ZOO_PREFIX) else Path(model).name


def random_inputs(bindings: Sequence[Binding], seed: int = 0) -> dict[str, np.ndarray]:
    """Random (never all-zero) inputs: normal floats, integers in [0, 2), random booleans."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for b in bindings:
        shape = tuple(int(d) for d in b.shape)  # type: ignore[arg-type]
        if b.dtype.is_floating:
            feeds[b.name] = rng.standard_normal(shape).astype(np.float32).astype(b.dtype.numpy)
        elif b.dtype.value == "bool":
            feeds[b.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[b.name] = rng.integers(0, 2, shape).astype(b.dtype.numpy)
    return feeds


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"
