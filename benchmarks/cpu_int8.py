"""braze's CPU INT8 tactics (onednn_qconv, onednn_qgemm) against its FP32 CPU tactics (onednn_conv,
onednn_gemm) on the same layers, with 1 and 2 threads, beside the other INT8 kernels torch ships (the x86
quantized engine's conv2d on quantized tensors, torch._int_mm without its epilogue).

    python benchmarks/cpu_int8.py [--threads 1,2] [--seconds 4] [--out benchmarks/results]

Each kernel is called with its output planned (as an engine calls it), the kernels of one layer one call each
in turn; the table gives each one's fastest decile of calls (the machine may be shared), the JSON medians too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braze.device import Target  # noqa: E402
from braze.ir import DType, Node, Tensor  # noqa: E402
from braze.kernels.cpu.conv import OneDnnConvTactic  # noqa: E402
from braze.kernels.cpu.gemm import OneDnnGemmTactic  # noqa: E402
from braze.kernels.cpu.int8 import OneDnnQConvTactic, OneDnnQGemmTactic  # noqa: E402
from braze.ops.kinds import DOMAIN, Kind  # noqa: E402

CPU = Target.parse("cpu")
CL = torch.channels_last
# name, x shape, weight shape ([M, C/g, kh, kw] or [K, N]), group, stride, pad, activation, residual
CASES = [
    ("conv 1x64x56x56 3x3 ->64 relu", (1, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, "relu", False),
    ("conv 1x256x14x14 3x3 ->256 relu", (1, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1, "relu", False),
    ("conv 1x256x56x56 1x1 ->64 relu", (1, 256, 56, 56), (64, 256, 1, 1), 1, 1, 0, "relu", False),
    ("conv 1x64x56x56 1x1 ->256 +residual relu", (1, 64, 56, 56), (256, 64, 1, 1), 1, 1, 0, "relu", True),
    ("depthwise 1x144x56x56 3x3 relu", (1, 144, 56, 56), (144, 1, 3, 3), 144, 1, 1, "relu", False),
    ("linear 1x512 ->1000", (1, 512), (512, 1000), 1, 0, 0, "none", False),
    ("linear 1x2048 ->1000", (1, 2048), (2048, 1000), 1, 0, 0, "none", False),
    ("BERT 128x768 @ 768x3072 gelu", (128, 768), (768, 3072), 1, 0, 0, "gelu", False),
    ("BERT 128x3072 @ 3072x768 +residual", (128, 3072), (3072, 768), 1, 0, 0, "none", True),
]


def _nodes(x_shape, w_shape, group, stride, pad, act, residual, out_dtype: DType):
    """The FP32 layer and its INT8 twin (int8 input, zero point 0; output `out_dtype`)."""
    g = torch.Generator().manual_seed(0)
    conv = len(w_shape) == 4
    w_q = torch.randint(-127, 128, w_shape, generator=g, dtype=torch.int8)
    channels = w_shape[0] if conv else w_shape[1]
    w_scale = torch.rand(channels, generator=g) * 0.01 + 1e-3
    w_f = (w_q.float() * w_scale.view(-1, 1, 1, 1)) if conv else w_q.float() * w_scale
    b = torch.randn(channels, generator=g)
    geometry = dict(strides=[stride] * 2, pads=[pad] * 4, dilations=[1, 1], group=group,
                    kernel_shape=list(w_shape[2:])) if conv else {}
    if conv:
        out = (x_shape[0], channels, (x_shape[2] + 2 * pad - w_shape[2]) // stride + 1,
               (x_shape[3] + 2 * pad - w_shape[3]) // stride + 1)
    else:
        out = (x_shape[0], channels)
    r_q = Tensor("r", DType.int8, out) if residual else None
    q_attrs = dict(x_scale=0.02, x_zero_point=0, activation=act, act_params=[], **geometry)
    if out_dtype.is_floating:
        q_attrs.update(output_dtype=1)
    else:
        q_attrs.update(out_scale=0.05, out_zero_point=0, output_dtype=3)
    if residual:
        q_attrs.update(residual_scale=0.05, residual_zero_point=0)
    fused = Node(Kind.FUSED_CONV if conv else Kind.FUSED_GEMM,
                 [Tensor("x", DType.float32, x_shape), Tensor("w", DType.float32, tuple(w_f.shape), w_f),
                  Tensor("b", DType.float32, (channels,), b)] + ([Tensor("r", DType.float32, out)] if residual else []),
                 [Tensor("y", DType.float32, out)], dict(activation=act, act_params=[], **geometry), name="fp32",
                 domain=DOMAIN)
    quant = Node(Kind.QCONV if conv else Kind.QGEMM,
                 [Tensor("x", DType.int8, x_shape), Tensor("w", DType.int8, w_shape, w_q),
                  Tensor("ws", DType.float32, (channels,), w_scale), Tensor("b", DType.float32, (channels,), b),
                  r_q], [Tensor("y", out_dtype, out)], q_attrs, name="int8", domain=DOMAIN)
    return fused, quant, w_q, w_scale, b


def _kernel(tactic, node: Node, channels_last: bool):
    """A call of the tactic's kernel on random inputs, its output planned."""
    assert tactic.supports(node, CPU), (tactic.name, node.op)
    kernel = tactic.compile(node, {}, CPU)
    args = []
    for i, t in enumerate(node.inputs):
        if t is None or i in tactic.owned_inputs:
            args.append(None)
            continue
        v = torch.randn(t.shape) if t.dtype == DType.float32 else torch.randint(-128, 128, t.shape, dtype=torch.int8)
        args.append(v.contiguous(memory_format=CL) if channels_last and v.dim() == 4 else v)
    y = node.outputs[0]
    out = torch.empty(y.shape, dtype=y.dtype.torch)
    out = out.contiguous(memory_format=CL) if channels_last and out.dim() == 4 else out
    return lambda: kernel(args, [out])


