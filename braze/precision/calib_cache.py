"""The calibration cache: per-tensor INT8 scales in a JSON file, keyed by the graph they were calibrated on.

    {"version": 1, "calibrator": "entropy", "graph_digest": "<sha256>", "data_digest": "<sha256>",
     "scales": {"tensor": 0.0123, ...}}          (and "percentile": 99.99 for the percentile calibrator)

`graph_digest` is a sha256 over the float graph's structure (ops, domains, versions, attributes, tensor names,
dtypes and shapes, in order, subgraphs included) and its constants' values: a cache made for another model,
or for another graph of the same model (other weights, shapes or build options), is refused on load, with why.
`data_digest` is a sha256 over the calibration samples' names, dtypes, shapes and bytes, recorded so that a
later build can tell whether its data is what the scales came from. Saving is atomic (a temporary file in the
same folder, renamed over the target): a build killed mid-write leaves the old cache or the new one.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from ..errors import BrazeError
from ..ir import Graph, Tensor
from ..ir.dtype import to_torch
from .calibrate import METHODS

VERSION = 1


@dataclass
class CalibrationCache:
    calibrator: str
    graph_digest: str
    data_digest: str
    scales: dict[str, float] = field(default_factory=dict)
    percentile: float | None = None  # NOTE: set exactly when calibrator == "percentile"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": VERSION, "calibrator": self.calibrator}
        if self.calibrator == "percentile":
            data["percentile"] = self.percentile
        data.update(graph_digest=self.graph_digest, data_digest=self.data_digest, scales=dict(self.scales))
        return data

    def save(self, path: str | os.PathLike) -> None:
        """Write the cache to `path` atomically; a cache with a bad field is refused, not written."""
        path = Path(path)
        _validate(self.to_json(), f"calibration cache for {str(path)!r}")
        text = json.dumps(self.to_json(), indent=1) + "\n"
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as e:
            raise BrazeError(f"cannot write calibration cache {str(path)!r}: {e.strerror or e}") from e
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), 0o644)
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
        except BaseException as e:
            Path(temp).unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise BrazeError(f"cannot write calibration cache {str(path)!r}: {e.strerror or e}") from e
            raise


def load_cache(path: str | os.PathLike, graph: Graph, tensors: Iterable[str] = (),
               digest: str | None = None) -> CalibrationCache:
    """The cache at `path`, refused (BrazeError saying why) unless it is of this format version, well formed,
    made for `graph` (its `digest`, computed if not given) and holds a scale for each of `tensors`."""
    what = f"calibration cache {str(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BrazeError(f"{what} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BrazeError(f"cannot read {what}: {getattr(e, 'strerror', None) or e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BrazeError(f"{what} is not JSON ({e.msg} at line {e.lineno}): not a braze calibration cache") from None
    cache = _validate(data, what)
    expected = digest or graph_digest(graph)
    if cache.graph_digest != expected:
        known = graph.tensors().keys()
        matching = sum(name in known for name in cache.scales)
        if cache.scales and matching * 2 >= len(cache.scales):
            why = (f"another graph of this model: {matching} of its {len(cache.scales)} tensor names are this "
                   f"graph's, but the ops, shapes or weights differ (another version of the model, or other build "
                   f"options: input shapes, optimization level)")
        else:
            why = (f"another model: {'none' if matching == 0 else f'only {matching}'} of its {len(cache.scales)} "
                   f"tensor names are this graph's")
        raise BrazeError(f"{what} was made for {why}; calibrate again (pass calibration data) or give the cache "
                         f"made for this model")
    missing = [name for name in tensors if name not in cache.scales]
    if missing:
        shown = ", ".join(map(repr, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise BrazeError(f"{what} has no scale for {len(missing)} tensor(s) this build quantizes: {shown} (it was "
                         f"calibrated for other layers: another precision policy?); calibrate again")
    return cache


def _validate(data: Any, what: str) -> CalibrationCache:
    if not isinstance(data, dict):
        raise BrazeError(f"{what} holds a JSON {type(data).__name__}, not an object: not a braze calibration cache")
    if "version" not in data:
        raise BrazeError(f"{what} has no 'version': not a braze calibration cache")
    if data["version"] != VERSION:
        raise BrazeError(f"{what} is of format version {data['version']!r}; this braze reads version {VERSION}: "
                         f"calibrate again")
    calibrator = data.get("calibrator")
    if calibrator not in METHODS:
        raise BrazeError(f"{what}: 'calibrator' is {calibrator!r}, expected one of {', '.join(METHODS)}")
    percentile = data.get("percentile")
    if calibrator == "percentile" and not (_is_number(percentile) and 0 < percentile <= 100):
        raise BrazeError(f"{what}: 'percentile' is {percentile!r}, expected a number above 0 and at most 100")
    for key in ("graph_digest", "data_digest"):
        value = data.get(key)
        if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
            raise BrazeError(f"{what}: {key!r} is {value!r}, expected a sha256 in hex")
    scales = data.get("scales")
    if not isinstance(scales, dict):
        raise BrazeError(f"{what}: 'scales' is {type(scales).__name__}, expected an object of tensor name -> scale")
    for name, scale in scales.items():
        if not (_is_number(scale) and math.isfinite(scale) and scale > 0):
            raise BrazeError(f"{what}: the scale of tensor {name!r} is {scale!r}, expected a finite number above 0")
    return CalibrationCache(calibrator, data["graph_digest"], data["data_digest"],
                            {name: float(s) for name, s in scales.items()},
                            float(percentile) if calibrator == "percentile" else None)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- digests ------------------------------------------------------------------------------------------------

def graph_digest(graph: Graph) -> str:
    """sha256 (hex) of `graph`'s structure and constant values (module docstring); node names are left out."""
    h = hashlib.sha256()
    _graph(h, graph, set())
    return h.hexdigest()


