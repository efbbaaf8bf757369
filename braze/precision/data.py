"""Calibration data: a folder of files, an iterable of feeds or a torch DataLoader, turned into checked feeds.

A source gives samples; each becomes a feed (input name -> torch tensor on the build device, in the order of
the graph's inputs), checked against the graph's inputs before anything runs on it:

- a folder of `.npy` files (one array a file: models with one input) and/or `.npz` files (one array per input
  name), read in the order of their names; a single such file is a one-sample source;
- an iterable of feeds: dicts of input name -> numpy array or torch tensor;
- a torch DataLoader (or any iterable) yielding such dicts, or tuples/lists of values in the order of the
  graph's inputs, or bare arrays/tensors for a model with one input. A batch keeps its batch dim as it is:
  it must fit the input's shape like any other dim.

The checks, each a BrazeError naming the sample (its file, or its index in the iterable) and the input:
- names: every input given, nothing else;
- shapes: a static dim must match; a symbolic dim takes any size, the same one for every input that names it;
- dtypes: values of the input's kind are converted to its dtype: a float input takes any float array (float64
  data for a float32 model is the common case), an integer input any integer array whose values fit. An
  integer array for a float input is refused, not converted: image bytes usually need the model's own
  normalization first, and calibrating on the raw 0-255 range would give wrong scales without a word. A float
  array for an integer input is refused too, and a bool input takes only bools;
- values: NaN or infinity in a float input (after conversion: float64 data beyond float32's range included).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import torch

from ..errors import BrazeError, InputError, first_line
from ..ir import DType, Graph, Tensor
from ..ir.dtype import to_torch
from ..ir.graph import TENSOR, format_shape

Feed = dict[str, torch.Tensor]
T = TypeVar("T")
SUFFIXES = (".npy", ".npz")


def iter_samples(source: Any, graph: Graph, device: torch.device | str = "cpu") -> Iterator[Feed]:
    """The samples of `source` (module docstring), one checked feed at a time, on `device`."""
    inputs = _tensor_inputs(graph)
    device = torch.device(device)
    for label, raw in _raw_samples(source, inputs):
        yield check_sample(raw, inputs, label, device)


def load_samples(source: Any, graph: Graph, device: torch.device | str = "cpu", limit: int | None = None) -> list[Feed]:
    """Every sample of `source` (at most `limit`), checked, on `device`; a source with none is an error."""
    samples: list[Feed] = []
    for feed in iter_samples(source, graph, device):
        if limit is not None and len(samples) >= limit:
            break
        samples.append(feed)
    if not samples:
        raise BrazeError(f"calibration data {_describe_source(source)} holds no samples")
    return samples


def split(samples: Sequence[T], held_out: float = 0.2) -> tuple[list[T], list[T]]:
    """(calibration samples, held-out samples), the held-out ones `held_out` of all (at least one when it is
    above 0, never all), evenly spaced through the sequence: deterministic, and not biased by an order that
    follows the classes (a folder sorted by file name often does)."""
    if isinstance(held_out, bool) or not isinstance(held_out, (int, float)) or not 0 <= held_out < 1:
        raise BrazeError(f"held_out={held_out!r}: the fraction of samples to hold out, at least 0 and below 1")
    n = len(samples)
    count = round(n * held_out)
    if held_out > 0:
        if n < 2:
            raise BrazeError(f"holding out samples for the accuracy check needs at least 2 calibration samples, "
                             f"got {n}")
        count = min(max(count, 1), n - 1)
    # NOTE: positions ((2j + 1) n) // (2 count) are distinct and below n: consecutive ones differ by n / count >= 1
    held = {(2 * j + 1) * n // (2 * count) for j in range(count)}
    return [s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held]


def check_sample(raw: Mapping[str, Any], inputs: Sequence[Tensor], label: str, device: torch.device) -> Feed:
    """One sample's values (input name -> array or tensor) as a feed on `device`, refused as the module says."""
    names = [t.name for t in inputs]
    unknown = [k for k in raw if k not in names]
    missing = [n for n in names if n not in raw]
    if unknown or missing:
        parts = ([f"unknown input(s) {', '.join(map(repr, unknown))}"] if unknown else []) + \
                ([f"missing input(s) {', '.join(map(repr, missing))}"] if missing else [])
        raise InputError(f"{label}: {'; '.join(parts)}; the model's inputs are {_describe_inputs(inputs)}")
    sizes: dict[str, tuple[int, str]] = {}
    feed: Feed = {}
    for t in inputs:
        what = f"{label}, input {t.name!r}"
        value, dtype = _as_tensor(raw[t.name], what)
        _check_shape(t, tuple(value.shape), sizes, what)
        feed[t.name] = _converted(t, value, dtype, what, device)
    return feed


