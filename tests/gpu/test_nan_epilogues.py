"""NaN, +inf and -inf survive every CUDA tactic's fused epilogue as they survive the reference (issue 9).

Every (tactic, configuration) that supports a fused layer runs on inputs (and residuals) with non-finite values
planted, in fp32, fp16 and bf16; the NaN/±inf pattern must equal the reference's (float32 on the CPU, from the same
rounded inputs) exactly, and the finite values agree within the dtype's tolerance. The library probes of
braze/kernels/cuda/nan_safety.py are checked against larger shapes than they use, and whole models built at the
default level against onnxruntime."""

import math

import numpy as np
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest
import torch
import torch.nn.functional as F

import braze
from braze.device import Target
from braze.ir import DType, Node, Tensor
from braze.kernels import tactics_for
from braze.kernels.cuda import nan_safety
from braze.ops import REGISTRY
from braze.ops.fused import ACTIVATIONS
from braze.testing import nonfinite_mismatch, rel_l2, tolerance

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PARAMS = {"clip": [0.0, 6.0], "leaky_relu": [0.1], "hardsigmoid": [0.2, 0.5], "elu": [1.0]}


def cuda() -> Target:
    return Target.parse("cuda")


def planted(shape, seed: int, dtype: torch.dtype = torch.float32, each: int = 2) -> torch.Tensor:
    """Random values with `each` NaN, +inf and -inf at random spots."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    flat = x.view(-1)
    spots = torch.randperm(flat.numel(), generator=g)[:3 * each]
    flat[spots[:each]], flat[spots[each:2 * each]], flat[spots[2 * each:]] = math.nan, math.inf, -math.inf
    return x.to(dtype)


@pytest.fixture(autouse=True)
def no_tf32():
    """Exact float32 products, so that finite values compare at float32's tolerance."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
        yield
    torch.backends.cuda.matmul.allow_tf32 = saved


def check(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, name: str) -> None:
    a, e = actual.float().cpu(), expected.float().cpu()
    assert torch.isnan(e).any() and torch.isfinite(e).any(), f"{name}: nothing planted reaches the output"
    problem = nonfinite_mismatch(a, e)
    assert problem is None, f"{name}: {problem}"
    finite = torch.isfinite(e)
    err = rel_l2(a[finite], e[finite])
    bound = tolerance(DType.from_torch(dtype)).rel_l2 * (10 if dtype == torch.float32 else 4)
    assert err <= bound, f"{name}: finite values rel L2 {err:.3g} > {bound}"


def every_config(node: Node, args: list) -> int:
    """Run every CUDA (tactic, config) supporting `node` on `args` (CPU tensors); return how many ran."""
    ref_args = [None if a is None else a.float() if a.is_floating_point() else a for a in args]
    if node.op == "Pointwise":  # its body's constants are in the lowered type: the reference runs in it too
        ref_args = args
    expected = REGISTRY.for_node(node).run(ref_args, node.attrs, len(node.outputs))[0].float()
    ran = 0
    target = cuda()
    for tactic in tactics_for(target):
        if not tactic.supports(node, target) or tactic.name in ("view", "concat_in_place"):
            continue
        # NOTE: a Triton kernel's NaN handling is its epilogue's code, the same in every block shape: one config
        # each keeps the compile time down; the libraries' configurations are different kernels, all run.
        level = 0 if tactic.name.startswith("triton") else 3
        for config in tactic.configs(node, target, level):
            if config.get("device") == "cpu":
                continue
            kernel = tactic.compile(node, config, target)
            dev = [None if a is None or (i in tactic.owned_inputs and node.inputs[i].is_constant) else a.cuda()
                   for i, a in enumerate(args)]
            out = node.outputs[0]
            outs = [torch.full(out.shape, 7.0, dtype=out.dtype.torch, device="cuda") if tactic.writes_output else None]
            try:
                produced = kernel(dev, outs)
            except RuntimeError as e:  # an SDPA back-end without a kernel for these shapes/dtype
                if "No available kernel" in str(e) or "not supported" in str(e).lower():
                    continue
                raise
            torch.cuda.synchronize()
            check(produced[0] if produced else outs[0], expected, out.dtype.torch, f"{node.op} {tactic.name} {config}")
            ran += 1
    return ran


def conv_node(dtype: torch.dtype, act: str, residual: bool, kernel: int = 3) -> tuple[Node, list]:
    g = torch.Generator().manual_seed(1)
    d = DType.from_torch(dtype)
    w = (torch.randn(16, 8, kernel, kernel, generator=g) * 0.2).to(dtype)
    b = torch.randn(16, generator=g).to(dtype)
    pad = kernel // 2
    attrs = {"pads": [pad] * 4, "activation": act, "act_params": PARAMS.get(act, [])}
    inputs = [Tensor("x", d, (2, 8, 10, 10)), Tensor("w", d, tuple(w.shape), w), Tensor("b", d, (16,), b)]
    args = [planted((2, 8, 10, 10), 3, dtype), w, b]
    if residual:
        inputs.append(Tensor("r", d, (2, 16, 10, 10)))
        args.append(planted((2, 16, 10, 10), 4, dtype))
    node = Node("FusedConv", inputs, [Tensor("y", d, (2, 16, 10, 10))], attrs, name="conv", domain="braze")
    return node, args


