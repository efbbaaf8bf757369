"""NaN, +inf and -inf survive every fused epilogue as they survive the unfused graph (issue 9, silent wrong answer 1).

Per fused kind and CPU tactic, on random non-zero inputs with non-finite values planted in the input and the
residual: the tactic against its op's reference; each model built at the default level against the same model at
level 0 and against onnxruntime; braze's Triton kernels through TRITON_INTERPRET=1. `assert_close` requires the NaN
and ±inf patterns to match exactly (tested here too)."""

import math

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest
import torch

import braze
from braze.build.builder import BuilderConfig
from braze.device import Target
from braze.ir import DType, Node, Tensor
from braze.kernels.cpu.conv import OneDnnConvTactic, onednn_available
from braze.kernels.cpu.gemm import OneDnnGemmTactic
from braze.kernels.cpu.reference import ReferenceTactic
from braze.ops.activation import gelu
from braze.ops.fused import ACTIVATIONS, fused_conv, fused_gemm
from braze.testing import assert_close, mismatch, nonfinite_mismatch

CPU = Target.parse("cpu")
PARAMS = {"clip": [0.0, 6.0], "leaky_relu": [0.1], "hardsigmoid": [0.2, 0.5], "elu": [1.0]}
TACTICS = [OneDnnConvTactic(), OneDnnGemmTactic(), ReferenceTactic()]


