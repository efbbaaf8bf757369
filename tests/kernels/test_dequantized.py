"""The float candidate for INT8 layers (kernels/dequantized.py) against the QConv/QGemm references: float
outputs within the float type's bound, requantized outputs within one step, NaN in a float residual kept."""

from __future__ import annotations

import pytest
import torch

from braze.device import Target
from braze.ir import DType, Node, Tensor
from braze.kernels.dequantized import DequantizedTactic
from braze.ops import REGISTRY
from braze.ops.kinds import DOMAIN, Kind
from braze.testing import QUANTIZED_STEPS, rel_l2, tolerance

CPU = Target.parse("cpu")


def layer(kind: str, out: str, residual: str | None, seed: int = 0) -> tuple[Node, list]:
    g = torch.Generator().manual_seed(seed)
    conv = kind == Kind.QCONV
    x_shape, w_shape, y_shape = ((2, 8, 9, 9), (16, 4, 3, 3), (2, 16, 5, 5)) if conv else ((3, 5, 24), (24, 16),
                                                                                             (3, 5, 16))
    x = torch.randint(0, 256, x_shape, generator=g, dtype=torch.uint8)
    w = torch.randint(-127, 128, w_shape, generator=g, dtype=torch.int8)
    scale, bias = torch.rand(16, generator=g) * 0.01 + 0.001, torch.randn(16, generator=g)
    attrs = {"x_scale": 0.02, "x_zero_point": 100, "activation": "relu"}
    if conv:
        attrs.update(strides=[2, 2], pads=[1, 1, 1, 1], group=2)
    inputs = [Tensor("x", DType.uint8, x_shape), Tensor("w", DType.int8, w_shape, w),
              Tensor("s", DType.float32, (16,), scale), Tensor("b", DType.float32, (16,), bias)]
    args = [x, w, scale, bias]
    if residual == "float":
        r = torch.randn(y_shape, generator=g)
        r.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
        inputs.append(Tensor("r", DType.float32, y_shape))
        args.append(r)
    elif residual == "int8":
        inputs.append(Tensor("r", DType.int8, y_shape))
        args.append(torch.randint(-128, 128, y_shape, generator=g, dtype=torch.int8))
        attrs.update(residual_scale=0.05, residual_zero_point=2)
    out_dtype = DType.int8 if out == "int8" else DType.float32
    attrs["output_dtype"] = 3 if out == "int8" else 1
    if out == "int8":
        attrs.update(out_scale=0.1, out_zero_point=-3)
    node = Node(kind, inputs, [Tensor("y", out_dtype, y_shape)], attrs, name="layer", domain=DOMAIN)
    return node, args


@pytest.mark.parametrize("residual", [None, "float", "int8"])
@pytest.mark.parametrize("out", ["float", "int8"])
@pytest.mark.parametrize("kind", [Kind.QCONV, Kind.QGEMM])
def test_float_candidate_matches_the_reference(kind, out, residual):
    node, args = layer(kind, out, residual)
    tactic = DequantizedTactic()
    assert tactic.supports(node, CPU)
    expected = REGISTRY.for_node(node).run(args, node.attrs, 1, None)[0]
    kernel_args = [None if i in tactic.owned_inputs else a for i, a in enumerate(args)]
    actual = tactic.compile(node, {}, CPU)(kernel_args, [None])[0]
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if out == "int8":
        assert (actual.int() - expected.int()).abs().max() <= QUANTIZED_STEPS
    else:
        assert torch.equal(actual.isnan(), expected.isnan()) and torch.equal(actual.isinf(), expected.isinf())
        finite = expected.isfinite()
        assert rel_l2(actual[finite], expected[finite]) <= tolerance(DType.float32).rel_l2
