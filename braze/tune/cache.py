"""The timing cache: the tactic and configuration chosen for a layer signature on a device.

A layer's key hashes what decides its kernel: op, attributes, input and output shapes and dtypes,
which inputs are constants, the tactic-relevant device signature (GPU name, compute capability,
library versions). A rebuild, or another model with the same layers, looks its layers up and skips
the timing. The file is JSON; a cache written on another device is ignored, not trusted.
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
        try:
            doc = json.loads(self.path.read_text())  # type: ignore[union-attr]
        except (OSError, ValueError) as e:
            raise BrazeError(f"timing cache {self.path} cannot be read: {e}") from None
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
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
        tmp.replace(self.path)
