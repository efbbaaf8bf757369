"""The CUDA INT8 tactics (kernels/cuda/int8.py) and their Triton kernels, run on the CPU in the Triton interpreter
(TRITON_INTERPRET=1, a fresh process per test: see test_triton_interpreter.py) against the QGemm and QConv
references: a requantized output within braze.testing's INT8 tolerance of the reference (one step; none where
the activation is float32 arithmetic only; nearly all of it exact), a float output within its dtype's tolerance
with NaN and infinities where the reference has them. The cuBLASLt tactics call torch._int_mm, which runs on the
CPU too. tests/gpu/test_int8.py runs the same cases compiled, for every configuration."""

from __future__ import annotations

import math

import pytest
import torch

from braze.device import Target
from braze.ir import DType, Node, Tensor
from braze.ops import REGISTRY
from braze.ops.kinds import DOMAIN, Kind
from braze.ops.spatial import window

from .test_triton_interpreter import interpret

def _f32(v: float) -> float:
    """A scale as the Q/DQ fusion stores it: a float32 value (the requantization is exact for those)."""
    return float(torch.tensor(v, dtype=torch.float32))


OUTS = {"fp32": (1, 0.0, 0), "fp16": (10, 0.0, 0), "bf16": (16, 0.0, 0), "int8": (3, _f32(0.02), -3),
        "uint8": (2, _f32(0.02), 120)}
XS = {"int8": (torch.int8, 0), "int8_zp": (torch.int8, -5), "uint8": (torch.uint8, 128), "uint8_zp": (torch.uint8, 37)}
PARAMS = {"clip": [-1.0, 1.5], "leaky_relu": [0.1], "hardsigmoid": [0.2, 0.5], "elu": [0.7]}
CPU = Target(torch.device("cpu"))


def run_reference(op: str, args: list, attrs: dict) -> torch.Tensor:
    opdef = REGISTRY.resolve(op, DOMAIN, 1)
    return opdef.run(args, attrs, 1, None)[0]


def _case(op: Kind, x_shape, w: torch.Tensor, out_shape, g: torch.Generator, *, x: str, out: str,
          residual: str | None, bias: bool, activation: str, act_params, reference: bool, nhwc: bool = False,
          **geometry):
    """(node, inputs, expected) of a random QGemm/QConv layer whose outputs are O(1) before requantization;
    `expected` is None unless `reference`."""
    out_channels = out_shape[-1] if op == Kind.QGEMM else out_shape[1]
    x_dtype, x_zp = XS[x]
    low, high = (-128, 128) if x_dtype == torch.int8 else (0, 256)
    x_q = torch.randint(low, high, x_shape, generator=g, dtype=x_dtype)
    k = w.numel() // out_channels
    w_scale = (torch.rand(out_channels, generator=g) + 0.5) / (127 * 40 * math.sqrt(k) * 0.02)
    code, out_scale, out_zp = OUTS[out]
    attrs = dict(x_scale=_f32(0.02), x_zero_point=x_zp, activation=activation,
                 act_params=PARAMS.get(activation, []) if act_params is None else act_params,
                 out_scale=out_scale, out_zero_point=out_zp, output_dtype=code, **geometry)
    args = [x_q, w, w_scale, torch.randn(out_channels, generator=g) * 0.3 if bias else None]
    attrs = REGISTRY.resolve(op, DOMAIN, 1).parse_attrs(attrs, op)
    if residual in ("fp32", "fp16"):
        r = torch.randn(out_shape, generator=g) * 0.5
        args.append(r.to(torch.float32 if residual == "fp32" else torch.float16))
    elif residual in ("int8", "uint8"):
        r_low, r_high, r_zp = (-128, 128, 4) if residual == "int8" else (0, 256, 130)
        args.append(torch.randint(r_low, r_high, out_shape, generator=g, dtype=getattr(torch, residual)))
        attrs.update(residual_scale=_f32(0.01), residual_zero_point=r_zp)
    if nhwc:
        args = [a.contiguous(memory_format=torch.channels_last) if a is not None and a.dim() == 4 else a for a in args]
    names = ["x", "w", "w_scale", "b", "r"]
    inputs = [None if a is None else Tensor(name, DType.from_torch(a.dtype), tuple(a.shape),
                                            value=a if name in ("w", "w_scale", "b") else None)
              for name, a in zip(names, args)]
    out_dtype = DType.int8 if code == 3 else DType.uint8 if code == 2 else DType.from_torch(
        {1: torch.float32, 10: torch.float16, 16: torch.bfloat16}[code])
    node = Node(op, inputs, [Tensor("y", out_dtype, tuple(out_shape))], attrs, name=op.lower(), domain=DOMAIN)
    return node, args, run_reference(op, args, attrs) if reference else None


