"""Timing one kernel on its real shapes: warm-up, then the median of CUDA-event-timed repetitions,
with the L2 cache flushed before each so small layers are not timed out of a hot cache."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

_FLUSH_BYTES = 256 * 2**20  # larger than any current GPU's L2


class L2Flusher:
    def __init__(self, device: torch.device):
        self.buffer = torch.empty(_FLUSH_BYTES // 4, dtype=torch.int32, device=device) if device.type == "cuda" else None

    def __call__(self) -> None:
        if self.buffer is not None:
            self.buffer.zero_()


def time_kernel(run: Callable[[], object], device: torch.device, *, warmup: int = 3, repeat: int = 15,
                flush: L2Flusher | None = None, budget_ms: float = 25.0) -> float:
    """Median milliseconds of `run()` on `device`: `repeat` timed runs, fewer (at least 3) for kernels so long
    that `repeat` of them would exceed `budget_ms`, where the median of a few is already stable."""
    started = time.perf_counter()
    for _ in range(warmup):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    per_run = (time.perf_counter() - started) * 1000 / max(warmup, 1)
    repeat = max(3, min(repeat, int(budget_ms / max(per_run, 1e-3))))
    if device.type != "cuda":
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            run()
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)
    torch.cuda.synchronize(device)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]
    for start, end in zip(starts, ends):
        if flush is not None:
            flush()
        start.record()
        run()
        end.record()
    torch.cuda.synchronize(device)
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))
