"""Latency measurement: warm up, repeat, report percentiles (the numbers `braze run/bench/demo` print)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Latencies in milliseconds over `count` timed runs."""

    count: int
    min: float
    median: float
    mean: float
    p90: float
    p95: float
    p99: float
    max: float

    @property
    def throughput(self) -> float:
        """Inferences per second at the median latency."""
        return 1000.0 / self.median if self.median > 0 else float("inf")

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "throughput": self.throughput}

    def summary(self, unit: str = "inferences") -> str:
        return (f"min {self.min:.3f} ms, median {self.median:.3f} ms, mean {self.mean:.3f} ms, "
                f"p90 {self.p90:.3f} ms, p99 {self.p99:.3f} ms over {self.count} runs; "
                f"throughput {self.throughput:.1f} {unit}/s")


def stats_of(samples_ms: list[float]) -> LatencyStats:
    a = np.asarray(samples_ms, dtype=np.float64)
    q = np.percentile(a, [50, 90, 95, 99])
    return LatencyStats(len(a), float(a.min()), float(q[0]), float(a.mean()), float(q[1]), float(q[2]),
                        float(q[3]), float(a.max()))


def measure(fn: Callable[[], object], *, warmup: int = 3, iterations: int = 20, min_seconds: float = 0.0,
            sync: Callable[[], None] | None = None, on_run: Callable[[int], None] | None = None) -> LatencyStats:
    """Time `fn` with a wall clock after `warmup` calls: at least `iterations` runs and `min_seconds`.
    `on_run(n)` is told each timed run's count (a progress display), outside the timed region."""
    if iterations < 1:
        raise ValueError(f"iterations must be 1 or more, not {iterations}")
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < iterations or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        samples.append((time.perf_counter() - t0) * 1000.0)
        if on_run is not None:
            on_run(len(samples))
    return stats_of(samples)
