"""The quantized fused kinds' references equal the composition they replace: dequantize -> float op -> quantize."""

import pytest
import torch
import torch.nn.functional as F

from braze.ops import REGISTRY
from braze.ops.fused import activate

INT8, UINT8, FLOAT, FLOAT16 = 3, 2, 1, 10


def _q(y, scale, zp, dtype):
    low, high = (-128, 127) if dtype == torch.int8 else (0, 255)
    return (torch.round(y.double() / scale) + zp).clamp(low, high).to(dtype)


def _run(name, args, **attrs):
    opdef = REGISTRY.resolve(name, "braze", 1)
    return opdef.run(args, opdef.parse_attrs(attrs, name), 1, None)[0]


@pytest.mark.parametrize("out", ["float", "float16", "int8", "uint8"])
@pytest.mark.parametrize("residual", [None, "float", "int8"])
@pytest.mark.parametrize("zp", [0, 7])
def test_qconv_is_dq_conv_q(out, residual, zp):
    g = torch.Generator().manual_seed(0)
    x_q = torch.randint(-128, 128, (2, 6, 7, 7), generator=g, dtype=torch.int8)
    w_q = torch.randint(-127, 128, (8, 3, 3, 3), generator=g, dtype=torch.int8)
    w_scale, b = torch.rand(8, generator=g) * 0.01 + 1e-3, torch.randn(8, generator=g)
    x_scale = 0.02
    x = (x_q.double() - zp) * x_scale
    w = w_q.double() * w_scale.double().view(-1, 1, 1, 1)
    y = F.conv2d(x, w, b.double(), stride=2, padding=1, groups=2)
    args, attrs = [x_q, w_q, w_scale, b], {}
    if residual == "float":
        r = torch.randn(y.shape, generator=g)
        args.append(r)
        y = y + r.double()
    elif residual == "int8":
        r = torch.randint(-128, 128, tuple(y.shape), generator=g, dtype=torch.int8)
        args.append(r)
        attrs.update(residual_scale=0.05, residual_zero_point=-3)
        y = y + (r.double() + 3) * 0.05
    y = activate(y, "relu", [])
    if out in ("int8", "uint8"):
        dtype = torch.int8 if out == "int8" else torch.uint8
        attrs.update(out_scale=0.1, out_zero_point=5, output_dtype=INT8 if out == "int8" else UINT8)
        expected = _q(y, 0.1, 5, dtype)
    else:
        attrs.update(output_dtype=FLOAT if out == "float" else FLOAT16)
        expected = y.to(torch.float32 if out == "float" else torch.float16)
    actual = _run("QConv", args, x_scale=x_scale, x_zero_point=zp, strides=[2, 2], pads=[1, 1, 1, 1], group=2,
                  activation="relu", **attrs)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if actual.dtype.is_floating_point:
        torch.testing.assert_close(actual.double(), expected.double(), rtol=1e-3 if out == "float16" else 1e-5,
                                   atol=1e-3 if out == "float16" else 1e-5)
    else:  # one step: the float32 scaling and float64 composition may round a tie differently
        assert (actual.int() - expected.int()).abs().max() <= 1


def test_qgemm_is_dq_matmul_q():
    g = torch.Generator().manual_seed(1)
    x_q = torch.randint(0, 256, (3, 5, 16), generator=g, dtype=torch.uint8)
    w_q = torch.randint(-127, 128, (16, 12), generator=g, dtype=torch.int8)
    w_scale, b, r = torch.rand(12, generator=g) * 0.01, torch.randn(12, generator=g), torch.randn(3, 5, 12)
    x = (x_q.double() - 128) * 0.03
    y = activate(x @ (w_q.double() * w_scale.double()) + b.double(), "gelu", []) + r.double()
    actual = _run("QGemm", [x_q, w_q, w_scale, b, r], x_scale=0.03, x_zero_point=128, activation="gelu",
                  output_dtype=FLOAT)
    torch.testing.assert_close(actual.double(), y, rtol=1e-5, atol=1e-5)
