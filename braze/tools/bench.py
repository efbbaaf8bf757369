"""`braze bench`: the trtexec of braze.

Builds (or loads) an engine, warms it up, then times it for a duration: latency percentiles and
throughput end to end (host inputs in, host outputs out) and, on CUDA, the GPU compute time of one
graph replay and the host-to-device and device-to-host copy times, each with CUDA events. With
--profile, a per-layer table: each layer's time, its share and its tactic. --json prints it all.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import torch

from ..engine import Engine
from .common import info, info_to_stderr, non_negative_float, random_inputs, to_json
from .inspect import layer_label
from .timing import LatencyStats, stats_of


def register(sub, add_build_options, load_or_build) -> None:
    p = sub.add_parser("bench", help="time an engine: latency percentiles, throughput, GPU compute time, per-layer profile")
    p.add_argument("model", help="engine file, ONNX file or zoo:NAME")
    p.add_argument("--warmup", type=non_negative_float, default=0.5, help="seconds of warm-up (default 0.5)")
    p.add_argument("--duration", type=non_negative_float, default=3.0,
                   help="seconds of timed runs per measurement (default 3)")
    p.add_argument("--profile", action="store_true", help="also time each layer")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_build_options(p)
    p.set_defaults(func=lambda args: run(args, load_or_build))


def run(args: argparse.Namespace, load_or_build) -> int:
    log = info_to_stderr if args.json else info
    engine = load_or_build(args.model, args, log)
    measurements = ("end to end" + (", GPU compute, H2D and D2H" if engine.target.is_cuda else "")
                    + (", then each layer" if args.profile else ""))
    log(f"timing {measurements}: {args.warmup:g} s of warm-up and {args.duration:g} s each")
    result = benchmark(engine, warmup=args.warmup, duration=args.duration, profile=args.profile)
    if args.json:
        print(to_json(result))
        return 0
    for line in format_result(result):
        info(line)
    return 0


def benchmark(engine: Engine, *, warmup: float = 0.5, duration: float = 3.0, profile: bool = False,
              seed: int = 0) -> dict[str, Any]:
    feeds = random_inputs(engine.inputs, seed)
    batch = _batch(engine)
    ctx = engine.create_execution_context()
    cuda = engine.target.is_cuda
    sync = (lambda: torch.cuda.synchronize(engine.target.device)) if cuda else (lambda: None)
    end_to_end = _timed(lambda: ctx.infer(feeds), warmup, duration, sync)
    result: dict[str, Any] = {
        "device": str(engine.target), "batch": batch, "layers": engine.num_layers,
        "cuda_graph": ctx.uses_cuda_graph,
        "eager_reason": ctx.eager_reason if cuda else None,
        "device_memory_bytes": engine.device_memory_size,
        "end_to_end_ms": end_to_end.as_dict(),
        "throughput_per_s": end_to_end.throughput * batch,
    }
    if cuda:
        device_feeds = {k: torch.from_numpy(v).to(engine.target.device) for k, v in feeds.items()}
        for name, value in device_feeds.items():
            ctx.input_buffer(name).copy_(value)
        static = {b.name: ctx.input_buffer(b.name) for b in engine.inputs}
        compute = _events(lambda: ctx.execute_async(static), warmup, duration)
        outputs = ctx.execute_async(static)
        pinned_in = {k: torch.from_numpy(v).pin_memory() for k, v in feeds.items()}
        pinned_out = [torch.empty(o.shape, dtype=o.dtype, pin_memory=True) for o in outputs.values()]
        h2d = _events(lambda: [ctx.input_buffer(k).copy_(v, non_blocking=True) for k, v in pinned_in.items()],
                      warmup, duration / 3)
        d2h = _events(lambda: [h.copy_(o, non_blocking=True) for h, o in zip(pinned_out, outputs.values())],
                      warmup, duration / 3)
        result.update(gpu_compute_ms=compute.as_dict(), h2d_ms=h2d.as_dict(), d2h_ms=d2h.as_dict(),
                      throughput_per_s=compute.throughput * batch)
    if profile:
        layers = ctx.profile(feeds)
        total = sum(ms for _, ms in layers) or 1.0
        result["profile"] = [
            {"layer": layer_label(step.node.origin, step.node.name), "op": step.node.op, "tactic": step.tactic,
             "ms": ms, "share": ms / total}
            for step, (_, ms) in zip(engine.steps, layers)]
    return result


def format_result(r: dict[str, Any]) -> list[str]:
    lines = [f"=== Performance summary ({r['device']}, batch {r['batch']}, {r['layers']} layers"
             f"{', one CUDA graph' if r['cuda_graph'] else ''}) ==="]
    if r.get("eager_reason"):
        lines.append(f"Note: no CUDA graph: {r['eager_reason']}")
    lines.append(f"Throughput: {r['throughput_per_s']:.1f} items/s")
    lines.append("Latency (end to end, host in and out): " + _stats_line(r["end_to_end_ms"]))
    if "gpu_compute_ms" in r:
        lines.append("GPU Compute Time: " + _stats_line(r["gpu_compute_ms"]))
        lines.append("H2D Latency: " + _stats_line(r["h2d_ms"]))
        lines.append("D2H Latency: " + _stats_line(r["d2h_ms"]))
    lines.append(f"Device memory per context: {r['device_memory_bytes'] / 2**20:.2f} MiB")
    if "profile" in r:
        lines.append("=== Per-layer profile (each layer timed alone on its real inputs"
                     f"{', in a CUDA graph' if r['cuda_graph'] else ''}) ===")
        total = sum(p["ms"] for p in r["profile"])
        whole = (f"; the engine's GPU compute time {r['gpu_compute_ms']['median']:.4f} ms"
                 if "gpu_compute_ms" in r else "")
        lines.append(f"Sum of layer times: {total:.4f} ms{whole}")
        width = min(56, max(len(p["layer"]) for p in r["profile"]))
        lines.append(f"  {'Layer':<{width}}  {'Op':<18} {'Tactic':<18} {'ms':>9} {'share':>7}")
        for p in sorted(r["profile"], key=lambda p: -p["ms"]):
            name = p["layer"] if len(p["layer"]) <= width else p["layer"][: width - 3] + "..."
            lines.append(f"  {name:<{width}}  {p['op']:<18} {p['tactic']:<18} {p['ms']:9.4f} {100 * p['share']:6.1f}%")
    return lines


def _stats_line(s: dict[str, float]) -> str:
    return (f"min = {s['min']:.4f} ms, max = {s['max']:.4f} ms, mean = {s['mean']:.4f} ms, median = {s['median']:.4f} ms, "
            f"percentile(90%) = {s['p90']:.4f} ms, percentile(95%) = {s['p95']:.4f} ms, percentile(99%) = {s['p99']:.4f} ms")


def _batch(engine: Engine) -> int:
    shapes = [b.shape for b in engine.inputs if b.shape]
    return int(shapes[0][0]) if shapes and isinstance(shapes[0][0], int) and shapes[0][0] > 0 else 1


def _timed(fn: Callable[[], object], warmup: float, duration: float, sync: Callable[[], None]) -> LatencyStats:
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        fn()
    sync()
    samples: list[float] = []
    end = time.perf_counter() + duration
    while time.perf_counter() < end or len(samples) < 10:
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1000)
    return stats_of(samples)


def _events(fn: Callable[[], object], warmup: float, duration: float) -> LatencyStats:
    """GPU time of `fn` per call, CUDA events around each call, calls back to back."""
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        fn()
    torch.cuda.synchronize()
    pairs = []
    end = time.perf_counter() + duration
    while time.perf_counter() < end or len(pairs) < 10:
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        pairs.append((start, stop))
        if len(pairs) % 200 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    return stats_of([a.elapsed_time(b) for a, b in pairs])
