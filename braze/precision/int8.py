"""The INT8 step of the precision stage: choose the layers (the recipe and the pins), find their input scales
(calibration data, or a calibration cache made for this graph), and put Q/DQ pairs before them.

    report = quantize(graph, policy, Calibration(data="calib/", cache="model.calib.json"), device, say)

Calibration runs on the build device: the optimized float32 graph with the reference ops, observing only the
tensors the chosen layers read; the scales go to the cache when one is named, and a later build with the cache
and no data reuses them. The fusion rules (passes/fuse_qdq.py) then make each layer an INT8 kind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import BrazeError
from ..ir import Graph, Node
from ..progress import Progress
from .calib_cache import CalibrationCache, data_digest, graph_digest, load_cache
from .calibrate import calibrate, collect
from .data import load_samples
from .policy import PrecisionPolicy
from .qdq import Choice, calibration_tensors, choose_layers, insert_qdq


@dataclass
class Calibration:
    """Where INT8 scales come from: `data` (a folder of .npy/.npz, an iterable of feeds, a DataLoader) and/or
    `cache` (a JSON file: read when there is no data, written when there is)."""

    data: Any = None
    cache: str | None = None
    # percentile (the default: the best on braze's real models, docs/quantization.md), minmax or entropy
    calibrator: str = "percentile"
    percentile: float = 99.99
    limit: int | None = None  # use at most this many samples
    # NOTE: internal (the accuracy guard's rebuilds): an earlier build's report for the same float graph, whose
    # scales, source and data digest are reused, so that a rebuild with other layers pinned recalibrates nothing
    reuse: Int8Report | None = None


@dataclass
class Int8Report:
    choices: list[Choice] = field(default_factory=list)
    scales: dict[str, float] = field(default_factory=dict)
    source: str = ""  # "calibrated on N samples (entropy)" or "cache FILE"
    graph_digest: str = ""
    data_digest: str = ""
    seconds: float = 0.0
    quantized: frozenset[str] = frozenset()  # the quantized tensors insert_qdq made (for the fusion rules)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "graph_digest": self.graph_digest, "data_digest": self.data_digest,
                "seconds": round(self.seconds, 3),
                "int8_layers": [_label(c.node) for c in self.choices if c.int8],
                "kept_in_float": {_label(c.node): c.reason for c in self.choices if not c.int8}}


def _label(node: Node) -> str:
    """A layer's name as the user knows it: the ONNX node it was made from (a fused layer's first)."""
    return node.origin[0] if node.origin else node.name


def quantize(graph: Graph, policy: PrecisionPolicy, calibration: Calibration | None, device: torch.device,
             say: Progress) -> Int8Report:
    """Choose, calibrate and insert Q/DQ in place; returns what was done (for the plan and `inspect`)."""
    started = time.perf_counter()
    report = Int8Report(choices=choose_layers(graph, policy))
    names = calibration_tensors(report.choices)
    if not names:
        say("int8: no layer of this model can take INT8 (convolutions and matrix products with constant weights)")
        return report
    calibration = calibration or Calibration()
    report.graph_digest = graph_digest(graph)
    if calibration.reuse is not None:
        _reuse(report, calibration.reuse, names)
    elif calibration.data is None:
        if calibration.cache is None or not Path(calibration.cache).exists():
            given = f" (the cache {calibration.cache!r} does not exist)" if calibration.cache else ""
            raise BrazeError(f"int8 needs calibration data or a calibration cache{given}: pass --calib DIR (a folder "
                             f"of .npy/.npz samples) or --calib-cache FILE, or BuilderConfig(calibration="
                             f"Calibration(data=..., cache=...))")
        cache = load_cache(calibration.cache, graph, names, report.graph_digest)
        report.scales, report.data_digest = dict(cache.scales), cache.data_digest
        report.source = f"cache {calibration.cache} ({cache.calibrator})"
    else:
        samples = load_samples(calibration.data, graph, device, calibration.limit)
        say(f"int8: calibrating {len(names)} tensors on {len(samples)} samples ({calibration.calibrator}, on {device})")
        collector = collect(graph, samples, names, device, histogram=calibration.calibrator != "minmax")
        report.scales = calibrate(collector, calibration.calibrator, calibration.percentile, say)
        report.data_digest = data_digest(samples)
        report.source = f"calibrated on {len(samples)} samples ({calibration.calibrator})"
        if calibration.cache is not None:
            CalibrationCache(calibration.calibrator, report.graph_digest, report.data_digest, report.scales,
                             calibration.percentile if calibration.calibrator == "percentile" else None
                             ).save(calibration.cache)
    report.quantized = insert_qdq(graph, report.choices, report.scales)
    pairs = len(report.quantized)
    report.seconds = time.perf_counter() - started
    kept = [c for c in report.choices if not c.int8]
    say(f"int8: {sum(c.int8 for c in report.choices)} layers quantized ({pairs} Q/DQ pairs), {len(kept)} kept in "
        f"float{': ' + '; '.join(f'{_label(c.node)} ({c.reason})' for c in kept[:5]) if kept else ''}"
        f"{' ...' if len(kept) > 5 else ''}")
    return report


def _reuse(report: Int8Report, earlier: Int8Report, names: list[str]) -> None:
    """Take the scales of an earlier build of the same float graph (the accuracy guard's rebuilds)."""
    if earlier.graph_digest != report.graph_digest:
        raise BrazeError("int8: the scales reused from an earlier build were made for another float graph")
    missing = [n for n in names if n not in earlier.scales]
    if missing:
        raise BrazeError(f"int8: the scales reused from an earlier build have none for tensor(s) "
                         f"{', '.join(map(repr, missing))}")
    report.scales = {n: earlier.scales[n] for n in names}
    report.source, report.data_digest = earlier.source, earlier.data_digest
