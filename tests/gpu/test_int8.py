"""The CUDA INT8 tactics compiled on the GPU: every configuration of every tactic against the QGemm and QConv
references (the cases of tests/kernels/test_triton_int8.py, which runs them in the Triton interpreter), NaN and
infinities of a float residual, and a speed print: INT8 against FP16 for a 4096^3 GEMM and ResNet-50's
convolutions (run with -s to see it)."""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F

from braze.device import Target
from braze.kernels.cuda.int8 import TACTICS
from braze.ops.epilogue import ACTIVATIONS
from tests.kernels.test_triton_int8 import (GEOMETRIES, XS, run_reference, check, plant_nonfinite, qconv_case,
                                             qgemm_case, verify)


def _cuda() -> Target:
    return Target(torch.device("cuda"))


def _every_config(node, args, expected, what: str) -> int:
    target, ran = _cuda(), 0
    for tactic in TACTICS:
        if tactic.supports(node, target):
            for config in tactic.configs(node, target, 3):
                verify(tactic, node, args, expected, f"{what} {config}", config, target)
                ran += 1
    return ran


@pytest.mark.parametrize("x", list(XS))
@pytest.mark.parametrize("out", ["fp32", "fp16", "bf16", "int8", "uint8"])
@pytest.mark.parametrize("residual", [None, "fp16", "int8"])
def test_qgemm_every_config(x, out, residual):
    for lead, k, n in (((4, 50), 96, 72), ((300,), 70, 45), ((8,), 256, 64)):
        node, args, expected = qgemm_case(lead, k, n, x=x, out=out, residual=residual, activation="gelu")
        assert _every_config(node, args, expected, f"{lead} {k} {n}") >= 2


@pytest.mark.parametrize("geometry", GEOMETRIES + [((4, 64, 14, 14), 64, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
                                                   ((4, 64, 14, 14), 128, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1))])
@pytest.mark.parametrize("out", ["fp16", "int8", "uint8"])
@pytest.mark.parametrize("nhwc", [True, False])
def test_qconv_every_config(geometry, out, nhwc):
    node, args, expected = qconv_case(*geometry, out=out, residual="int8", nhwc=nhwc, activation="relu")
    assert _every_config(node, args, expected, str(geometry)) >= 1


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_and_nonfinite_residuals(activation):
    for node, args, _ in (qgemm_case((4, 50), 96, 72, activation=activation, out="fp32", residual="fp32"),
                          qconv_case(activation=activation, out="fp16", residual="fp32")):
        plant_nonfinite(args[4], 15)
        expected = run_reference(node.op, args, node.attrs)
        assert _every_config(node, args, expected, activation) >= 2
    for out in ("int8", "uint8"):
        for node, args, expected in (qgemm_case((4, 50), 96, 72, activation=activation, out=out),
                                     qconv_case(activation=activation, out=out)):
            assert _every_config(node, args, expected, f"{activation} {out}") >= 2


# ---- speed ---------------------------------------------------------------------------------------------------------

_FLUSH: list[torch.Tensor] = []


def _median_ms(fn, reps: int = 30) -> float:
    """Median time of `fn` replayed as a CUDA graph (as an execution context runs it: no Python launch cost), by
    CUDA events, the L2 cache flushed before each replay."""
    if not _FLUSH:
        _FLUSH.append(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    times = []
    for _ in range(reps):
        _FLUSH[0].zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _fastest(node, args, level: int = 1):
    """(ms, tactic name, config) of the fastest INT8 tactic and configuration, each checked first."""
    target, best = _cuda(), None
    dev = [None if a is None else a.cuda() for a in args]
    expected = run_reference(node.op, dev, node.attrs).cpu()
    t = node.outputs[0]
    out = torch.empty(t.shape, dtype=t.dtype.torch, device="cuda")
    if node.attrs.get("layout") == "nhwc":
        out = out.contiguous(memory_format=torch.channels_last)
    for tactic in TACTICS:
        if not tactic.supports(node, target):
            continue
        for config in tactic.configs(node, target, level):
            kernel = tactic.compile(node, config, target)
            feeds = [None if i in tactic.owned_inputs else a for i, a in enumerate(dev)]
            kernel(feeds, [out])
            check(out.cpu(), expected, f"{tactic.name} {config}", True)
            ms = _median_ms(lambda: kernel(feeds, [out]))
            if best is None or ms < best[0]:
                best = (ms, tactic.name, config)
    return best


def test_speed_int8_against_fp16():
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name()
    lines = [f"INT8 (braze tactics) against FP16 (cuBLAS / cuDNN channels-last) on {name}, torch {torch.__version__}"]
    n = 4096
    node, args, _ = qgemm_case((n,), n, n, x="int8", out="int8", activation="relu", bias=True, reference=False)
    a16, b16 = torch.randn(n, n, device="cuda", dtype=torch.float16), torch.randn(n, n, device="cuda",
                                                                               dtype=torch.float16)
    fp16 = _median_ms(lambda: torch.mm(a16, b16))
    ms, tactic, config = _fastest(node, args, level=3)
    lines.append(f"GEMM {n}^3: fp16 {fp16:.3f} ms ({2 * n**3 / fp16 / 1e9:.0f} TFLOP/s), int8 {ms:.3f} ms "
                 f"({2 * n**3 / ms / 1e9:.0f} TOP/s) x{fp16 / ms:.2f}, {tactic} {config}")
    a8 = torch.randint(-128, 128, (n, n), dtype=torch.int8, device="cuda")
    w8 = torch.randint(-128, 128, (n, n), dtype=torch.int8, device="cuda").t().contiguous().t()
    raw = _median_ms(lambda: torch._int_mm(a8, w8))
    lines.append(f"  torch._int_mm alone (no epilogue): {raw:.3f} ms")
    convs = {"resnet50 layer1 3x3 64->64 @56": ((128, 64, 56, 56), 64, (3, 3), (1, 1), (1, 1, 1, 1)),
             "resnet50 layer3 3x3 256->256 @14": ((128, 256, 14, 14), 256, (3, 3), (1, 1), (1, 1, 1, 1)),
             "resnet50 layer2 1x1 128->512 @28": ((128, 128, 28, 28), 512, (1, 1), (1, 1), (0, 0, 0, 0))}
    for label, (shape, m, kernel, strides, pads) in convs.items():
        node, args, _ = qconv_case(shape, m, kernel, strides, pads, x="int8", out="int8", activation="relu",
                                   reference=False)
        x16 = torch.randn(shape, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
        w16 = torch.randn(m, shape[1], *kernel, device="cuda", dtype=torch.float16)
        w16 = w16.contiguous(memory_format=torch.channels_last)
        b16 = torch.randn(m, device="cuda", dtype=torch.float16)
        fp16 = _median_ms(lambda: F.relu(F.conv2d(x16, w16, b16, strides, pads[:2])))
        ms, tactic, config = _fastest(node, args)
        lines.append(f"{label} bs{shape[0]}: fp16 {fp16:.3f} ms, int8 {ms:.3f} ms x{fp16 / ms:.2f}, {tactic} {config}")
    print("\n" + "\n".join(lines))
