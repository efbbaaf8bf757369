"""braze against its peers, side by side in one process on one GPU: PyTorch eager and torch.compile
(default, reduce-overhead, max-autotune), on the same models with the same weights, FP16.

    python benchmarks/run.py --models resnet50,bert --batches resnet50=1,256 bert=1,64 \
        --modes eager,default,reduce-overhead,max-autotune --out benchmarks/results

Models: torchvision's ResNet-50 and a BERT-base encoder (sequence 128) from transformers, both with
seeded random weights (nothing is downloaded). braze builds its engine from the ONNX export of the
same module. Every timing is the median of CUDA-event-timed runs after a warm-up, inputs random.
The table (median ms, items/s, braze's speed-up over each peer) and the build times are printed
and written, with the device and versions, to --out as Markdown and JSON.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import braze  # noqa: E402
from braze.testing import rel_l2  # noqa: E402


def resnet50() -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).eval()


class BertEncoder(torch.nn.Module):
    """transformers' BertModel (bert-base-uncased configuration, random weights), last hidden state out."""

    def __init__(self, attn: str):
        super().__init__()
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        self.bert = BertModel(BertConfig(attn_implementation=attn), add_pooling_layer=False).eval()

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def make_model(name: str, for_export: bool = False) -> torch.nn.Module:
    if name == "resnet50":
        return resnet50()
    return BertEncoder("eager" if for_export else "sdpa")


def make_inputs(name: str, batch: int, device: str) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    if name == "resnet50":
        return (torch.randn(batch, 3, 224, 224, generator=g).to(device),)
    ids = torch.randint(0, 30522, (batch, 128), generator=g)
    mask = torch.ones(batch, 128, dtype=torch.int64)
    mask[:, 100:] = 0
    return ids.to(device), mask.to(device)


def cuda_time(fn, warmup: int = 20, runs: int = 100) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        times.append((start, stop))
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in times)


def export_onnx(name: str, batch: int) -> bytes:
    model = make_model(name, for_export=True)
    args = make_inputs(name, batch, "cpu")
    names = ["input"] if name == "resnet50" else ["input_ids", "attention_mask"]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, buf, input_names=names, output_names=["output"], opset_version=17,
                          dynamo=False, do_constant_folding=True)
    return buf.getvalue()


def bench_braze(name: str, batch: int, cache: str, reference: torch.Tensor, precision: str = "fp16") -> dict:
    onnx_bytes = export_onnx(name, batch)
    calibration = None
    if "int8" in precision:  # NOTE: for speed only: seeded inputs stand in for data (the zoo's weights are seeded too)
        names = [t.name for t in braze.parse_onnx(onnx_bytes).inputs]
        calibration = braze.Calibration(data=[{n: x.cpu().numpy() for n, x in zip(names, make_inputs(name, batch, "cpu"))}
                                              for _ in range(1)])
    started = time.perf_counter()
    engine = braze.Builder("cuda").build(onnx_bytes, braze.BuilderConfig(precision=precision, timing_cache=cache,
                                                                          calibration=calibration))
    build_s = time.perf_counter() - started
    blob = engine.serialize()
    torch.cuda.synchronize()
    started = time.perf_counter()
    loaded = braze.Runtime().load(blob)
    ctx = loaded.create_execution_context()
    inputs = make_inputs(name, batch, "cuda")
    feeds = {b.name: x for b, x in zip(loaded.inputs, inputs)}
    first = ctx.infer(feeds)["output"]
    torch.cuda.synchronize()
    load_s = time.perf_counter() - started
    for b, x in zip(loaded.inputs, inputs):
        ctx.input_buffer(b.name).copy_(x)
    static = {b.name: ctx.input_buffer(b.name) for b in loaded.inputs}
    ms = cuda_time(lambda: ctx.execute_async(static))
    return {"ms": ms, "build_s": build_s, "load_s": load_s, "layers": loaded.num_layers,
            "memory_bytes": loaded.device_memory_size, "arena_bytes": loaded.plan.memory.arena_size,
            "rel_l2_vs_eager": rel_l2(first.float(), reference.float())}