def qgemm_case(lead=(37,), k=70, n=45, *, x="uint8_zp", out="int8", residual=None, bias=True, activation="relu",
               act_params=None, seed=0, reference=True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(-127, 128, (k, n), generator=g, dtype=torch.int8)
    return _case(Kind.QGEMM, (*lead, k), w, (*lead, n), g, x=x, out=out, residual=residual, bias=bias,
                 activation=activation, act_params=act_params, reference=reference)


def qconv_case(x_shape=(2, 19, 6, 7), m=24, kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), *,
               x="uint8_zp", out="int8", residual=None, bias=True, activation="relu", act_params=None, nhwc=True,
               seed=0, reference=True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(-127, 128, (m, x_shape[1], *kernel), generator=g, dtype=torch.int8)
    win = window(x_shape[2:], kernel, strides=strides, dilations=dilations, pads=pads)
    return _case(Kind.QCONV, x_shape, w, (x_shape[0], m, *win.out), g, x=x, out=out, residual=residual, bias=bias,
                 activation=activation, act_params=act_params, reference=reference, nhwc=nhwc, strides=list(strides),
                 pads=list(pads), dilations=list(dilations), layout="nhwc" if nhwc else "nchw")


EXACT_ACTIVATIONS = ("none", "relu", "clip", "leaky_relu", "hardsigmoid", "hardswish")  # float32 arithmetic only


def plant_nonfinite(r: torch.Tensor, count: int = 12) -> None:
    """Write NaN, +inf and -inf in turn into `count` elements of a contiguous or channels-last float tensor."""
    flat = r.view(-1) if r.is_contiguous() else r.permute(0, 2, 3, 1).view(-1)
    for j, v in enumerate([math.nan, math.inf, -math.inf] * (count // 3)):
        flat[(7 * j + 1) % flat.numel()] = v


def check(actual: torch.Tensor, expected: torch.Tensor, what: str, exact: bool = False) -> None:
    """A requantized output within braze.testing's INT8 tolerance (one step; none if `exact`) and exact almost
    everywhere; a float one within its dtype's float tolerance (the kernels compute the reference's float32 steps),
    with NaN and infinities where the reference has them."""
    from braze.testing import mismatch, nonfinite_mismatch, quantized_tolerance, tolerance

    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (what, actual.dtype, actual.shape)
    if expected.dtype.is_floating_point:
        problem = nonfinite_mismatch(actual, expected)
        if problem is None:
            tol = tolerance(expected.dtype)
            problem = mismatch(actual, expected, tol.rtol, tol.atol)
    else:
        steps = 0.0 if exact else quantized_tolerance(expected.dtype).atol
        problem = mismatch(actual.double(), expected.double(), 0.0, steps)
        off = (actual != expected).float().mean().item()
        if problem is None and off > 0.01:
            problem = f"{off:.1%} of the elements are one step off"
    assert problem is None, f"{what}: {problem}"


def run_tactic(tactic, node: Node, args: list, config: dict, target: Target = CPU) -> torch.Tensor:
    """Compile `tactic` for `node` and run it as the runtime does: owned constants not passed, the output a
    NaN-filled (or 77-filled) view in the layer's layout."""
    kernel = tactic.compile(node, config, target)
    feeds = [None if i in tactic.owned_inputs else (None if a is None else a.to(target.device))
             for i, a in enumerate(args)]
    t = node.outputs[0]
    out = torch.full(t.shape, float("nan") if t.dtype.is_floating else 77, dtype=t.dtype.torch, device=target.device)
    if node.attrs.get("layout") == "nhwc":
        out = out.contiguous(memory_format=torch.channels_last)
    assert kernel(feeds, [out]) is None
    return out.cpu()


def verify(tactic, node: Node, args: list, expected: torch.Tensor, what: str, config: dict | None = None,
           target: Target = CPU) -> None:
    """Run `tactic` (with `config`, else `small`) and check it; exact where the activation is float32 arithmetic
    only."""
    got = run_tactic(tactic, node, args, small(tactic, node) if config is None else config, target)
    check(got, expected, f"{tactic.name} {what}", node.attrs["activation"] in EXACT_ACTIVATIONS)


def small(tactic, node: Node, block_m: int = 64, block_n: int = 32) -> dict:
    """A block for the interpreter (few programs: it runs each in numpy), or the cuBLASLt tactics' epilogue."""
    if tactic.name.startswith("triton"):
        return {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": 32, "num_warps": 4, "num_stages": 2}
    return tactic.configs(node, CPU, 0)[0]


# ---- run in the interpreter (a fresh process each: see interpret()) -------------------------------------------------

def case_qgemm_types_zero_points_residuals():
    from braze.kernels.cuda.int8 import CublasLtQGemmTactic, TritonQGemmTactic

    triton_t, cublas_t = TritonQGemmTactic(), CublasLtQGemmTactic()
    xs, outs, residuals = list(XS), list(OUTS), [None, "fp32", "fp16", "int8", "uint8"]
    for i in range(10):
        x, out, residual = xs[i % 4], outs[i % 5], residuals[(i // 2) % 5]
        k = (70, 64)[i % 2]  # a K tail, and none (the unmasked loop)
        node, args, expected = qgemm_case(k=k, x=x, out=out, residual=residual, bias=i % 3 != 0, seed=i)
        config = small(triton_t, node, 16, 16)  # several programs along both axes (the grouped order)
        verify(triton_t, node, args, expected, f"{x} {out} {residual}", config)
        node, args, expected = qgemm_case((4, 6), 40, 24, x=x, out=out, residual=residual, seed=i)
        verify(cublas_t, node, args, expected, f"{x} {out} {residual}")


def case_qgemm_every_activation():
    from braze.kernels.cuda.int8 import CublasLtQGemmTactic, TritonQGemmTactic
    from braze.kernels.triton.qgemm import SUPPORTED_ACTIVATIONS
    from braze.ops.epilogue import ACTIVATIONS

    assert SUPPORTED_ACTIVATIONS == set(ACTIVATIONS)
    for i, act in enumerate(ACTIVATIONS):
        for out in ("fp32", "int8"):
            node, args, expected = qgemm_case((3, 8), 48, 40, activation=act, out=out, residual="fp32", seed=i)
            for tactic in (TritonQGemmTactic(), CublasLtQGemmTactic()):
                verify(tactic, node, args, expected, f"{act} {out}")
    node, args, expected = qgemm_case(activation="clip", act_params=[-math.inf, 0.5], out="fp32")
    verify(TritonQGemmTactic(), node, args, expected, "one-sided clip")
    node, args, _ = qgemm_case(out="uint8", residual="int8", reference=False)
    args[2], args[3] = args[2][:1].clone(), args[3][:1].clone()  # one weight scale and one bias for all columns
    node.inputs[2:4] = [Tensor(name, DType.float32, (1,), value=v)
                        for name, v in (("w_scale", args[2]), ("b", args[3]))]
    verify(TritonQGemmTactic(), node, args, run_reference(node.op, args, node.attrs), "per-tensor scale")


GEOMETRIES = [  # x shape, M, kernel, strides, pads, dilations
    ((2, 19, 7, 9), 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 32, 9, 11), 40, (3, 3), (2, 2), (0, 1, 1, 2), (1, 1)),
    ((1, 16, 10, 9), 16, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1)),
    ((2, 8, 12, 12), 20, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    ((1, 12, 8, 10), 17, (5, 3), (1, 2), (2, 1, 2, 1), (1, 1)),
]


def case_qconv_geometries_types_residuals():
    from braze.kernels.cuda.int8 import CublasLtQConv1x1Tactic, TritonQConvTactic

    triton_t, cublas_t = TritonQConvTactic(), CublasLtQConv1x1Tactic()
    xs, outs, residuals = list(XS), list(OUTS), [None, "fp32", "int8", "uint8", "fp16"]
    for i, geometry in enumerate(GEOMETRIES * 2):
        x, out, residual, nhwc = xs[i % 4], outs[i % 5], residuals[i % 5], i < len(GEOMETRIES)
        node, args, expected = qconv_case(*geometry, x=x, out=out, residual=residual, nhwc=nhwc, seed=i)
        verify(triton_t, node, args, expected, f"{geometry} {x} {out}")
    for i, strides in enumerate([(1, 1), (2, 2)]):
        node, args, expected = qconv_case((2, 16, 6, 7), 24, (1, 1), strides, (0, 0, 0, 0), x=list(XS)[i + 2],
                                          residual="int8", nhwc=i == 0, seed=i)
        assert cublas_t.supports(node, Target(torch.device("cuda")))
        verify(cublas_t, node, args, expected, f"{strides}")


def case_qconv_kernel_any_strides():
    from braze.kernels.operands import conv_geometry
    from braze.kernels.triton.qconv import prepare_weight, qconv
    from braze.kernels.triton.qgemm import prepare_epilogue

    node, args, expected = qconv_case(x="int8_zp", out="fp32", residual="fp32", nhwc=False, activation="silu")
    w_mk = prepare_weight(args[1])
    epi = prepare_epilogue(node.attrs, w_mk, args[2], args[3], x_dtype=torch.int8, out_dtype=torch.float32,
                           residual=True, residual_first=True, device=torch.device("cpu"))
    x = args[0].permute(2, 0, 3, 1).contiguous().permute(1, 3, 0, 2)  # neither NCHW nor NHWC
    out = torch.full(expected.shape[::-1], float("nan")).permute(3, 2, 1, 0)
    qconv(x, w_mk, out, epi, conv_geometry(node), args[4].transpose(2, 3).contiguous().transpose(2, 3),
          BLOCK_M=32, BLOCK_N=16, BLOCK_K=16)
    check(out, expected, "strided NCHW")


def case_qconv_every_activation():
    from braze.kernels.cuda.int8 import TritonQConvTactic
    from braze.ops.epilogue import ACTIVATIONS

    tactic = TritonQConvTactic()
    for i, act in enumerate(ACTIVATIONS):
        for out in ("fp16", "uint8"):
            node, args, expected = qconv_case(activation=act, out=out, residual="fp32", seed=i)
            verify(tactic, node, args, expected, f"{act} {out}")


def case_nonfinite_residuals_propagate():
    from braze.kernels.cuda.int8 import CublasLtQGemmTactic, TritonQConvTactic, TritonQGemmTactic
    from braze.ops.epilogue import ACTIVATIONS

    for i, act in enumerate(ACTIVATIONS):
        for out in ("fp32", "fp16")[i % 2:][:1]:
            gemm = qgemm_case((3, 8), 48, 40, activation=act, out=out, residual="fp32", seed=i)
            conv = qconv_case(activation=act, out=out, residual="fp32", seed=i)
            for (node, args, _), tactics in ((gemm, (TritonQGemmTactic(), CublasLtQGemmTactic())),
                                             (conv, (TritonQConvTactic(),))):
                plant_nonfinite(args[4])
                expected = run_reference(node.op, args, node.attrs)
                assert expected.isnan().any() and expected.isinf().any() or act in ("clip", "sigmoid", "tanh",
                                                                                    "hardsigmoid")
                for tactic in tactics:
                    verify(tactic, node, args, expected, f"{act} {out}")


def case_every_config_of_every_tactic():
    from braze.kernels.cuda.int8 import TACTICS

    cuda = Target(torch.device("cuda"))
    cases = [qgemm_case((4, 6), 40, 24, residual="uint8"), qconv_case((2, 16, 5, 5), 24, (1, 1), (1, 1), (0,) * 4),
             qconv_case((1, 40, 5, 6), 24, residual="int8", x="int8")]
    ran = 0
    for node, args, expected in cases:
        for tactic in TACTICS:
            if not tactic.supports(node, cuda):
                continue
            for level in (0, 1, 3):
                for config in tactic.configs(node, cuda, level):
                    verify(tactic, node, args, expected, str(config), config)
                    ran += 1
    assert ran >= 20, ran


@pytest.mark.parametrize("case", [
    "case_qgemm_types_zero_points_residuals", "case_qgemm_every_activation", "case_qconv_geometries_types_residuals",
    "case_qconv_kernel_any_strides", "case_qconv_every_activation", "case_nonfinite_residuals_propagate",
    "case_every_config_of_every_tactic"])
def test_in_the_interpreter(case):
    interpret(f"from tests.kernels.test_triton_int8 import {case}; {case}()")


# ---- what the tactics accept (no kernel runs) -----------------------------------------------------------------------

def test_tactics_take_what_their_kernels_run_and_decline_the_rest():
    pytest.importorskip("triton")
    from braze.kernels.cuda.int8 import (CublasLtQConv1x1Tactic, CublasLtQGemmTactic, TritonQConvTactic,
                                         TritonQGemmTactic)

    cuda = Target(torch.device("cuda"))
    gemm, conv3, conv1 = TritonQGemmTactic(), TritonQConvTactic(), CublasLtQConv1x1Tactic()
    node = qgemm_case((4, 6), 40, 24)[0]
    assert gemm.supports(node, cuda) and CublasLtQGemmTactic().supports(node, cuda)
    assert not gemm.supports(node, CPU) and not conv3.supports(node, cuda)
    small_m = qgemm_case((16,), 40, 24)[0]  # torch._int_mm needs M > 16, K and N multiples of 8
    odd_k = qgemm_case((20,), 42, 24)[0]
    assert gemm.supports(small_m, cuda) and gemm.supports(odd_k, cuda)
    assert not CublasLtQGemmTactic().supports(small_m, cuda) and not CublasLtQGemmTactic().supports(odd_k, cuda)
    node = qconv_case()[0]
    assert conv3.supports(node, cuda) and not conv1.supports(node, cuda)
    assert conv1.supports(qconv_case((2, 16, 5, 5), 24, (1, 1), (2, 2), (0,) * 4)[0], cuda)
    assert not conv1.supports(qconv_case((2, 16, 5, 5), 24, (1, 1), (1, 1), (1,) * 4)[0], cuda)
    grouped = qconv_case((2, 16, 5, 5), 16, (3, 3))[0]
    grouped.inputs[1] = Tensor("w", DType.int8, (16, 8, 3, 3), value=torch.ones(16, 8, 3, 3, dtype=torch.int8))
    grouped.attrs["group"] = 2
    assert not conv3.supports(grouped, cuda)
    node = qgemm_case((4, 6), 40, 24)[0]
    node.inputs[1] = Tensor("w", DType.int8, (40, 24))  # a weight that is not a constant
    assert not gemm.supports(node, cuda)
    node = qgemm_case((4, 6), 40, 24, out="fp32")[0]
    node.outputs[0].dtype = DType.int8  # an integer output without an out_scale
    assert not gemm.supports(node, cuda)
    node = qgemm_case((4, 6), 40, 24, residual="fp32")[0]
    node.inputs[4].shape = (24,)  # a broadcast residual
    assert not gemm.supports(node, cuda)
    node = qgemm_case((4, 6), 40, 24)[0]
    node.inputs[2] = Tensor("w_scale", DType.float32, (3,), value=torch.ones(3))  # neither one nor one per column
    assert not gemm.supports(node, cuda)
    node = qgemm_case((4, 6), 40, 24)[0]
    node.inputs[1] = Tensor("w", DType.int8, (70000, 24), value=torch.zeros(70000, 24, dtype=torch.int8))
    assert not gemm.supports(node, cuda)  # K so long that an int32 accumulator could overflow
