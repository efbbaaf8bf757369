"""The inputs `braze compare` runs every runner on: random within given ranges, or real data.

Real data is a folder of samples (`.npz`: arrays named after inputs; `.npy`: the array of a single-input
model), arrays given per input (`--input name=file.npy`, the other inputs random), or, from Python, one feed
dict or an iterable of them (numpy arrays or torch tensors). Every sample is checked against the engine's
inputs (name, dtype, shape) before anything runs, and a bad one is named: its file or index, and the input.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..engine import Binding
from ..errors import BrazeError, InputError
from ..ir import TENSOR, Graph, format_shape
from ..testing import as_numpy
from .common import load_array

Sample = tuple[str, dict[str | None, np.ndarray]]
"""A sample's label (its file, or its index) and its arrays by input name (None: the only input's)."""

FeedSource = str | os.PathLike | Mapping[str, Any] | Iterable[Mapping[str, Any]] | None


def read_samples(feeds: FeedSource, files: Mapping[str, str] | None = None) -> list[Sample]:
    """The samples given: none (random inputs), a folder's, a feed dict, an iterable of feed dicts, or the arrays
    of `files` (input name -> .npy/.npz file, as `--input` gives them) as one sample."""
    if files:
        if feeds is not None:
            raise BrazeError("give the inputs either as files per input (--input) or as samples (--data), not both")
        return [("--input", {name: load_array(name, path) for name, path in files.items()})]
    if feeds is None:
        return []
    if isinstance(feeds, (str, os.PathLike)):
        return _folder(Path(feeds))
    if isinstance(feeds, Mapping):
        return [("sample 0", _arrays(feeds, "sample 0"))]
    try:
        items = list(feeds)
    except TypeError:
        raise BrazeError(f"feeds: a folder of .npy/.npz files, a dict of input name -> array, or an iterable of such "
                         f"dicts, not a {type(feeds).__name__}") from None
    if not items:
        raise BrazeError("feeds: the iterable of samples is empty")
    return [(f"sample {i}", _arrays(item, f"sample {i}")) for i, item in enumerate(items)]


def static_shapes(graph: Graph, shapes: Mapping[str, Sequence[int]], samples: list[Sample]
                  ) -> dict[str, tuple[int, ...]]:
    """`shapes`, plus the first sample's shape for each input whose dims the model leaves open."""
    found = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
    if not samples:
        return found
    label, arrays = samples[0]
    tensors = [t for t in graph.inputs if t.is_tensor]
    for t in tensors:
        value = arrays.get(t.name, arrays.get(None) if len(tensors) == 1 else None)
        if t.name not in found and not t.is_static and value is not None:
            found[t.name] = tuple(value.shape)
    return found


def check_samples(samples: list[Sample], bindings: Sequence[Binding], fill: bool) -> list[Sample]:
    """Each sample with its arrays keyed by input name, checked against `bindings`; inputs a sample lacks stay
    missing when `fill` (random values follow), else are an error."""
    listing = ", ".join(f"{b.name!r}: {b.dtype}{format_shape(b.shape)}" for b in bindings) or "none"
    checked = []
    for label, arrays in samples:
        if None in arrays:
            if len(bindings) != 1:
                raise InputError(f"{label}: a .npy file holds one array, but the model has {len(bindings)} inputs "
                                 f"({listing}); save each sample as a .npz of named arrays (numpy.savez)")
            arrays = {bindings[0].name: arrays[None]}
        unknown = [n for n in arrays if n not in {b.name for b in bindings}]
        if unknown:
            raise InputError(f"{label}: unknown input(s) {', '.join(map(repr, unknown))}; the model's inputs are "
                             f"{listing}")
        missing = [b.name for b in bindings if b.name not in arrays]
        if missing and not fill:
            raise InputError(f"{label}: no array for input(s) {', '.join(map(repr, missing))}; the model's inputs "
                             f"are {listing}")
        for b in bindings:
            if b.name in arrays:
                _check(label, b, arrays[b.name])
        checked.append((label, arrays))
    return checked