def bench_torch(name: str, batch: int, mode: str) -> tuple[dict, torch.Tensor]:
    model = make_model(name).cuda().half()
    inputs = make_inputs(name, batch, "cuda")
    if name == "resnet50":
        inputs = (inputs[0].half(),)
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) + \
        sum(b.numel() * b.element_size() for b in model.buffers())
    held = weights + sum(x.numel() * x.element_size() for x in inputs)
    fn = model
    started = time.perf_counter()
    if mode != "eager":
        torch._dynamo.reset()
        fn = torch.compile(model, mode=None if mode == "default" else mode)
    with torch.no_grad():
        out = fn(*inputs).detach().clone()  # NOTE: a CUDA-graph runner overwrites its outputs on the next run
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - started
        torch.cuda.reset_peak_memory_stats()
        ms = cuda_time(lambda: fn(*inputs))
        peak = torch.cuda.max_memory_allocated() - held  # activations (and any graph pools) beyond weights and inputs
    return {"ms": ms, "compile_s": compile_s, "activation_peak_bytes": peak, "weights_bytes": weights}, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet50,bert")
    p.add_argument("--batches", nargs="+", default=["resnet50=1,256", "bert=1,64"])
    p.add_argument("--modes", default="eager,default,reduce-overhead,max-autotune")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--timing-cache", default="/tmp/braze_timing_cache.json")
    p.add_argument("--precisions", default="fp16", help="braze builds to run, e.g. fp16,fp16+int8")
    args = p.parse_args()
    batches = {k: [int(b) for b in v.split(",")] for k, v in (item.split("=") for item in args.batches)}
    modes = args.modes.split(",")
    rows = []
    for name in args.models.split(","):
        for batch in batches.get(name, [1]):
            peers = {}
            reference = None
            for mode in modes:
                try:
                    result, out = bench_torch(name, batch, mode)
                except Exception as e:
                    print(f"[E] {name} bs{batch} torch {mode} failed: {type(e).__name__}: {e}", flush=True)
                    continue
                peers[mode] = result
                reference = out if reference is None else reference
                print(f"[I] {name} bs{batch} torch {mode}: {result['ms']:.4f} ms (compile {result['compile_s']:.1f} s)",
                      flush=True)
            for precision in args.precisions.split(","):
                try:
                    mine = bench_braze(name, batch, args.timing_cache, reference, precision.replace("+", ","))
                except Exception as e:  # report the peers' numbers even if braze fails on this model
                    print(f"[E] {name} bs{batch} braze {precision} failed: {type(e).__name__}: {e}", flush=True)
                    continue
                print(f"[I] {name} bs{batch} braze {precision}: {mine['ms']:.4f} ms (build {mine['build_s']:.1f} s, "
                      f"rel L2 vs eager {mine['rel_l2_vs_eager']:.2e})", flush=True)
                rows.append({"model": name, "batch": batch, "precision": precision, "braze": mine, "peers": peers})
    report(rows, Path(args.out))
    return 0


def report(rows: list[dict], out: Path) -> None:
    props = torch.cuda.get_device_properties(0)
    env = {"device": props.name, "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "braze": braze.__version__, "python": platform.python_version(),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    lines = [f"# braze vs PyTorch on {props.name} (FP16, medians)", "",
             ", ".join(f"{k} {v}" for k, v in env.items()), "",
             "| model | batch | runner | median ms | items/s | braze speed-up | build / compile s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["braze"]
        lines.append(f"| {r['model']} | {r['batch']} | **braze {r.get('precision', 'fp16')}** | {b['ms']:.4f} | {r['batch'] * 1000 / b['ms']:,.0f} | "
                     f"- | {b['build_s']:.1f} |")
        for mode, peer in r["peers"].items():
            lines.append(f"| {r['model']} | {r['batch']} | torch {mode} | {peer['ms']:.4f} | "
                         f"{r['batch'] * 1000 / peer['ms']:,.0f} | {peer['ms'] / b['ms']:.2f}x | {peer['compile_s']:.1f} |")
    lines += ["", "| model | batch | braze load+context+first inference s | braze device memory MiB "
              "(arena + graph pool) | peak activation MiB per peer | braze rel L2 vs eager |", "|---|---|---|---|---|---|"]
    for r in rows:
        b = r["braze"]
        peaks = ", ".join(f"{m} {p['activation_peak_bytes'] / 2**20:.0f}" for m, p in r["peers"].items())
        lines.append(f"| {r['model']} | {r['batch']} | {b['load_s']:.2f} | {b['memory_bytes'] / 2**20:.0f} "
                     f"({b['arena_bytes'] / 2**20:.0f} + {(b['memory_bytes'] - b['arena_bytes']) / 2**20:.0f}) | "
                     f"{peaks} | {b['rel_l2_vs_eager']:.2e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    stamp = env["date"].replace(":", "").replace("-", "")[:13]
    (out / f"{stamp}.md").write_text(text)
    (out / f"{stamp}.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