def _tensor_inputs(graph: Graph) -> list[Tensor]:
    others = [t for t in graph.inputs if t.kind != TENSOR]
    if others:
        listed = ", ".join(f"{t.name!r}: {t.type_str()}" for t in others)
        raise BrazeError(f"calibration feeds tensors only; the model's input(s) {listed} are not tensors")
    if not graph.inputs:
        raise BrazeError(f"graph {graph.name!r} has no inputs to feed calibration data to")
    return list(graph.inputs)


def _raw_samples(source: Any, inputs: Sequence[Tensor]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(label, values by input name) for each sample of `source`, not yet checked."""
    if isinstance(source, (str, os.PathLike)):
        for path in _files(Path(source)):
            yield f"calibration file {path.name!r}", _read(path, inputs)
        return
    if isinstance(source, Mapping):
        raise BrazeError("calibration data is one dict: pass an iterable of feeds (e.g. [feed] for one sample), "
                         "a torch DataLoader or a folder of .npy/.npz files")
    if isinstance(source, (np.ndarray, torch.Tensor)):
        raise BrazeError("calibration data is one array: pass an iterable of feeds (dicts of input name -> array), "
                         "a torch DataLoader or a folder of .npy/.npz files")
    try:
        items = iter(source)
    except TypeError:
        raise BrazeError(f"calibration data must be a folder of .npy/.npz files, an iterable of feeds or a torch "
                         f"DataLoader, not a {type(source).__name__}") from None
    index = 0
    while True:
        label = f"calibration sample {index}"
        try:
            item = next(items)
        except StopIteration:
            return
        except BrazeError:
            raise
        except Exception as e:  # NOTE: the user's dataset or loader failed; its exception stays chained
            raise BrazeError(f"reading {label} failed: {type(e).__name__}: {first_line(e, 300)}") from e
        yield label, _by_name(item, inputs, label)
        index += 1


def _by_name(item: Any, inputs: Sequence[Tensor], label: str) -> Mapping[str, Any]:
    if isinstance(item, Mapping):
        return item
    if isinstance(item, (tuple, list)):
        if len(item) != len(inputs):
            hint = " (a pair of inputs and labels? give the inputs only)" if len(item) == len(inputs) + 1 else ""
            raise InputError(f"{label} has {len(item)} values; the model has {len(inputs)} input(s), in order "
                             f"{_describe_inputs(inputs)}{hint}")
        return {t.name: v for t, v in zip(inputs, item)}
    if isinstance(item, (np.ndarray, torch.Tensor)):
        if len(inputs) != 1:
            raise InputError(f"{label} is one array; the model has {len(inputs)} inputs: give a dict by name or a "
                             f"tuple in the order {_describe_inputs(inputs)}")
        return {inputs[0].name: item}
    raise InputError(f"{label} is a {type(item).__name__}; give a dict of input name -> array, a tuple of arrays "
                     f"in input order, or an array")


def _files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise BrazeError(f"calibration file {str(path)!r} is not a .npy or .npz file")
        return [path]
    if not path.is_dir():
        raise BrazeError(f"calibration data {str(path)!r} does not exist (a folder of .npy/.npz files is expected)")
    files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and not p.name.startswith(".") and p.is_file())
    if not files:
        raise BrazeError(f"calibration folder {str(path)!r} holds no .npy or .npz files")
    return files


def _read(path: Path, inputs: Sequence[Tensor]) -> dict[str, Any]:
    what = f"calibration file {path.name!r}"
    if path.suffix == ".npy" and len(inputs) != 1:
        raise InputError(f"{what} holds one array, but the model has {len(inputs)} inputs "
                         f"{_describe_inputs(inputs)}: use .npz files with one array per input name")
    try:
        # NOTE: allow_pickle=False: a data file never runs code
        if path.suffix == ".npy":
            return {inputs[0].name: np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise BrazeError(f"{what} cannot be read as {path.suffix}: {first_line(e, 200)}") from e


def _as_tensor(value: Any, what: str) -> tuple[torch.Tensor, DType]:
    """`value` as a torch tensor (a numpy array's data shared or copied) and the DType it holds."""
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        try:
            dtype = DType.from_numpy(value.dtype)
        except TypeError:
            raise InputError(f"{what} has numpy dtype {value.dtype}, which braze does not support") from None
        return to_torch(value), dtype
    if isinstance(value, torch.Tensor):
        if value.is_quantized or value.layout != torch.strided or value.is_nested or value.device.type == "meta":
            raise InputError(f"{what} is a {value.layout} {value.dtype} tensor on {value.device}; give a dense one "
                             f"with data")
        try:
            return value.detach(), DType.from_torch(value.dtype)
        except TypeError:
            raise InputError(f"{what} has torch dtype {value.dtype}, which braze does not support") from None
    raise InputError(f"{what} is a {type(value).__name__}; give a numpy array or a torch tensor")


def _check_shape(t: Tensor, shape: tuple[int, ...], sizes: dict[str, tuple[int, str]], what: str) -> None:
    if t.shape is None:
        return
    expected = format_shape(t.shape)
    if len(shape) != len(t.shape):
        hint = " (one sample without its batch dim? add it: x[None])" if len(shape) + 1 == len(t.shape) else ""
        raise InputError(f"{what} has shape {format_shape(shape)}, rank {len(shape)}; the model expects "
                         f"{expected}{hint}")
    for axis, (dim, size) in enumerate(zip(t.shape, shape)):
        if isinstance(dim, int) and dim != size:
            raise InputError(f"{what} has shape {format_shape(shape)}; the model expects {expected} "
                             f"(dim {axis} is {dim})")
        if isinstance(dim, str):
            seen = sizes.setdefault(dim, (size, t.name))
            if seen[0] != size:
                raise InputError(f"{what} has shape {format_shape(shape)}: its dim {dim!r} is {size}, but input "
                                 f"{seen[1]!r} of the same sample has {dim!r} = {seen[0]}")


def _converted(t: Tensor, value: torch.Tensor, dtype: DType, what: str, device: torch.device) -> torch.Tensor:
    expected = t.dtype
    if expected is None or dtype is expected:
        result = value.to(device)
    elif expected.emulated or dtype.emulated:
        raise InputError(f"{what} is {dtype}; the model expects {expected}")
    elif expected.is_floating:
        if not dtype.is_floating:
            raise InputError(f"{what} is {dtype}; the model expects {expected}: convert it as the model expects "
                             f"(an image of bytes usually needs the model's normalization first), then pass floats")
        result = value.to(device=device, dtype=expected.torch)
    elif expected.is_integer:
        if not dtype.is_integer:
            raise InputError(f"{what} is {dtype}; the model expects {expected} (integers)")
        _check_range(value, expected, what)
        result = value.to(device=device, dtype=expected.torch)
    else:
        raise InputError(f"{what} is {dtype}; the model expects {expected}")
    if result.is_floating_point() and not bool(torch.isfinite(result).all()):
        raise InputError(f"{what} has {_nonfinite(value, result, expected)}: calibration needs finite values")
    return result.contiguous()


def _check_range(value: torch.Tensor, expected: DType, what: str) -> None:
    if value.numel() == 0:
        return
    info = torch.iinfo(expected.torch)
    low, high = int(value.min()), int(value.max())
    if low < info.min or high > info.max:
        raise InputError(f"{what} has values in [{low}, {high}], beyond {expected}'s range [{info.min}, {info.max}]")


def _nonfinite(value: torch.Tensor, result: torch.Tensor, expected: DType | None) -> str:
    found = [word for word, test in (("NaN", torch.isnan), ("infinity", torch.isinf)) if bool(test(result).any())]
    text = " and ".join(found)
    if value.is_floating_point() and bool(torch.isfinite(value).all()):
        return f"{text} after conversion to {expected} (values beyond its range)"
    return f"{text} ({int((~torch.isfinite(result)).sum())} of {result.numel()} values)"


def _describe_inputs(inputs: Sequence[Tensor]) -> str:
    return ", ".join(f"{t.name!r}: {t.type_str()}" for t in inputs)


def _describe_source(source: Any) -> str:
    return repr(str(source)) if isinstance(source, (str, os.PathLike)) else f"(a {type(source).__name__})"


__all__ = ["Feed", "check_sample", "iter_samples", "load_samples", "split"]
