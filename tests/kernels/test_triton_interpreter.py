"""braze's Triton kernels checked on the CPU with TRITON_INTERPRET=1 (each check in a fresh interpreter,
since Triton reads the variable when kernels are defined)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[2]


def interpret(code: str) -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_triton_gemm_with_every_epilogue():
    interpret("""
        import torch
        import torch.nn.functional as F
        from braze.kernels.triton.gemm import ACTIVATIONS, gemm
        torch.manual_seed(0)
        acts = {"none": lambda y: y, "relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda y: F.gelu(y, approximate="tanh"),
                "sigmoid": torch.sigmoid, "silu": F.silu}
        assert set(acts) == set(ACTIVATIONS)
        a, b = torch.randn(37, 70), torch.randn(70, 45)
        bias, res = torch.randn(45), torch.randn(37, 45)
        for name, fn in acts.items():
            out = torch.full((37, 45), float("nan"))
            gemm(a, b, out, bias=bias, residual=res, activation=name, BLOCK_M=16, BLOCK_N=32, BLOCK_K=32)
            err = (out - (fn(a @ b + bias) + res)).abs().max().item()
            assert err < 1e-4, (name, err)
        bt = torch.randn(45, 70).t()
        out = torch.full((37, 45), float("nan"))
        gemm(a, bt, out, BLOCK_M=16, BLOCK_N=16, BLOCK_K=16)
        assert (out - a @ bt).abs().max().item() < 1e-4
    """)


def test_generated_pointwise_kernel_matches_the_reference():
    interpret("""
        import numpy as np, onnx.helper as oh, onnx.numpy_helper as onh, torch
        import braze
        from braze.kernels.triton.pointwise import compile_pointwise, generate
        ins = [oh.make_tensor_value_info("x", 1, [4, 7, 33]), oh.make_tensor_value_info("m", 7, [4, 1, 33])]
        nodes = [oh.make_node("Cast", ["m"], ["mf"], to=1), oh.make_node("Sub", ["one", "mf"], ["inv"]),
                 oh.make_node("Mul", ["inv", "big"], ["bias"]), oh.make_node("Add", ["x", "bias"], ["s"]),
                 oh.make_node("Gelu", ["s"], ["g"]), oh.make_node("Mul", ["g", "scale"], ["t"]),
                 oh.make_node("Tanh", ["t"], ["u"]), oh.make_node("Clip", ["u", "lo", "hi"], ["y"])]
        inits = [onh.from_array(np.array(1.0, np.float32), "one"), onh.from_array(np.array(-3.0, np.float32), "big"),
                 onh.from_array(np.random.default_rng(0).standard_normal(33).astype(np.float32), "scale"),
                 onh.from_array(np.array(-0.5, np.float32), "lo"), onh.from_array(np.array(0.75, np.float32), "hi")]
        model = oh.make_model(oh.make_graph(nodes, "g", ins, [oh.make_tensor_value_info("y", 1, [4, 7, 33])], inits),
                              opset_imports=[oh.make_opsetid("", 20)])
        engine = braze.Builder("cpu").build(model)
        assert [n.op for n in engine.graph.nodes] == ["Pointwise"]
        body = engine.graph.nodes[0].attrs["body"]
        source, extra = generate(body)
        assert "tl.erf" in source and len(extra) == 1
        kernel = compile_pointwise(body, torch.device("cpu"), block=128)
        x, m = torch.randn(4, 7, 33), torch.randint(0, 2, (4, 1, 33))
        feeds = {"x": x, "m": m}
        out = torch.full((4, 7, 33), float("nan"))
        kernel.launch([feeds[t.name] for t in body.inputs], out)
        ref = torch.from_numpy(engine.create_execution_context().infer({"x": x.numpy(), "m": m.numpy()})["y"])
        assert (out - ref).abs().max().item() < 1e-5
        xt = torch.randn(33, 7, 4).permute(2, 1, 0)
        strided_out = torch.full((33, 7, 4), float("nan")).permute(2, 1, 0)
        kernel.launch([{"x": xt, "m": m}[t.name] for t in body.inputs], strided_out)
        ref = torch.from_numpy(engine.create_execution_context().infer({"x": xt.contiguous().numpy(), "m": m.numpy()})["y"])
        assert (strided_out - ref).abs().max().item() < 1e-5
    """)


def test_unsupported_bodies_are_declined():
    import onnx.helper as oh

    import braze
    from braze.kernels.triton.pointwise import generate

    ins = [oh.make_tensor_value_info("x", 1, [8])]
    nodes = [oh.make_node("Sin", ["x"], ["s"]), oh.make_node("Relu", ["s"], ["y"])]
    model = oh.make_model(oh.make_graph(nodes, "g", ins, [oh.make_tensor_value_info("y", 1, [8])]),
                          opset_imports=[oh.make_opsetid("", 17)])
    engine = braze.Builder("cpu").build(model)
    assert engine.graph.nodes[0].op == "Pointwise"
    assert generate(engine.graph.nodes[0].attrs["body"]) is None


def test_triton_layer_norm_with_and_without_bias():
    interpret("""
        import torch
        import torch.nn.functional as F
        from braze.kernels.triton.norm import CONFIGS, layer_norm
        torch.manual_seed(0)
        x = torch.randn(5, 7, 48) * 3 + 1
        w, b = torch.randn(48), torch.randn(48)
        for config in CONFIGS:
            for bias in (b, None):
                out = torch.full_like(x, float("nan"))
                layer_norm(x, w, bias, out, 1e-5, **config)
                err = (out - F.layer_norm(x, (48,), w, bias, 1e-5)).abs().max().item()
                assert err < 1e-4, (config, bias is None, err)
        x2, w2 = torch.randn(3, 4, 5), torch.randn(20)  # normalized over the last two axes, a row not a power of 2
        out = torch.empty_like(x2)
        layer_norm(x2, w2, None, out, 1e-3, ROWS=2)
        assert (out - F.layer_norm(x2, (4, 5), w2.reshape(4, 5), None, 1e-3)).abs().max().item() < 1e-4
    """)
