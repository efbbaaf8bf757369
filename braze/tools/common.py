"""What the CLI commands share: log lines, argument types, --shapes parsing, checked paths, model sources,
input files and random inputs. Every check here runs before the long work (a build, the timed runs)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..device import human_bytes  # noqa: F401  (the commands' byte formatter, shared with braze/device.py)
from ..engine import Binding, Engine, Runtime
from ..engine.format import is_engine_file
from ..errors import BrazeError, EngineFormatError

ZOO_PREFIX = "zoo:"


def info(msg: str) -> None:
    print(f"[I] {msg}", flush=True)


def info_to_stderr(msg: str) -> None:
    """Progress lines when stdout carries a machine-readable result."""
    print(f"[I] {msg}", file=sys.stderr, flush=True)


def error(msg: str) -> None:
    print(f"[E] {msg}", file=sys.stderr, flush=True)


def to_json(value: object) -> str:
    """`value` as standard JSON: a NaN or infinity (an output's mean, say) becomes null, as JSON has neither."""
    def clean(v: object) -> object:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), indent=2, allow_nan=False)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, 0)


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    return _number(text, float, 0)


def _number(text: str, kind: type, least: int):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not value >= least:  # NOTE: also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not allowed: it must be {least} or more")
    return value


def parse_shapes(items: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    """`input:1x3x224x224` or `input:1,3,224,224` (several separated by spaces or commas) -> {"input": (1, 3, 224,
    224)}. A name may hold ':' (`input:0:1x3`): the dims follow the last one."""
    shapes: dict[str, tuple[int, ...]] = {}
    example = "write NAME:DIMS, e.g. input:1x3x224x224 or input:1,3,224,224"
    for item in items or ():
        for spec in _shape_specs(item, example):
            name, _, dims = spec.rpartition(":")
            if not name:
                raise BrazeError(f"--shapes {item!r}: {spec!r} has no input name; {example}")
            parts = dims.replace(",", "x").split("x") if dims else []
            bad = [d for d in parts if not d.strip().isdigit()]
            if bad:
                raise BrazeError(f"--shapes {item!r}: dim {bad[0]!r} of {name!r} is not a non-negative integer; "
                                 f"{example}")
            if name in shapes:
                raise BrazeError(f"--shapes {item!r}: input {name!r} is given twice")
            shapes[name] = tuple(int(d) for d in parts)
    return shapes


def _shape_specs(item: str, example: str) -> list[str]:
    """`a:1x3,b:2,4` -> [`a:1x3`, `b:2,4`]: a comma starts a new spec only where a name (a ':') follows."""
    specs: list[str] = []
    for piece in item.split(","):
        if ":" in piece or not specs:
            if ":" not in piece:
                raise BrazeError(f"--shapes {item!r}: expected NAME:DIMS; {example}")
            specs.append(piece)
        else:
            specs[-1] += "," + piece
    return [s for s in specs if s]


def writable_file(path: str, option: str) -> Path:
    """A file path the command will write: its folder exists and takes a new file (checked by making one)."""
    target = Path(path)
    if target.is_dir():
        raise BrazeError(f"{option} {path}: is a directory; give a file name, e.g. {target / 'model.engine'}")
    folder = target.parent
    if not folder.is_dir():
        raise BrazeError(f"{option} {path}: the folder {folder} does not exist; create it first")
    try:
        _probe(folder)
    except OSError as e:
        raise BrazeError(f"{option} {path}: cannot write in {folder}: {e.strerror or e}") from None
    return target


def output_dir(path: str, option: str) -> Path:
    """A folder the command will write into, created now (before the work) if it does not exist."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise BrazeError(f"{option} {path}: is a file, not a folder; give a folder to write the outputs into")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _probe(folder)
    except OSError as e:
        raise BrazeError(f"{option} {path}: cannot write there: {e.strerror or e}") from None
    return folder


def _probe(folder: Path) -> None:
    """Raise OSError unless a new file can be made in `folder` (made and removed at once)."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".braze-", suffix=".tmp"):
        pass


ENGINE_SUFFIXES = (".engine", ".plan")


def is_engine_source(model: str) -> bool:
    """Whether `model` names an engine file: by its magic, or by its suffix (then a file that lacks the
    magic, or is missing, is reported as not an engine rather than as not an ONNX model)."""
    return is_engine_file(model) or Path(model).suffix.lower() in ENGINE_SUFFIXES


def load_engine(path: str | os.PathLike) -> Engine:
    try:
        return Runtime().load(path)
    except EngineFormatError as e:
        hint = "" if is_engine_file(path) else f"; make one with `braze build MODEL.onnx -o {path}`"
        raise EngineFormatError(f"{path}: {e}{hint}") from None


def load_array(name: str, file: str) -> np.ndarray:
    """The array in a .npy file, or the one named `name` (or the only one) in a .npz file."""
    where = f"--input {name}={file}"
    try:
        with open(file, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise BrazeError(f"{where}: cannot read {file}: {e.strerror or e}") from None
    if head[:4] != b"PK\x03\x04" and head != b"\x93NUMPY":
        raise BrazeError(f"{where}: {file} is not a .npy or .npz array file (it starts with {head!r}); write the "
                         f"array with numpy.save(path, array)")
    try:
        loaded = np.load(file, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            names = list(loaded.files)
            if name in names or len(names) == 1:
                return loaded[name if name in names else names[0]]
    except ValueError as e:
        if "pickle" in str(e):
            raise BrazeError(f"{where}: {file} holds Python objects, which braze does not load (it never "
                             f"unpickles); save a numeric array") from None
        raise BrazeError(f"{where}: {file} is not a readable array file: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise BrazeError(f"{where}: {file} is not a readable array file: {e}") from None
    raise BrazeError(f"{where}: {file} holds {len(names)} arrays ({', '.join(names[:8])}) and none named {name!r}")


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
