"""The timing cache: the tactic and configuration chosen for a layer signature on a device.

A layer's key hashes what decides its kernel: op, attributes, input and output shapes and dtypes,
which inputs are constants, the tactic-relevant device signature (GPU name, compute capability,
library versions). A rebuild, or another model with the same layers, looks its layers up and skips
the timing. The file is JSON; a cache written on another device is ignored, not trusted, and a file
that is not a well-formed timing cache is a BrazeError (it is neither read in part nor overwritten).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import BrazeError
from ..ir import Graph, Node

CACHE_VERSION = 1
_DEVICE_KEYS = ("kind", "name", "compute_capability", "cuda", "cudnn", "torch", "triton")


def layer_key(node: Node) -> str:
    """A stable hash of everything that decides which kernel is fastest for this layer."""
    desc = {
        "op": f"{node.domain}.{node.op}" if node.domain else node.op,
        "version": node.version,
        "attrs": {k: _attr(v) for k, v in sorted(node.attrs.items())},
        "inputs": [None if t is None else [str(t.dtype), list(t.shape or ()), t.is_constant] for t in node.inputs],
        "outputs": [[str(t.dtype), list(t.shape or ())] for t in node.outputs],
    }
    return hashlib.sha1(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()


def _attr(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return ["tensor", str(v.dtype), list(v.shape), hashlib.sha1(v.detach().cpu().contiguous().view(-1)
                                                                    .view(torch.uint8).numpy().tobytes()).hexdigest()]
    if isinstance(v, Graph):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_attr(x) for x in v]
    return v


class TimingCache:
    def __init__(self, device: dict[str, Any], path: str | os.PathLike | None = None):
        self.device = {k: device.get(k) for k in _DEVICE_KEYS}
        self.path = Path(path) if path else None
        self.entries: dict[str, dict[str, Any]] = {}
        self.hits = 0
        self.misses = 0
        if self.path is not None and self.path.exists():
            self._load()

    def _load(self) -> None:
        # NOTE: a damaged or foreign file is refused, never half-read and never overwritten by save(); a cache of
        # another version or device is ignored. An entry is only a hint: the tuner takes it only for a tactic and
        # configuration that it offers for the layer.
        try:
            doc = json.loads(self.path.read_text())  # type: ignore[union-attr]
        except (OSError, ValueError) as e:
            raise BrazeError(f"timing cache {self.path} cannot be read: {e}; delete it or name another file") from None
        problem = _malformed(doc)
        if problem:
            raise BrazeError(f"timing cache {self.path} is not a braze timing cache: {problem}; "
                             f"delete it or name another file")
        if doc.get("version") == CACHE_VERSION and doc.get("device") == self.device:
            self.entries = dict(doc.get("entries", {}))

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: str, tactic: str, config: dict[str, Any], ms: float, timings: dict[str, float]) -> None:
        self.entries[key] = {"tactic": tactic, "config": config, "ms": ms, "candidates": timings}

    def save(self) -> None:
        if self.path is None:
            return
        doc = {"version": CACHE_VERSION, "device": self.device, "entries": self.entries}
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
            tmp.replace(self.path)
        except OSError as e:
            raise BrazeError(f"timing cache {self.path} cannot be written: {e.strerror or e}") from None


def _malformed(doc: Any) -> str | None:
    """What makes `doc` other than a timing cache's JSON (of any version), or None."""
    if not isinstance(doc, dict):
        return f"the file holds a JSON {type(doc).__name__}, not an object"
    if "version" not in doc or "device" not in doc or not isinstance(doc.get("entries"), dict):
        return "it lacks 'version', 'device' or an 'entries' object"
    if doc["version"] != CACHE_VERSION:
        return None  # another version's layout is not checked; it is ignored
    for key, entry in doc["entries"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("tactic"), str) \
                or not isinstance(entry.get("config"), dict):
            return f"entry {key!r} has no 'tactic' name and 'config' object"
    return None
