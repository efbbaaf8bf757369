"""Choosing a tactic and configuration per layer.

Level 0 (and the CPU) takes the first tactic that supports the layer, with its heuristic default.
Higher levels time every (tactic, configuration) candidate on the layer's real shapes, on the
target, and keep the fastest; a candidate that fails, or whose output disagrees with the op's reference
implementation beyond the dtype's tolerance (NaN and infinity included), is dropped. The timer is a
parameter (CUDA events on the GPU; tests pass a fake with known times). Decisions are recorded in the
timing cache by layer signature, so a rebuild or another model with the same layers skips the timing.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from ..device import Target
from ..engine import LayerChoice
from ..errors import UnsupportedError, first_line
from ..ir import DType, Graph, Node, subgraphs
from ..kernels import tactics_for
from ..kernels.tactic import Tactic, detached_from
from ..ops import REGISTRY
from ..ops.kinds import Kind, is_kind
from ..ops.opdef import input_dtypes
from ..ops.subgraph import has_random
from ..progress import Progress
from ..testing import QUANTIZED_STEPS, rel_l2, tolerance
from ..tune import TimingCache, layer_key, time_kernel
from ..tune.timing import L2Flusher

# NOTE: called as timer(run, device, flush=...) -> median milliseconds of run(); time_kernel on the GPU, a fake in tests
Timer = Callable[..., float]


def choose_tactics(graph: Graph, target: Target, level: int, say: Progress, cache: TimingCache | None = None,
                   timer: Timer = time_kernel, tune: bool | None = None) -> dict[str, LayerChoice]:
    """A tactic and configuration per layer; timed candidates where `tune` (by default: on CUDA) and level > 0."""
    candidates = tactics_for(target)
    missing = [n for n in graph.nodes if not any(t.supports(n, target) for t in candidates)]
    if missing:
        listing = ", ".join(f"{n.name!r} ({n.op})" for n in missing[:5])
        raise UnsupportedError(f"no {target.kind} tactic can run {len(missing)} layer(s): {listing}")
    tune = target.is_cuda if tune is None else tune
    tuner = _Tuner(target, level, say, cache, timer) if tune and level > 0 else None
    chosen: dict[str, LayerChoice] = {}
    for index, node in enumerate(graph.nodes):
        options = [(t, c) for t in candidates if t.supports(node, target) for c in t.configs(node, target, level)]
        if tuner is None or len(options) == 1:
            tactic, config = options[0]
            chosen[node.name] = LayerChoice(tactic.name, config)
        else:
            chosen[node.name] = tuner.choose(node, options, f"{index + 1}/{len(graph.nodes)}")
    if tuner is not None:
        say(f"tuned {tuner.timed} layers in {tuner.seconds:.1f} s"
            + (f"; timing cache: {cache.hits} hits, {cache.misses} misses" if cache is not None else ""))
    else:
        say(f"tactics chosen for {len(chosen)} layers")
    return chosen


class _Tuner:
    def __init__(self, target: Target, level: int, say: Progress, cache: TimingCache | None, timer: Timer):
        self.target, self.level, self.say, self.cache, self.timer = target, level, say, cache, timer
        self.flush = L2Flusher(target.device)
        self.timed = 0
        self.seconds = 0.0

    def choose(self, node: Node, options: list[tuple[Tactic, dict[str, Any]]], where: str) -> LayerChoice:
        key = layer_key(node)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None and any(t.name == hit["tactic"] and c == hit["config"] for t, c in options):
                return LayerChoice(hit["tactic"], dict(hit["config"]))
        started = time.perf_counter()
        inputs = _sample_inputs(node, self.target.device)
        timings: dict[str, float] = {}
        reference = _reference(node, inputs, self.target.device)  # None: the first candidate that runs is the yardstick
        best: tuple[float, Tactic, dict[str, Any]] | None = None
        for tactic, config in options:
            label = f"{tactic.name}{config or ''}"
            try:
                kernel = tactic.compile(node, config, self.target)
                owned = getattr(tactic, "owned_inputs", ())
                args = [None if x is None or (i in owned and t is not None and t.is_constant) else x
                        for i, (x, t) in enumerate(zip(inputs, node.inputs))]
                outs = _outputs(node, self.target.device) if tactic.writes_output else [None] * len(node.outputs)
                produced = kernel(args, outs)
                results = list(produced) if produced is not None else outs
                _synchronize(self.target.device)
            except Exception as e:  # a candidate that cannot run this layer is simply not chosen
                self._drop(timings, label, where, node, f"failed ({first_line(e, 120)})")
                continue
            if reference is None:
                reference = [r.float() for r in results]
            elif not _agrees(results, reference, node):
                self._drop(timings, label, where, node, "disagrees with the reference; not used")
                continue
            if tactic.moves_no_data:
                ms = 0.0  # NOTE: timing a host-only view measures host noise, which could lose to a copy kernel
            elif not getattr(kernel, "capturable", True):
                ms = float("inf")
            else:
                try:
                    ms = self.timer(lambda: kernel(args, outs), self.target.device, flush=self.flush)
                except Exception as e:  # NOTE: a kernel that ran once may still fail when repeated
                    self._drop(timings, label, where, node, f"failed while timed ({first_line(e, 120)})")
                    continue
            timings[label] = ms
            if best is None or ms < best[0]:
                best = (ms, tactic, config)
        if best is None:
            raise UnsupportedError(f"layer {node.name!r} ({node.op}): no CUDA tactic ran it "
                                   f"({', '.join(timings)})")
        ms, tactic, config = best
        self.timed += 1
        self.seconds += time.perf_counter() - started
        self.say(f"tuned {where} {node.name} ({node.op}): {tactic.name} {config or ''} {ms:.4f} ms "
                 f"of {len(options)} candidates")
        if self.cache is not None:
            self.cache.put(key, tactic.name, config, ms, timings)
        return LayerChoice(tactic.name, config)

    def _drop(self, timings: dict[str, float], label: str, where: str, node: Node, why: str) -> None:
        timings[label] = float("nan")
        self.say(f"  {where} {node.name}: {label} {why}")


def _reference(node: Node, inputs: list[torch.Tensor | None], device: torch.device) -> list[torch.Tensor] | None:
    """The op's reference implementation on the sample inputs, on the target: what every candidate must agree
    with, so that a wrong kernel tried first cannot make the right ones look wrong. None for an op that draws
    random numbers (no single right answer) or whose reference cannot run here."""
    try:
        opdef = REGISTRY.for_node(node)
        if opdef.random or has_random(list(subgraphs(node))):
            return None
        results = detached_from(opdef.run(list(inputs), node.attrs, len(node.outputs), input_dtypes(node)), inputs)
        _synchronize(device)
    except Exception:  # NOTE: e.g. a reference that runs only on the CPU; the candidates still run it
        return None
    if len(results) != len(node.outputs) or not all(isinstance(r, torch.Tensor) for r in results):
        return None
    return [r.float() for r in results]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _sample_inputs(node: Node, device: torch.device) -> list[torch.Tensor | None]:
    """Real constants; random floats for activations (channels-last where the layer's layout says so, as
    they will arrive at run time); zeros for integer inputs (always valid indices) and emulated types."""
    gen = torch.Generator(device=device).manual_seed(0)
    channels_last = node.attrs.get("layout") == "nhwc"
    quantized = is_kind(node, Kind.QCONV, Kind.QGEMM)
    values: list[torch.Tensor | None] = []
    for t in node.inputs:
        if t is None:
            values.append(None)
        elif t.value is not None:
            values.append(t.value.to(device))
        elif quantized and t.dtype in (DType.int8, DType.uint8):  # NOTE: INT8 activations: the full range, not zeros
            low, high = (-128, 128) if t.dtype == DType.int8 else (0, 256)
            values.append(torch.randint(low, high, t.shape, generator=gen, device=device, dtype=t.dtype.torch))
        elif t.dtype.is_floating and not t.dtype.emulated:  # type: ignore[union-attr]
            x = torch.randn(t.shape, generator=gen, device=device).to(t.dtype.torch)  # type: ignore[arg-type,union-attr]
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            values.append(x)
        else:
            values.append(torch.zeros(t.shape, dtype=t.dtype.torch, device=device))  # type: ignore[arg-type,union-attr]
    return values


def _outputs(node: Node, device: torch.device) -> list[torch.Tensor | None]:
    return [torch.empty(t.shape, dtype=t.dtype.torch, device=device) if t.is_static else None  # type: ignore[arg-type,union-attr]
            for t in node.outputs]


def _agrees(results: list[torch.Tensor], reference: list[torch.Tensor], node: Node) -> bool:
    """Every result has the reference's shape and, for floats, its NaNs and infinities where the reference
    has them and its finite values within ten times the dtype's tolerance (integers exactly). An INT8 layer's
    requantized output may be one step off (two INT8 kernels may round a tie differently)."""
    for r, ref, t in zip(results, reference, node.outputs):
        if r is None or tuple(r.shape) != tuple(ref.shape):
            return False
        if is_kind(node, Kind.QCONV, Kind.QGEMM) and not r.dtype.is_floating_point:
            if (r.to(torch.int32) - ref.to(torch.int32)).abs().max() > QUANTIZED_STEPS:
                return False
            continue
        if r.dtype.is_floating_point:
            r, ref = r.float(), ref.float()
            finite = torch.isfinite(ref)
            if not torch.equal(torch.isnan(r), torch.isnan(ref)) or not torch.equal(r[ref.isinf()], ref[ref.isinf()]):
                return False
            if not rel_l2(r[finite], ref[finite]) <= 10 * tolerance(t.dtype).rel_l2:  # type: ignore[arg-type]
                return False
        elif not torch.equal(r, ref.to(r.dtype)):
            return False
    return True
