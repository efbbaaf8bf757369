"""braze's CPU backend against onnxruntime, side by side in one process: every zoo model at batch 1,
braze unoptimized (level 0) and optimized (level 3), medians of each runner's block of runs.

    python benchmarks/cpu.py [--models resnet50,mobilenetv2,bert,vit] [--runs 15] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import braze  # noqa: E402
from braze import zoo  # noqa: E402


def measure(name: str, runs: int) -> dict:
    model = zoo.load(name)
    feeds = zoo.sample_inputs(name)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    engines = {level: braze.Builder("cpu").build(model, braze.BuilderConfig(shapes=zoo.default_shapes(name),
                                                                             optimization_level=level))
               for level in (0, 3)}
    contexts = {level: e.create_execution_context() for level, e in engines.items()}
    runners = {"onnxruntime": lambda: session.run(None, feeds),
               "braze O0": lambda: contexts[0].infer(feeds),
               "braze O3": lambda: contexts[3].infer(feeds)}
    # NOTE: each runner is timed in a block of its own, after a warm-up: interleaving them would charge one
    # runtime for the other's thread pool still spinning (onnxruntime's threads spin after a run).
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for key, run in runners.items():
        for _ in range(3):
            run()
        for _ in range(runs):
            started = time.perf_counter()
            run()
            samples[key].append((time.perf_counter() - started) * 1000)
    return {"model": name, "nodes": len(model.graph.node), "layers_O0": engines[0].num_layers,
            "layers_O3": engines[3].num_layers, **{k: statistics.median(v) for k, v in samples.items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet50,mobilenetv2,bert,vit")
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    rows = [measure(name, args.runs) for name in args.models.split(",")]
    env = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "onnxruntime": ort.__version__, "braze": braze.__version__,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    lines = [f"# braze CPU backend vs onnxruntime (batch 1, FP32, {env['threads']} threads, medians)", "",
             ", ".join(f"{k} {v}" for k, v in env.items()), "",
             "| model | ONNX nodes | layers O0 -> O3 | onnxruntime ms | braze O0 ms | braze O3 ms | O3 vs O0 | O3 vs onnxruntime |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['nodes']} | {r['layers_O0']} -> {r['layers_O3']} | {r['onnxruntime']:.2f} | "
                     f"{r['braze O0']:.2f} | {r['braze O3']:.2f} | {r['braze O0'] / r['braze O3']:.2f}x | "
                     f"{r['onnxruntime'] / r['braze O3']:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = env["date"].replace(":", "").replace("-", "")[:13]
    (out / f"cpu-{stamp}.md").write_text(text)
    (out / f"cpu-{stamp}.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