def _alternatives(x_shape, w_q, w_scale, b, group, stride, pad):
    """torch's other INT8 kernels for the layer: quantized::conv2d (x86 engine; requantized output only) for a
    convolution, torch._int_mm (int32 output, no epilogue) for a matrix product."""
    if w_q.dim() == 2:
        x = torch.randint(-128, 128, x_shape, dtype=torch.int8)
        return "_int_mm (no epilogue)", lambda: torch._int_mm(x, w_q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.quantized.engine = "x86"
        qx = torch._make_per_tensor_quantized_tensor(
            torch.randint(0, 256, x_shape, dtype=torch.uint8).contiguous(memory_format=CL), 0.02, 128)
        qw = torch._make_per_channel_quantized_tensor(w_q, w_scale.double(), torch.zeros(len(w_scale),
                                                                                           dtype=torch.int64), 0)
        packed = torch.ops.quantized.conv2d_prepack(qw, b, [stride] * 2, [pad] * 2, [1, 1], group)
    return "quantized.conv2d_relu (x86)", lambda: torch.ops.quantized.conv2d_relu(qx, packed, 0.05, 0)


def _time(fns: dict, seconds: float) -> dict[str, tuple[float, float]]:
    """Microseconds per call of each function, (fastest decile, median): one call of each in turn, for about
    `seconds` in all, so that a pause of the machine falls on every function alike."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
        fn()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[key].append((time.perf_counter() - t0) * 1e6)
    return {k: (sorted(v)[len(v) // 10], statistics.median(v)) for k, v in samples.items()}


def measure(case, threads: int, seconds: float) -> dict:
    name, x_shape, w_shape, group, stride, pad, act, residual = case
    torch.set_num_threads(threads)
    conv = len(w_shape) == 4
    fused, q_int8, w_q, w_scale, b = _nodes(x_shape, w_shape, group, stride, pad, act, residual, DType.int8)
    _, q_float, *_ = _nodes(x_shape, w_shape, group, stride, pad, act, residual, DType.float32)
    fp32_tactic, int8_tactic = (OneDnnConvTactic(), OneDnnQConvTactic()) if conv else \
        (OneDnnGemmTactic(), OneDnnQGemmTactic())
    alt_name, alt = _alternatives(x_shape, w_q, w_scale, b, group, stride, pad)
    fns = {"fp32": _kernel(fp32_tactic, fused, conv), "int8->int8": _kernel(int8_tactic, q_int8, conv),
           "int8->fp32": _kernel(int8_tactic, q_float, conv), "alt": alt}
    us = _time(fns, seconds)
    return {"layer": name, "threads": threads, **{f"{k} us": round(v[0], 1) for k, v in us.items()},
            **{f"{k} median us": round(v[1], 1) for k, v in us.items()}, "alt": alt_name}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--seconds", type=float, default=4.0, help="time per layer and thread count")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    rows = [measure(case, int(t), args.seconds) for t in args.threads.split(",") for case in CASES]
    caps = torch.cpu.get_capabilities()
    isa = ", ".join(k for k in ("avx512_vnni", "avx_vnni", "amx_int8") if caps.get(k)) or "no VNNI"
    header = (f"cpu {caps.get('cpu_name', platform.processor())} ({isa}), torch {torch.__version__}, "
              f"date {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    lines = ["# braze CPU INT8 tactics vs FP32 (fastest decile of calls, microseconds per layer)", "", header, "",
             "| layer | threads | FP32 onednn | INT8 int8->int8 | speedup | INT8 int8->fp32 | speedup | torch alternative |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, q, qf = r["fp32 us"], r["int8->int8 us"], r["int8->fp32 us"]
        lines.append(f"| {r['layer']} | {r['threads']} | {f} | {q} | {f / q:.2f}x | {qf} | {f / qf:.2f}x | "
                     f"{r['alt']}: {r['alt us']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M")
    (out / f"cpu-int8-{stamp}.md").write_text(text)
    (out / f"cpu-int8-{stamp}.json").write_text(json.dumps({"header": header, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