def random_feed(bindings: Sequence[Binding], rng: np.random.Generator, float_range: tuple[float, float],
                int_range: tuple[int, int], given: Mapping[str | None, np.ndarray] | None = None
                ) -> dict[str, np.ndarray]:
    """`given`, and for every other input random values: floats uniform in `float_range`, integers uniform in
    `int_range` (both ends included), booleans 0/1."""
    feed = {}
    for b in bindings:
        if given and b.name in given:
            feed[b.name] = given[b.name]
            continue
        if b.kind != TENSOR:
            raise InputError(f"input {b.name!r} is a {b.kind.replace('_', ' ')}: braze compare makes no random "
                             f"values for it; give samples (--data DIR)")
        shape = tuple(int(d) for d in b.shape)  # type: ignore[union-attr, arg-type]
        if b.dtype.is_floating:
            values = rng.uniform(float_range[0], float_range[1], shape).astype(np.float32)
            feed[b.name] = values.astype(b.dtype.numpy)
        elif b.dtype.value == "bool":
            feed[b.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feed[b.name] = rng.integers(*_int_bounds(b, int_range), size=shape).astype(b.dtype.numpy)
    return feed


def _int_bounds(b: Binding, int_range: tuple[int, int]) -> tuple[int, int]:
    lo, hi = int_range
    info = np.iinfo(b.dtype.numpy)
    if lo < info.min or hi > info.max:
        raise InputError(f"input {b.name!r} is {b.dtype} ({info.min}..{info.max}): the integer range {lo},{hi} "
                         f"does not fit it; give --int-range within it")
    return lo, hi + 1


def _check(label: str, b: Binding, value: np.ndarray) -> None:
    where = f"{label}: input {b.name!r}"
    if b.kind != TENSOR:
        raise InputError(f"{where} is a {b.kind.replace('_', ' ')}; braze compare feeds tensors only")
    if value.dtype != b.dtype.numpy:
        raise InputError(f"{where} is {value.dtype}, the model expects {b.dtype} (save it as {b.dtype}, e.g. "
                         f"x.astype(np.{b.dtype}))")
    if tuple(value.shape) != tuple(b.shape):  # type: ignore[arg-type]
        raise InputError(f"{where} has shape {format_shape(tuple(value.shape))}, the engine was built for "
                         f"{format_shape(b.shape)} (all samples share one shape; give --shapes for another)")


def _folder(folder: Path) -> list[Sample]:
    if not folder.exists():
        raise BrazeError(f"--data {folder}: no such folder")
    if not folder.is_dir():
        raise BrazeError(f"--data {folder}: is a file, not a folder of .npy/.npz samples (one array per input: "
                         f"--input NAME={folder})")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".npy", ".npz") and p.is_file())
    if not files:
        raise BrazeError(f"--data {folder}: the folder holds no .npy or .npz files")
    return [(str(p), _load(p)) for p in files]


def _load(path: Path) -> dict[str | None, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {None: loaded}
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise BrazeError(f"{path}: holds Python objects, which braze does not load (it never unpickles); "
                             f"save numeric arrays") from None
        raise BrazeError(f"{path}: not a readable .npy/.npz file: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise BrazeError(f"{path}: not a readable .npy/.npz file: {e}") from None


def _arrays(feed: Any, label: str) -> dict[str | None, np.ndarray]:
    if not isinstance(feed, Mapping):
        raise BrazeError(f"{label}: a dict of input name -> array, not a {type(feed).__name__}")
    arrays: dict[str | None, np.ndarray] = {}
    for name, value in feed.items():
        try:
            arrays[str(name)] = np.ascontiguousarray(as_numpy(value))
        except (TypeError, ValueError, RuntimeError) as e:
            raise BrazeError(f"{label}: input {name!r} is not an array: {e}") from None
    return arrays