def gemm_node(dtype: torch.dtype, act: str, residual: bool) -> tuple[Node, list]:
    g = torch.Generator().manual_seed(2)
    d = DType.from_torch(dtype)
    w, b = (torch.randn(32, 24, generator=g) * 0.3).to(dtype), torch.randn(24, generator=g).to(dtype)
    inputs = [Tensor("x", d, (4, 16, 32)), Tensor("w", d, (32, 24), w), Tensor("b", d, (24,), b)]
    args = [planted((4, 16, 32), 5, dtype), w, b]
    if residual:
        inputs.append(Tensor("r", d, (4, 16, 24)))
        args.append(planted((4, 16, 24), 6, dtype))
    attrs = {"activation": act, "act_params": PARAMS.get(act, [])}
    return Node("FusedGemm", inputs, [Tensor("y", d, (4, 16, 24))], attrs, name="gemm", domain="braze"), args


# NOTE: an open defect, seen on an H100 (torch 2.11, cuDNN 9.19): cuDNN's channels-last FP16 convolution returns
# finite values at about half the outputs that should be +-inf (NaN is kept; NCHW FP16, BF16 and FP32 keep both).
# braze's FP16 convolutions run channels-last, so such a run loses infinities silently; see
# test_cudnn_fp16_channels_last_keeps_infinities, which fails until it is fixed or worked around.
CUDNN_FP16_NHWC_INF = pytest.mark.xfail(reason="cuDNN's channels-last FP16 convolution loses +-inf (open defect)")


@pytest.mark.parametrize("dtype", [pytest.param(d, marks=CUDNN_FP16_NHWC_INF) if n == "fp16" else d
                                   for n, d in DTYPES.items()], ids=DTYPES.keys())
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_fused_conv_every_tactic(act, residual, dtype):
    assert every_config(*conv_node(dtype, act, residual)) > 0


@pytest.mark.xfail(strict=True, reason="cuDNN's channels-last FP16 convolution loses +-inf (open defect)")
def test_cudnn_fp16_channels_last_keeps_infinities():
    x = planted((2, 8, 10, 10), 3, torch.float16)
    w = (torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(1)) * 0.2).half()
    expected = F.conv2d(x.double(), w.double(), padding=1)
    cl = torch.channels_last
    actual = F.conv2d(x.cuda().contiguous(memory_format=cl), w.cuda().contiguous(memory_format=cl), padding=1)
    assert nonfinite_mismatch(actual.double().cpu(), expected) is None


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("act", ["none", "relu", "clip", "gelu"])
def test_fused_conv_1x1_as_gemm(act, dtype):
    assert every_config(*conv_node(dtype, act, residual=False, kernel=1)) > 0


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_fused_gemm_every_tactic(act, residual, dtype):
    assert every_config(*gemm_node(dtype, act, residual)) > 0


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_attention_every_backend(masked, dtype):
    d = DType.from_torch(dtype)
    shapes = {"q": (2, 4, 16, 32), "k": (2, 4, 32, 16), "v": (2, 4, 16, 32), "mask": (2, 1, 16, 16)}
    names = ["q", "k", "v"] + (["mask"] if masked else [])
    args = [planted(shapes[n], 7 + i, dtype, each=1) if n != "mask" else torch.zeros(shapes[n]).to(dtype)
            for i, n in enumerate(names)]
    node = Node("Attention", [Tensor(n, d, shapes[n]) for n in names], [Tensor("y", d, (2, 4, 16, 32))],
                {"scale": 0.125, "k_transposed": 1}, name="attention", domain="braze")
    assert every_config(node, args) > 0


def _pointwise_layer(op: str, dtype: torch.dtype) -> tuple[Node, list]:
    args = {"Clip": ["s", "lo", "hi"], "Max": ["s", "lo", "x"], "Min": ["s", "hi", "x"]}.get(op, ["s"])
    nodes = [oh.make_node("Add", ["x", "r"], ["s"]), oh.make_node(op, args, ["t"]),
             oh.make_node("Mul", ["t", "x"], ["y"])]
    ins = [oh.make_tensor_value_info(n, 1, [6, 33]) for n in ("x", "r")]
    bounds = [onh.from_array(np.array(-0.5, np.float32), "lo"), onh.from_array(np.array(2.0, np.float32), "hi")]
    model = oh.make_model(oh.make_graph(nodes, "g", ins, [oh.make_tensor_value_info("y", 1, [6, 33])], bounds),
                          opset_imports=[oh.make_opsetid("", 20)])
    precision = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    graph = braze.Builder("cpu").build(model, braze.BuilderConfig(precision=precision)).graph
    layer = next(n for n in graph.nodes if n.op == "Pointwise")
    return layer, [planted(t.shape, 11 + i, t.dtype.torch) for i, t in enumerate(layer.inputs)]


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("op", ["Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Gelu", "Elu", "Sigmoid",
                                "Tanh", "Softplus", "Max", "Min"])
