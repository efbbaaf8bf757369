"""Calibration: observe activations over sample runs, then choose each tensor's INT8 clipping range (amax).

`Collector` is fed (tensor name, value) observations on the build device and keeps per tensor, on that
device, the running amax (max |x|) and a histogram of |x| in BINS bins. The histogram covers [0, 2**e) for
the smallest e with every |x| seen below 2**e, so bin edges are exact binary fractions: when a batch goes
beyond the range, the range doubles as often as needed and adjacent bins are merged in groups of 2**k. That
re-binning is exact: the histogram is the one a single pass over all the data with the final range would
make. An observation never waits for the device: NaN and infinity are flagged there and `check` (once a
sample) reads the flags and names the tensor.

Calibrators, each giving amax per tensor (the INT8 scale is amax / 127):
- `minmax`: amax itself.
- `percentile`: the p-th percentile of |x| (default 99.99), interpolated within its histogram bin.
- `entropy`: TensorRT's search, from S. Migacz, "8-bit Inference with TensorRT" (GTC 2017): for each
  candidate count i of kept bins (LEVELS..BINS), P = the first i bins with the clipped mass added to the last,
  Q = the first i bins (unclipped) merged into LEVELS levels and expanded back over the bins where P is
  nonzero; the i of least KL(P || Q) wins and the threshold is (i + 0.5) bin widths (at most amax).

`collect` runs a graph with the reference evaluator on calibration samples and feeds a Collector.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import torch

from ..errors import BrazeError, ExecutionError, first_line
from ..ir import Graph, Tensor
from ..ops.evaluate import run_graph
from ..progress import Counter, Progress

BINS = 2048
LEVELS = 128
QMAX = 127
METHODS = ("minmax", "percentile", "entropy")
ZERO_SCALE = 2.0 ** -30
"""The scale of a tensor that was zero on every sample. NOTE: positive and a normal float32 and bfloat16."""
EMPTY_LEVEL = 1e-4
"""The count a level of Q gets when it holds no unclipped value but P has clipped mass there (the entropy
search). NOTE: without it such a candidate's KL is infinite, and a few far outliers, with nothing between them
and the bulk, could never be clipped; 1e-4 counts is the smoothing MXNet's and onnxruntime's searches use."""
_TIE = 1e-12
# NOTE: the histogram's range is 2**e with e in [_MIN_EXPONENT, _MAX_EXPONENT] (float32's finite values are below
# 2**128), so that 2**(log2(bins) - e) stays a normal float32 for bins up to 2**11
_MIN_EXPONENT, _MAX_EXPONENT = -116, 128


class _Stats:
    """One tensor's running statistics, all on the collector's device."""

    def __init__(self, device: torch.device, bins: int | None):
        self.amax = torch.zeros((), dtype=torch.float32, device=device)
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        self.exponent = torch.full((), _MIN_EXPONENT, dtype=torch.int64, device=device)  # range = 2**exponent
        self.hist = None if bins is None else torch.zeros(bins, dtype=torch.int64, device=device)
        self.count = 0


class Collector:
    """Per tensor: amax and (with `histogram`) a histogram of |x| in `bins` bins, kept on `device`."""

    def __init__(self, device: torch.device | str = "cpu", bins: int = BINS, histogram: bool = True):
        if bins < 1 or bins & (bins - 1) or bins > 2 ** 11:
            raise BrazeError(f"bins={bins}: a power of two up to 2048")
        self.device = torch.device(device)
        self.bins = bins
        self.histogram_kept = histogram
        self._log2_bins = bins.bit_length() - 1
        self._stats: dict[str, _Stats] = {}
        self._bin_index = torch.arange(bins, device=self.device)

    @property
    def names(self) -> list[str]:
        """The tensors observed, in the order first seen."""
        return list(self._stats)

    def observe(self, name: str, x: Any) -> None:
        """Add `x`'s values to tensor `name`'s statistics (no wait for the device: see `check`)."""
        if not isinstance(x, torch.Tensor):
            raise BrazeError(f"tensor {name!r} is a {type(x).__name__}, not a tensor: it cannot be calibrated")
        if not x.is_floating_point():
            raise BrazeError(f"tensor {name!r} is {str(x.dtype).removeprefix('torch.')}: only float tensors are "
                             f"calibrated")
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = _Stats(self.device, self.bins if self.histogram_kept else None)
        if x.numel() == 0:
            return
        a = x.detach().to(device=self.device, dtype=torch.float32).reshape(-1).abs()
        batch_max = a.max()  # NOTE: NaN if any is NaN, else inf if any is inf
        stats.finite &= torch.isfinite(batch_max)
        stats.amax = torch.maximum(stats.amax, batch_max)
        stats.count += a.numel()
        if stats.hist is not None:
            self._add_to_histogram(stats, a, batch_max)

    def _add_to_histogram(self, stats: _Stats, a: torch.Tensor, batch_max: torch.Tensor) -> None:
        exponent = torch.frexp(batch_max).exponent.to(torch.int64)  # NOTE: batch_max < 2**exponent
        exponent = torch.where(batch_max > 0, exponent.clamp(_MIN_EXPONENT, _MAX_EXPONENT), _MIN_EXPONENT)
        grown = torch.maximum(stats.exponent, exponent)
        shift = (grown - stats.exponent).clamp(max=62)
        merged = torch.zeros_like(stats.hist)
        stats.hist = merged.index_add_(0, self._bin_index >> shift, stats.hist)
        stats.exponent = grown
        scale = _power_of_two(self._log2_bins - grown)  # bins per unit of |x|, exact
        ones = torch.ones((), dtype=torch.int64, device=self.device)
        for chunk in a.split(1 << 24):
            # NOTE: clamped after the cast: a NaN or infinity (flagged for `check`) casts to some integer
            index = (chunk * scale).floor_().to(torch.int64).clamp_(0, self.bins - 1)
            stats.hist.index_add_(0, index, ones.expand(index.numel()))

    def check(self, where: str = "") -> None:
        """Raise a BrazeError naming every tensor that has seen NaN or infinity (`where`: e.g. the sample)."""
        if not self._stats:
            return
        names = list(self._stats)
        finite = torch.stack([self._stats[n].finite for n in names]).cpu().tolist()
        bad = [n for n, ok in zip(names, finite) if not ok]
        if bad:
            shown = ", ".join(map(repr, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise BrazeError(f"calibration{' ' + where if where else ''}: NaN or infinity in tensor(s) {shown}; "
                             f"calibration needs finite values (check the data, or the model's float range)")

    def amax(self, name: str) -> float:
        return float(self._get(name).amax)

    def count(self, name: str) -> int:
        """How many values tensor `name` has seen."""
        return self._get(name).count

    def histogram(self, name: str) -> tuple[torch.Tensor, float]:
        """Tensor `name`'s histogram of |x| (int64 counts, on the collector's device) and its range: bin i holds
        the values in [i, i + 1) * range / bins."""
        stats = self._get(name)
        if stats.hist is None:
            raise BrazeError(f"tensor {name!r} has no histogram: this collector keeps amax only (histogram=False); "
                             f"the percentile and entropy calibrators need one")
        return stats.hist, math.ldexp(1.0, int(stats.exponent))

    def _get(self, name: str) -> _Stats:
        try:
            return self._stats[name]
        except KeyError:
            raise BrazeError(f"tensor {name!r} was not observed during calibration") from None


def _power_of_two(exponent: torch.Tensor) -> torch.Tensor:
    """2.0**exponent as a float32 0-d tensor, made from its bits (exact; no libm). NOTE: exponent in [-126, 127]."""
    return ((exponent + 127) << 23).to(torch.int32).view(torch.float32)


# -- calibrators ------------------------------------------------------------------------------------------

def percentile_amax(hist: torch.Tensor, width: float, percentile: float) -> float:
    """The `percentile`-th percentile of the values counted in `hist` (bin i: [i, i + 1) * width), found by
    linear interpolation within its bin: within one bin width of the exact percentile."""
    counts = hist.to(torch.float64)
    cumulative = counts.cumsum(0)
    total = float(cumulative[-1])
    if total == 0:
        return 0.0
    target = percentile / 100.0 * total
    i = min(int(torch.searchsorted(cumulative, torch.tensor([target], dtype=torch.float64,
                                                                    device=cumulative.device))), len(counts) - 1)
    inside = float(counts[i])
    before = float(cumulative[i]) - inside
    fraction = min(max((target - before) / inside, 0.0), 1.0) if inside > 0 else 1.0
    return (i + fraction) * width


def kl_divergences(hist: torch.Tensor, levels: int = LEVELS) -> torch.Tensor:
    """KL(P || Q) of the entropy search (module docstring) for every candidate i = levels .. len(hist) kept bins
    (element i - levels), float64 on hist's device; inf where Q misses mass of P.

    Per candidate the sums are taken from prefix sums, so the search is O(candidates x levels):
    KL = sum_j p_j log(p_j / q_j) = (1/T) sum_j P_j log P_j - log T - (1/T) sum_g Pg log(Qg / Ng) + log sum_g Qg,
    with T the total count, Pg the mass of P in level g, Qg its unclipped mass and Ng its bins nonzero in P."""
    h = hist.to(torch.float64)
    n = h.numel()
    if n < levels:
        raise BrazeError(f"a histogram of {n} bins is too small for {levels} levels")
    zero = h.new_zeros(1)
    c = torch.cat([zero, h.cumsum(0)])  # c[k] = sum of h[:k]
    plogp = torch.cat([zero, _xlogx(h).cumsum(0)])
    nonzero = torch.cat([zero, (h > 0).to(torch.float64).cumsum(0)])
    total = c[-1]
    i = torch.arange(levels, n + 1, device=h.device)
    merged = (i // levels)[:, None]
    g = torch.arange(levels, device=h.device)[None, :]
    start = g * merged
    stop = torch.where(g == levels - 1, i[:, None], start + merged)  # NOTE: the last level takes the remainder
    q = c[stop] - c[start]
    bins_nonzero = nonzero[stop] - nonzero[start]
    clipped = total - c[i]
    last = h[i - 1]
    p = q.clone()
    p[:, -1] += clipped  # the clipped mass sits on bin i - 1, in the last level
    bins_nonzero[:, -1] += ((last == 0) & (clipped > 0)).to(torch.float64)
    q = torch.where((q == 0) & (p > 0), EMPTY_LEVEL, q)
    sum_plogp = plogp[i - 1] + _xlogx(last + clipped)
    cross = torch.where(p > 0, p * (torch.log(q) - torch.log(bins_nonzero.clamp(min=1))), 0.0).sum(1)
    kl = (sum_plogp - cross) / total - torch.log(total) + torch.log(q.sum(1))
    return kl.clamp(min=0.0)  # NOTE: >= 0 in exact arithmetic; rounding may leave -1e-16


def entropy_amax(hist: torch.Tensor, width: float, amax: float, levels: int = LEVELS) -> float:
    """The entropy calibrator's threshold for `hist` (bin width `width`): (i + 0.5) widths for the i of least
    KL divergence (the smallest such i on a tie), and never beyond `amax`."""
    if float(hist.sum()) == 0:
        return 0.0
    divergences = kl_divergences(hist, levels)
    # NOTE: candidates within rounding of the least are a tie (several i can represent the data exactly)
    tied = divergences <= divergences.min() + _TIE
    best = int(torch.nonzero(tied)[0]) + levels
    return min((best + 0.5) * width, amax)


def amaxes(collector: Collector, method: str, percentile: float = 99.99) -> dict[str, float]:
    """amax per observed tensor by `method` (one of METHODS)."""
    _check_method(method, percentile)
    found: dict[str, float] = {}
    for name in collector.names:
        amax = collector.amax(name)
        if method == "minmax" or amax == 0:
            found[name] = amax
            continue
        hist, top = collector.histogram(name)
        width = top / collector.bins
        value = percentile_amax(hist, width, percentile) if method == "percentile" else entropy_amax(hist, width, amax)
        found[name] = min(value, amax)
    return found


def calibrate(collector: Collector, method: str, percentile: float = 99.99,
              say: Progress | None = None) -> dict[str, float]:
    """The INT8 scale (amax / 127) per observed tensor. A tensor that was zero on every sample gets ZERO_SCALE,
    and `say` is told which (a line starting 'warning:')."""
    scales: dict[str, float] = {}
    zeros: list[str] = []
    for name, amax in amaxes(collector, method, percentile).items():
        if amax > 0:
            scales[name] = amax / QMAX
        else:
            scales[name] = ZERO_SCALE
            zeros.append(name)
    if zeros and say is not None:
        shown = ", ".join(map(repr, zeros[:10])) + (f" and {len(zeros) - 10} more" if len(zeros) > 10 else "")
        say(f"warning: {len(zeros)} tensor(s) were zero on every calibration sample, scale {ZERO_SCALE:g}: {shown}")
    return scales


def _check_method(method: str, percentile: float) -> None:
    if method not in METHODS:
        raise BrazeError(f"unknown calibrator {method!r}; braze has {', '.join(METHODS)}")
    if method == "percentile" and (isinstance(percentile, bool) or not isinstance(percentile, (int, float))
                                   or not 0 < percentile <= 100):
        raise BrazeError(f"percentile={percentile!r}: a number above 0 and at most 100 (e.g. 99.99)")


def _xlogx(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x * torch.log(torch.where(x > 0, x, 1.0)), 0.0)


# -- running the graph --------------------------------------------------------------------------------------

def collect(graph: Graph, samples: Sequence[Mapping[str, torch.Tensor]], tensor_names: Iterable[str],
            device: torch.device | str = "cpu", progress: bool | None = None, histogram: bool = True,
            collector: Collector | None = None) -> Collector:
    """Run `graph` with the reference evaluator on each sample (checked feeds, e.g. from `load_samples`) on
    `device`, observing the tensors named (graph inputs or node outputs of its top level) into `collector` (a new
    one on `device` if None); `progress` shows a per-sample counter (None: where stderr is a terminal)."""
    device = torch.device(device)
    wanted = _observed(graph, list(tensor_names))
    collector = collector or Collector(device, histogram=histogram)
    inputs = {id(t) for t in graph.inputs if id(t) in wanted}
    # NOTE: constants moved to the device once, given as outer values (they take precedence over t.value)
    constants = {id(t): t.value.to(device) for t in graph.constants()}  # type: ignore[union-attr]

    def observe(t: Tensor, value: Any) -> None:
        if id(t) in wanted:
            collector.observe(t.name, value)

    counter = Counter("calibrating", len(samples), progress)
    with torch.inference_mode():
        for index, feed in enumerate(samples):
            where = f"sample {index}"
            missing = [t.name for t in graph.inputs if t.name not in feed]
            if missing:
                raise BrazeError(f"calibration {where} has no value for input(s) {', '.join(map(repr, missing))}")
            values = [feed[t.name].to(device) for t in graph.inputs]
            for t, v in zip(graph.inputs, values):
                if id(t) in inputs:
                    collector.observe(t.name, v)
            try:
                run_graph(graph, values, constants, device, observe=observe)
            except BrazeError:
                raise
            except Exception as e:
                raise ExecutionError(f"calibration run of {where} failed: {type(e).__name__}: "
                                     f"{first_line(e, 300)}") from e
            collector.check(where)
            counter(index + 1)
    return collector


def _observed(graph: Graph, names: list[str]) -> dict[int, Tensor]:
    tensors = graph.tensors()
    unknown = [n for n in names if n not in tensors]
    if unknown:
        raise BrazeError(f"calibration asked for tensor(s) {', '.join(map(repr, unknown[:10]))} that graph "
                         f"{graph.name!r} does not have at its top level")
    chosen = [tensors[n] for n in names]
    constants = [t.name for t in chosen if t.is_constant]
    if constants:
        raise BrazeError(f"tensor(s) {', '.join(map(repr, constants[:10]))} are constants: weights are quantized "
                         f"from their values, not calibrated")
    ints = [f"{t.name!r} ({t.dtype})" for t in chosen if t.dtype is not None and not t.dtype.is_floating]
    if ints:
        raise BrazeError(f"tensor(s) {', '.join(ints[:10])} are not float: only float tensors are calibrated")
    return {id(t): t for t in chosen}


__all__ = ["BINS", "Collector", "LEVELS", "METHODS", "QMAX", "ZERO_SCALE", "amaxes", "calibrate", "collect",
           "entropy_amax", "kl_divergences", "percentile_amax"]