def data_digest(samples: Iterable[Mapping[str, Any]]) -> str:
    """sha256 (hex) of the samples in order: each input's name, dtype, shape and bytes, by name."""
    h = hashlib.sha256()
    for index, feed in enumerate(samples):
        _put(h, f"sample {index}")
        for name in sorted(feed):
            _put(h, name)
            _value(h, feed[name])
    return h.hexdigest()


def _put(h: Any, text: str | bytes) -> None:
    """Length-prefixed, so that no two sequences of pieces hash alike."""
    data = text.encode() if isinstance(text, str) else text
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _graph(h: Any, graph: Graph, seen: set[int]) -> None:
    _put(h, f"graph {len(graph.inputs)} {len(graph.outputs)} {len(graph.nodes)} {len(graph.outer)}")
    for t in (*graph.inputs, *graph.outer):
        _tensor(h, t, seen)
    for node in graph.nodes:
        _put(h, f"node {node.domain}.{node.op} v{node.version} {len(node.inputs)} {len(node.outputs)}")
        for t in node.inputs:
            if t is None:
                _put(h, "none")
            else:
                _tensor(h, t, seen)
        for t in node.outputs:
            _tensor(h, t, seen)
        for key in sorted(node.attrs):
            _put(h, key)
            _attr(h, node.attrs[key], seen)
    _put(h, "outputs")
    for t in graph.outputs:
        _tensor(h, t, seen)


def _tensor(h: Any, t: Tensor, seen: set[int]) -> None:
    _put(h, f"{t.name}\0{t.kind}\0{t.dtype}\0{t.shape}\0{t.is_constant}")
    if t.value is not None and id(t) not in seen:  # NOTE: a constant's value once, where it is first read
        seen.add(id(t))
        _value(h, t.value)


def _value(h: Any, value: Any) -> None:
    if isinstance(value, np.ndarray):
        value = to_torch(value)
    flat = value.detach().cpu().contiguous().reshape(-1)
    _put(h, f"{value.dtype} {tuple(value.shape)}")
    _put(h, flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")


def _attr(h: Any, value: Any, seen: set[int]) -> None:
    if value is None or isinstance(value, (bool, int, str, bytes)):
        _put(h, f"{type(value).__name__}:{value!r}")
    elif isinstance(value, float):
        _put(h, f"float:{value.hex()}")
    elif isinstance(value, (list, tuple)):
        _put(h, f"{type(value).__name__}:{len(value)}")
        for item in value:
            _attr(h, item, seen)
    elif isinstance(value, dict):
        _put(h, f"dict:{len(value)}")
        for key in sorted(value, key=repr):
            _attr(h, key, seen)
            _attr(h, value[key], seen)
    elif isinstance(value, (torch.Tensor, np.ndarray)):
        _put(h, "tensor")
        _value(h, value)
    elif isinstance(value, np.generic):
        _attr(h, value.item(), seen)
    elif isinstance(value, Graph):
        _graph(h, value, seen)
    elif isinstance(value, enum.Enum):
        _put(h, f"{type(value).__qualname__}.{value.name}")
    else:  # NOTE: any other attribute kind by its type and repr
        _put(h, f"{type(value).__qualname__}:{value!r}")


__all__ = ["CalibrationCache", "VERSION", "data_digest", "graph_digest", "load_cache"]