def test_pointwise_every_tactic(op, dtype):
    layer, args = _pointwise_layer(op, dtype)
    assert every_config(layer, args) > 0


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
def test_cudnn_fused_relu_probe_holds_beyond_its_shape(residual, nhwc, dtype):
    """The probe decides whether cuDNN's fused ReLU may be used; where it says yes, a larger layer agrees."""
    safe = nan_safety.cudnn_relu_propagates(torch.device("cuda"), dtype, nhwc, residual)
    print(f"cudnn fused relu dtype={dtype} nhwc={nhwc} residual={residual}: propagates={safe}")
    if not safe:
        return
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    x = planted((4, 64, 28, 28), 20, dtype).cuda().contiguous(memory_format=fmt)
    w = (torch.randn(64, 64, 3, 3) * 0.05).to("cuda", dtype).contiguous(memory_format=fmt)
    b = torch.randn(64).to("cuda", dtype)
    y = F.conv2d(x, w, b, 1, 1)
    if residual:
        r = planted(tuple(y.shape), 21, dtype).cuda().contiguous(memory_format=fmt)
        fused = torch.cudnn_convolution_add_relu(x, w, r, 1.0, b, [1, 1], [1, 1], [1, 1], 1)
        y = y + r
    else:
        fused = torch.cudnn_convolution_relu(x, w, b, [1, 1], [1, 1], [1, 1], 1)
    assert nonfinite_mismatch(fused, torch.relu(y)) is None


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("gelu", [False, True], ids=["relu", "gelu"])
def test_cublaslt_epilogue_probe_holds_beyond_its_shape(gelu, dtype):
    safe = nan_safety.cublaslt_epilogue_propagates(torch.device("cuda"), dtype, gelu)
    print(f"cublasLt {'gelu' if gelu else 'relu'} epilogue dtype={dtype}: propagates={safe}")
    if not safe:
        return
    x = planted((512, 768), 22, dtype).cuda()
    w, b = (torch.randn(768, 1024) * 0.05).to("cuda", dtype), torch.randn(1024).to("cuda", dtype)
    fused = torch._addmm_activation(b, x, w, use_gelu=gelu)
    y = torch.addmm(b, x, w).float()
    assert nonfinite_mismatch(fused, F.gelu(y, approximate="tanh") if gelu else torch.relu(y)) is None


MODELS = {
    "conv_relu": ["Relu"], "conv_clip": ["Clip"], "conv_add_relu": ["Add", "Relu"], "matmul_gelu": ["Gelu"],
    "matmul_relu": ["Relu"],
}


def _model(name: str):
    rng = np.random.default_rng(0)
    conv = name.startswith("conv")
    x_shape, y_shape = ([1, 8, 12, 12], [1, 16, 12, 12]) if conv else ([4, 32], [4, 24])
    ins = [oh.make_tensor_value_info("x", 1, x_shape)]
    inits = [onh.from_array(np.array(0.0, np.float32), "lo"), onh.from_array(np.array(6.0, np.float32), "hi")]
    inits = inits if "Clip" in MODELS[name] else []
    if conv:
        nodes = [oh.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1])]
        inits += [onh.from_array((rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32), "w"),
                  onh.from_array(rng.standard_normal(16).astype(np.float32), "b")]
    else:
        nodes = [oh.make_node("Gemm", ["x", "w", "b"], ["c"])]
        inits += [onh.from_array((rng.standard_normal((32, 24)) * 0.3).astype(np.float32), "w"),
                  onh.from_array(rng.standard_normal(24).astype(np.float32), "b")]
    src = "c"
    for i, op in enumerate(MODELS[name]):
        out = "y" if i == len(MODELS[name]) - 1 else f"t{i}"
        if op == "Add":
            ins.append(oh.make_tensor_value_info("r", 1, y_shape))
            nodes.append(oh.make_node("Add", [src, "r"], [out]))
        else:
            nodes.append(oh.make_node(op, [src, "lo", "hi"] if op == "Clip" else [src], [out]))
        src = out
    graph = oh.make_graph(nodes, "g", ins, [oh.make_tensor_value_info("y", 1, y_shape)], inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 20)])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_built_for_cuda_against_onnxruntime(name):
    ort = pytest.importorskip("onnxruntime")
    model = _model(name)
    feeds = {i.name: planted([d.dim_value for d in i.type.tensor_type.shape.dim], 30 + k).numpy()
             for k, i in enumerate(model.graph.input)}
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    for precision in ("fp32", "fp16"):
        engine = braze.Builder("cuda").build(model, braze.BuilderConfig(precision=precision))
        got = engine.create_execution_context().infer(feeds)["y"]
        tactics = ", ".join(f"{s.node.op}:{s.tactic}" for s in engine.steps)
        assert nonfinite_mismatch(got, expected) is None, f"{name} {precision} ({tactics}): " + str(
            nonfinite_mismatch(got, expected))