def planted(shape, seed: int) -> torch.Tensor:
    """Random values away from 0, with NaN, +inf and -inf at a few spots."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    x = x + torch.sign(x) * 0.1
    flat = x.view(-1)
    spots = torch.randperm(flat.numel(), generator=g)[:6]
    flat[spots[:2]], flat[spots[2:4]], flat[spots[4:]] = math.nan, math.inf, -math.inf
    return x


def assert_same_nonfinite(actual, expected, name: str) -> None:
    """assert_close, after checking that the case exercises both non-finite and finite outputs."""
    e = torch.as_tensor(np.asarray(expected))
    assert torch.isnan(e).any() and torch.isfinite(e).any(), f"{name}: the case plants nothing that reaches the output"
    assert_close(actual, expected, rtol=1e-4, atol=1e-4, name=name)


def test_assert_close_requires_the_same_nan_and_inf_pattern():
    e = np.array([math.nan, math.inf, -math.inf, 1.0], np.float32)
    assert mismatch(e.copy(), e, 1e-4, 1e-5) is None
    for i, wrong in [(0, 0.0), (1, -math.inf), (2, 0.0), (3, math.nan), (1, 3.4e38)]:
        a = e.copy()
        a[i] = wrong
        assert mismatch(a, e, 1e-4, 1e-5) is not None, (i, wrong)
        if not math.isfinite(e[i]) or not math.isfinite(wrong):
            assert nonfinite_mismatch(a, e) is not None, (i, wrong)
    assert nonfinite_mismatch(e + 1, e) is None  # finite values are assert_close's business


def test_gelu_reference_follows_onnx_at_infinities():
    # torch's CPU erf-GELU says NaN at +inf; ONNX (0.5·x·(1 + erf(x/√2))) and onnxruntime say +inf
    x = torch.tensor([math.inf, -math.inf, math.nan, 1.0])
    for approximate in ("none", "tanh"):
        y = gelu.run([x], {"approximate": approximate}, 1)[0]
        assert y[0] == math.inf and torch.isnan(y[1:3]).all() and torch.isfinite(y[3]), (approximate, y)


# ---- kernels: each CPU tactic against its op's reference ------------------------------------------------------

def conv_node(act: str, residual: bool) -> Node:
    g = torch.Generator().manual_seed(1)
    w = Tensor("w", DType.float32, (6, 4, 3, 3), torch.randn(6, 4, 3, 3, generator=g) * 0.3)
    b = Tensor("b", DType.float32, (6,), torch.randn(6, generator=g))
    attrs = {"pads": [1, 1, 1, 1], "activation": act, "act_params": PARAMS.get(act, [])}
    inputs = [Tensor("x", DType.float32, (2, 4, 7, 7)), w, b]
    if residual:
        inputs.append(Tensor("r", DType.float32, (2, 6, 7, 7)))
    return Node("FusedConv", inputs, [Tensor("y", DType.float32, (2, 6, 7, 7))], attrs, name="conv", domain="braze")


def gemm_node(act: str, residual: bool) -> Node:
    g = torch.Generator().manual_seed(2)
    w = Tensor("w", DType.float32, (12, 9), torch.randn(12, 9, generator=g))
    b = Tensor("b", DType.float32, (9,), torch.randn(9, generator=g))
    inputs = [Tensor("x", DType.float32, (3, 5, 12)), w, b]
    if residual:
        inputs.append(Tensor("r", DType.float32, (3, 5, 9)))
    attrs = {"activation": act, "act_params": PARAMS.get(act, [])}
    return Node("FusedGemm", inputs, [Tensor("y", DType.float32, (3, 5, 9))], attrs, name="gemm", domain="braze")


def layer(kind: str, act: str, residual: bool) -> Node:
    return conv_node(act, residual) if kind == "conv" else gemm_node(act, residual)


CASES = [(tactic, kind, act, residual) for kind in ("conv", "gemm") for act in ACTIVATIONS for residual in (False, True)
         for tactic in TACTICS if tactic.supports(layer(kind, act, residual), CPU)]


@pytest.mark.skipif(not onednn_available(), reason="torch built without oneDNN")
def test_the_onednn_tactics_still_take_every_activation_they_fuse():
    """Moving relu/clip/gelu after the product keeps those layers on oneDNN (not on the slower reference)."""
    for name, kind in (("onednn_conv", "conv"), ("onednn_gemm", "gemm")):
        acts = {a for t, k, a, r in CASES if t.name == name and k == kind and not r}
        assert acts == set(ACTIVATIONS) - {"hardsigmoid", "elu"}, (name, acts)
    assert {a for t, k, a, r in CASES if t.name == "onednn_conv" and r} == {"none", "relu"}


@pytest.mark.parametrize("tactic,kind,act,residual", CASES,
                         ids=[f"{t.name}-{k}-{a}{'-residual' if r else ''}" for t, k, a, r in CASES])
def test_cpu_tactic_propagates_like_the_reference(tactic, kind, act, residual):
    node = layer(kind, act, residual)
    args = [planted(node.inputs[0].shape, 3), node.inputs[1].value, node.inputs[2].value]
    if residual:
        args.append(planted(node.outputs[0].shape, 4))
    reference = fused_conv if kind == "conv" else fused_gemm
    expected = reference.run(args, node.attrs, 1)[0]
    owned = getattr(tactic, "owned_inputs", ())
    out = torch.full(node.outputs[0].shape, 12345.0)
    tactic.compile(node, {}, CPU)([None if i in owned else a for i, a in enumerate(args)], [out])
    assert_same_nonfinite(out, expected, f"{tactic.name} {kind} {act}{' +residual' if residual else ''}")


# ---- models: default level against level 0 and onnxruntime ---------------------------------------------------

def _const(name: str, value) -> onnx.TensorProto:
    return onh.from_array(np.asarray(value, np.float32), name)


def _conv_model(tail: list, extra_inits=(), residual: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    ins = [oh.make_tensor_value_info("x", 1, [1, 3, 8, 8])]
    if residual:
        ins.append(oh.make_tensor_value_info("r", 1, [1, 5, 8, 8]))
    nodes = [oh.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1])] + tail
    inits = [_const("w", rng.standard_normal((5, 3, 3, 3)) * 0.3), _const("b", rng.standard_normal(5)),
             *extra_inits]
    graph = oh.make_graph(nodes, "g", ins, [oh.make_tensor_value_info("y", 1, [1, 5, 8, 8])], inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 20)])


def _mm_model(tail: list, extra_inits=(), residual: bool = False, gemm: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    shape_in, shape_out = ([6, 10], [6, 7]) if gemm else ([2, 6, 10], [2, 6, 7])
    ins = [oh.make_tensor_value_info("x", 1, shape_in)]
    if residual:
        ins.append(oh.make_tensor_value_info("r", 1, shape_out))
    first = (oh.make_node("Gemm", ["x", "w", "b"], ["c"]) if gemm else oh.make_node("MatMul", ["x", "w"], ["m"]))
    nodes = [first] + ([] if gemm else [oh.make_node("Add", ["m", "b"], ["c"])]) + tail
    inits = [_const("w", rng.standard_normal((10, 7))), _const("b", rng.standard_normal(7)), *extra_inits]
    graph = oh.make_graph(nodes, "g", ins, [oh.make_tensor_value_info("y", 1, shape_out)], inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 20)])


def _pointwise_model() -> onnx.ModelProto:
    ins = [oh.make_tensor_value_info(n, 1, [3, 17]) for n in ("x", "r")]
    nodes = [oh.make_node("Add", ["x", "r"], ["s"]), oh.make_node("Max", ["s", "lo"], ["m"]),
             oh.make_node("Min", ["m", "hi"], ["n"]), oh.make_node("HardSigmoid", ["n"], ["h"]),
             oh.make_node("Mul", ["h", "s"], ["y"])]
    graph = oh.make_graph(nodes, "g", ins, [oh.make_tensor_value_info("y", 1, [3, 17])],
                          [_const("lo", -0.5), _const("hi", 2.0)])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 20)])


def _relu(src: str = "c") -> list:
    return [oh.make_node("Relu", [src], ["y"])]


CLIP_BOUNDS = (_const("lo", 0.0), _const("hi", 6.0))
MODELS = {
    "conv_relu": (lambda: _conv_model(_relu()), "FusedConv"),
    "conv_clip": (lambda: _conv_model([oh.make_node("Clip", ["c", "lo", "hi"], ["y"])], CLIP_BOUNDS), "FusedConv"),
    "conv_leaky_relu": (lambda: _conv_model([oh.make_node("LeakyRelu", ["c"], ["y"], alpha=0.2)]), "FusedConv"),
    "conv_hardsigmoid": (lambda: _conv_model([oh.make_node("HardSigmoid", ["c"], ["y"])]), "FusedConv"),
    "conv_hardswish": (lambda: _conv_model([oh.make_node("HardSwish", ["c"], ["y"])]), "FusedConv"),
    "conv_add_relu": (lambda: _conv_model([oh.make_node("Add", ["c", "r"], ["s"]), *_relu("s")], residual=True),
                      "FusedConv"),
    "gemm_relu": (lambda: _mm_model(_relu(), gemm=True), "FusedGemm"),
    "matmul_gelu": (lambda: _mm_model([oh.make_node("Gelu", ["c"], ["y"])]), "FusedGemm"),
    "matmul_clip": (lambda: _mm_model([oh.make_node("Clip", ["c", "lo", "hi"], ["y"])], CLIP_BOUNDS), "FusedGemm"),
    "matmul_relu_add": (lambda: _mm_model([oh.make_node("Relu", ["c"], ["a"]), oh.make_node("Add", ["a", "r"], ["y"])],
                                          residual=True), "FusedGemm"),
    "pointwise": (_pointwise_model, "Pointwise"),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fused_model_propagates_like_level_0_and_onnxruntime(name):
    make, fused_op = MODELS[name]
    model = make()
    onnx.checker.check_model(model, full_check=True)
    feeds = {i.name: planted([d.dim_value for d in i.type.tensor_type.shape.dim], 10 + k).numpy()
             for k, i in enumerate(model.graph.input)}
    fused = braze.Builder("cpu").build(model)
    assert fused_op in [n.op for n in fused.graph.nodes], [n.op for n in fused.graph.nodes]
    plain = braze.Builder("cpu").build(model, BuilderConfig(optimization_level=0))
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)[0]
    got = fused.create_execution_context().infer(feeds)["y"]
    assert_same_nonfinite(plain.create_execution_context().infer(feeds)["y"], expected, f"{name} at level 0")
    assert_same_nonfinite(got, expected, f"{name} fused ({', '.join(s.tactic for s in fused.steps)})")


# ---- braze's Triton kernels, through the interpreter (the GPU tier runs them compiled) --------------------------

def test_triton_gemm_epilogues_and_layer_norm_propagate_through_the_interpreter():
    pytest.importorskip("triton")
    from .test_triton_interpreter import interpret

    interpret("""
        import torch
        import torch.nn.functional as F
        from braze.kernels.triton.gemm import ACTIVATIONS, gemm
        from braze.kernels.triton.norm import layer_norm
        from braze.ops.fused import fused_gemm
        from braze.testing import assert_close
        from tests.kernels.test_nan_propagation import planted
        a, b = planted((37, 20), 1), torch.randn(20, 45)
        bias, res = torch.randn(45), planted((37, 45), 2)
        for act in ACTIVATIONS:
            for residual in (None, res):
                out = torch.zeros(37, 45)
                gemm(a, b, out, bias=bias, residual=residual, activation=act, BLOCK_M=16, BLOCK_N=32, BLOCK_K=16)
                args = [a, b, bias] + ([] if residual is None else [residual])
                expected = fused_gemm.run(args, {"activation": act}, 1)[0]
                assert torch.isnan(expected).any() and torch.isfinite(expected).any()
                assert_close(out, expected, rtol=1e-4, atol=1e-4, name=f"triton gemm {act} {residual is not None}")
        x, w, b = planted((9, 24), 1), torch.randn(24), torch.randn(24)
        out = torch.zeros(9, 24)
        layer_norm(x, w, b, out, 1e-5, ROWS=2)
        expected = F.layer_norm(x, (24,), w, b, 1e-5)
        assert torch.isnan(expected).any() and torch.isfinite(expected).any()
        assert_close(out, expected, rtol=1e-4, atol=1e-4, name="triton layer norm")
    """)


POINTWISE_OPS = ["Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Gelu", "Elu", "Sigmoid", "Tanh",
                 "Softplus", "Softsign", "Max", "Min", "Abs", "Sqrt"]


def test_triton_pointwise_kernels_propagate_through_the_interpreter():
    pytest.importorskip("triton")
    from .test_triton_interpreter import interpret

    interpret(f"""
        import numpy as np, onnx.helper as oh, onnx.numpy_helper as onh, onnxruntime as ort, torch
        import braze
        from braze.kernels.triton.pointwise import compile_pointwise
        from braze.testing import assert_close
        from tests.kernels.test_nan_propagation import planted
        bounds = [onh.from_array(np.array(-0.5, np.float32), "lo"), onh.from_array(np.array(2.0, np.float32), "hi")]
        for op in {POINTWISE_OPS!r}:
            args = {{"Clip": ["s", "lo", "hi"], "Max": ["s", "lo", "x"], "Min": ["s", "hi", "x"]}}.get(op, ["s"])
            nodes = [oh.make_node("Add", ["x", "r"], ["s"]), oh.make_node(op, args, ["t"]),
                     oh.make_node("Mul", ["t", "x"], ["y"])]
            ins = [oh.make_tensor_value_info(n, 1, [5, 13]) for n in ("x", "r")]
            model = oh.make_model(oh.make_graph(nodes, "g", ins, [oh.make_tensor_value_info("y", 1, [5, 13])], bounds),
                                  opset_imports=[oh.make_opsetid("", 20)])
            engine = braze.Builder("cpu").build(model)
            assert [n.op for n in engine.graph.nodes] == ["Pointwise"], (op, [n.op for n in engine.graph.nodes])
            body = engine.graph.nodes[0].attrs["body"]
            kernel = compile_pointwise(body, torch.device("cpu"), block=32)
            assert kernel is not None, op
            feeds = {{"x": planted((5, 13), 1), "r": planted((5, 13), 2)}}
            out = torch.zeros(5, 13)
            kernel.launch([feeds[t.name] for t in body.inputs], out)
            numpy_feeds = {{k: v.numpy() for k, v in feeds.items()}}
            expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
                None, numpy_feeds)[0]
            assert np.isnan(expected).any() and np.isfinite(expected).any(), op
            assert_close(engine.create_execution_context().infer(numpy_feeds)["y"], expected, name=op + " reference")
            assert_close(out, expected, rtol=1e-4, atol=1e-5, name=op + " triton")
    """)

