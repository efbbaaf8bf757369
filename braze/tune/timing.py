"""Timing one kernel on its real shapes: warm-up, then the median of CUDA-event-timed repetitions,
with the L2 cache flushed before each so small layers are not timed out of a hot cache; or, for a
profile, repetitions captured in one CUDA graph so that host launch time is left out."""

from __future__ import annotations

import statistics
import time
import warnings
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


def time_in_cuda_graph(run: Callable[[], object], device: torch.device, stream: torch.cuda.Stream,
                       runs: int) -> float:
    """Milliseconds per call of `run`: `runs` calls captured as one CUDA graph, the median of 5 replays
    (L2 warm). A `run` that cannot be captured is timed by `time_kernel`, its launches included."""
    run()
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    try:
        with warnings.catch_warnings(), torch.cuda.stream(stream), \
                torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
            warnings.simplefilter("ignore")  # a view layer launches nothing: its graph is empty, its time ~0
            for _ in range(runs):
                run()
    except RuntimeError:
        torch.cuda.synchronize(device)
        return time_kernel(run, device, warmup=1, repeat=runs)
    with torch.cuda.stream(stream):
        graph.replay()
        return time_kernel(graph.replay, device, warmup=0, repeat=5) / runs
