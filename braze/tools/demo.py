"""`braze demo`: the main job end to end on a built-in model.

Exports a zoo model to ONNX, builds an engine, saves it, loads it back, runs it, and prints the
latency, the throughput and the largest difference from the reference (onnxruntime when it is
installed, the original PyTorch model otherwise).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .. import zoo
from ..build import Builder, BuilderConfig
from ..engine import Runtime
from ..progress import Counter
from ..testing import max_abs_diff, rel_l2, tolerance
from .common import human_bytes, info, positive_int
from .timing import measure


def register(sub) -> None:
    p = sub.add_parser("demo", help="build, save, load and run an engine for a built-in model; compare with a reference")
    p.add_argument("--model", default="resnet50", choices=zoo.names(), help="zoo model (default resnet50)")
    p.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--iterations", type=positive_int, default=20, help="timed runs (default 20)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a live count of the timed runs on stderr (default: where stderr is a terminal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import __version__

    builder = Builder(device=args.device)  # NOTE: a wrong device is refused before the export
    info(f"braze {__version__} demo: zoo:{args.model}, batch {args.batch}, device {args.device}")
    info(f"exporting {args.model} to ONNX with PyTorch's exporter")
    t0 = time.perf_counter()
    model = zoo.load(args.model)
    info(f"exported {args.model} to ONNX in {time.perf_counter() - t0:.1f} s: {len(model.graph.node)} nodes")

    shapes = zoo.default_shapes(args.model, args.batch)
    t0 = time.perf_counter()
    engine = builder.build(model, BuilderConfig(shapes=shapes, progress=lambda m: info(f"  {m}")))
    info(f"built the engine in {time.perf_counter() - t0:.2f} s: {engine.num_layers} layers, "
         f"{human_bytes(engine.device_memory_size)} of activations per context")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.model}.engine"
        engine.save(path)
        t0 = time.perf_counter()
        engine = Runtime().load(path)
        info(f"saved {path.name} ({human_bytes(path.stat().st_size)}) and loaded it back in "
             f"{time.perf_counter() - t0:.2f} s")

    feeds = zoo.sample_inputs(args.model, args.batch)
    ctx = engine.create_execution_context()
    outputs = ctx.infer(feeds)
    sync = torch.cuda.synchronize if engine.target.is_cuda else None
    counter = Counter("timed runs", args.iterations, args.progress, prefix="[I] ")
    stats = measure(lambda: ctx.infer(feeds), warmup=3, iterations=args.iterations, sync=sync, on_run=counter)
    info(f"latency: {stats.summary('inferences')}")
    if args.batch > 1:
        info(f"         {stats.throughput * args.batch:.1f} items/s at batch {args.batch}")

    reference, ref_name = _reference(args.model, model, feeds)
    ok = True
    for name, value in outputs.items():
        expected = reference[name]
        err = rel_l2(value, expected)
        bound = tolerance(value.dtype).rel_l2
        passed = err <= bound
        ok &= passed
        info(f"output {name!r} {value.dtype}{list(value.shape)}: max abs diff {max_abs_diff(value, expected):.3g}, "
             f"rel L2 {err:.3g} vs {ref_name} (bound {bound:g}) {'PASSED' if passed else 'FAILED'}")
    return 0 if ok else 1


def _reference(name: str, model, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    try:
        import onnxruntime as ort
    except ImportError:
        module = zoo.torch_module(name)
        with torch.no_grad():
            out = module(*(torch.from_numpy(feeds[i.name]) for i in model.graph.input))
        outs = out if isinstance(out, (tuple, list)) else [out]
        return {o.name: t.numpy() for o, t in zip(model.graph.output, outs)}, "PyTorch"
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds))), "onnxruntime"
