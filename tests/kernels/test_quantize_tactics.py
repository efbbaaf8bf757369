"""The fast QuantizeLinear/DequantizeLinear tactics (kernels/quantize.py) give exactly the reference's answer:
ties, saturation, NaN and infinities, per tensor and per axis, zero points, every float input type."""

from __future__ import annotations

import pytest
import torch

from braze.device import Target
from braze.ir import DType, Node, Tensor
from braze.kernels.quantize import DequantizeTactic, QuantizeTactic
from braze.ops import REGISTRY
from braze.ops.opdef import input_dtypes

CPU = Target.parse("cpu")


def values(shape, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 4
    flat = x.view(-1)
    flat[:8] = torch.tensor([0.5, 1.5, -0.5, -2.5, 1e6, -1e6, float("inf"), -float("inf")]) * 0.1  # ties, saturation
    return x.to(dtype)


def run_both(node: Node, args: list[torch.Tensor | None], tactic) -> tuple[torch.Tensor, torch.Tensor]:
    expected = REGISTRY.for_node(node).run(args, node.attrs, 1, input_dtypes(node))[0]
    out = torch.empty(tuple(node.outputs[0].shape), dtype=node.outputs[0].dtype.torch)
    assert tactic.supports(node, CPU)
    tactic.compile(node, {}, CPU)([args[0], None, None], [out])
    return out, expected


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("out", [DType.int8, DType.uint8])
@pytest.mark.parametrize("per_axis", [False, True], ids=["tensor", "axis"])
@pytest.mark.parametrize("zero", [0, 3])
def test_quantize_matches_the_reference(x_dtype, out, per_axis, zero):
    x = values((2, 4, 5, 3), x_dtype)
    scale = torch.tensor([0.05, 0.1, 0.2, 0.025]) if per_axis else torch.tensor(0.1)
    zp = torch.full(scale.shape, zero + (128 if out == DType.uint8 else 0), dtype=out.torch)
    node = Node("QuantizeLinear", [Tensor("x", DType.from_torch(x_dtype), tuple(x.shape)),
                                   Tensor("s", DType.float32, tuple(scale.shape), scale),
                                   Tensor("z", out, tuple(zp.shape), zp)],
                [Tensor("y", out, tuple(x.shape))], {"axis": 1}, name="q", version=21)
    got, want = run_both(node, [x, scale, zp], QuantizeTactic())
    assert torch.equal(got, want)


@pytest.mark.parametrize("out", [DType.float32, DType.float16])
@pytest.mark.parametrize("x_dtype", [DType.int8, DType.uint8])
@pytest.mark.parametrize("per_axis", [False, True], ids=["tensor", "axis"])
def test_dequantize_matches_the_reference(out, x_dtype, per_axis):
    low, high = (-128, 128) if x_dtype == DType.int8 else (0, 256)
    x = torch.randint(low, high, (2, 4, 5), generator=torch.Generator().manual_seed(1), dtype=x_dtype.torch)
    scale = torch.tensor([0.05, 0.1, 0.2, 0.025]) if per_axis else torch.tensor(0.1)
    zp = torch.full(scale.shape, 7, dtype=x_dtype.torch)
    attrs = {"axis": 1, **({"output_dtype": 10} if out == DType.float16 else {})}
    node = Node("DequantizeLinear", [Tensor("x", x_dtype, tuple(x.shape)),
                                     Tensor("s", DType.float32, tuple(scale.shape), scale),
                                     Tensor("z", x_dtype, tuple(zp.shape), zp)],
                [Tensor("y", out, tuple(x.shape))], attrs, name="dq", version=23)
    got, want = run_both(node, [x, scale, zp], DequantizeTactic())
    assert torch.equal(got, want)


def test_blocked_or_computed_scales_are_left_to_the_reference():
    x = Tensor("x", DType.float32, (4, 8))
    computed = Node("QuantizeLinear", [x, Tensor("s", DType.float32, ()), None], [Tensor("y", DType.uint8, (4, 8))],
                    {}, name="q", version=21)
    blocked = Node("QuantizeLinear", [x, Tensor("s", DType.float32, (4, 2), torch.ones(4, 2)), None],
                   [Tensor("y", DType.uint8, (4, 8))], {"axis": 1, "block_size": 4}, name="q", version=21)
    assert not QuantizeTactic().supports(computed, CPU) and not QuantizeTactic().supports(blocked, CPU)
