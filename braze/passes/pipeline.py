"""The optimization pipeline: one ordered list of passes, run by `optimize`.

Each pass is a function `(graph, ctx) -> None` that edits the graph in place and counts what it
did in `ctx.fired`. After every pass the graph is verified and its shapes inferred again, the
pass is timed, and the graph can be dumped (`BRAZE_DEBUG=passes`, or `dump_dir`).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..ir import Graph
from ..ops import infer_shapes
from ..precision.policy import PrecisionPolicy
from . import (concat, eliminate, fold_constants, fuse_attention, fuse_conv, fuse_gemm, fuse_pointwise, fuse_qdq,
               horizontal, layout, qoperator, recognize)


@dataclass
class PassContext:
    level: int = 3
    target: str = "cpu"
    policy: PrecisionPolicy = field(default_factory=PrecisionPolicy)
    calibrated: frozenset[str] = frozenset()  # the quantized tensors calibration made (fuse_qdq may round their weights)
    fired: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    dump_dir: Path | None = None
    log: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[[Graph, PassContext], None]
    level: int = 1  # the lowest optimization level that runs it


PIPELINE: list[Pass] = [
    Pass("qoperator", qoperator.run),
    Pass("fold_constants", fold_constants.run),
    Pass("eliminate", eliminate.run),
    Pass("recognize", recognize.run),
    Pass("fuse_conv", fuse_conv.run),
    Pass("fuse_gemm", fuse_gemm.run),
    Pass("fuse_attention", fuse_attention.run, level=2),
    Pass("horizontal", horizontal.run, level=2),
    Pass("fuse_pointwise", fuse_pointwise.run, level=2),
    Pass("eliminate_again", eliminate.run),
    Pass("concat", concat.run, level=2),
]

# The precision stage's passes: Q/DQ fusion once the Q/DQ pairs are in place (the model's, or calibration's),
# before the floats are lowered; then the rules that need the lowered types.
PRECISION_PIPELINE: list[Pass] = [
    Pass("fuse_qdq", fuse_qdq.run),
    Pass("layout", layout.run, level=2),
]
QDQ_PASSES, LOWERED_PASSES = PRECISION_PIPELINE[:1], PRECISION_PIPELINE[1:]


def optimize(graph: Graph, ctx: PassContext, pipeline: list[Pass] | None = None) -> None:
    """Run every pass of `pipeline` (default PIPELINE) that `ctx.level` enables, in order."""
    dump = ctx.dump_dir or _debug_dir()
    everything = PIPELINE + PRECISION_PIPELINE  # NOTE: dump files keep one numbering across the lists
    for p in PIPELINE if pipeline is None else pipeline:
        index = everything.index(p)
        if ctx.level < p.level:
            continue
        started = time.perf_counter()
        p.run(graph, ctx)
        graph.cleanup()
        graph.verify()
        infer_shapes(graph)
        ctx.seconds[p.name] = ctx.seconds.get(p.name, 0.0) + time.perf_counter() - started
        if ctx.log:
            ctx.log(f"pass {p.name}: {len(graph.nodes)} nodes, {ctx.seconds[p.name] * 1000:.0f} ms")
        if dump is not None:
            dump.mkdir(parents=True, exist_ok=True)
            (dump / f"{index:02d}_{p.name}.txt").write_text(str(graph))


def _debug_dir() -> Path | None:
    flags = os.environ.get("BRAZE_DEBUG", "")
    if "passes" not in flags.split(","):
        return None
    return Path(os.environ.get("BRAZE_DEBUG_DIR", "braze_debug"))
