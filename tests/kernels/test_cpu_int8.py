"""The oneDNN INT8 tactics (QConv, QGemm) against the references in braze/ops/qfused.py: geometry, groups,
input and output types, residual kinds, activations (fused by oneDNN or applied after), layouts, and NaN/inf in a
float residual; all within braze.testing.quantized_tolerance (one step of the output)."""

import math

import pytest
import torch

from braze.device import Target
from braze.ir import DType, Node, Tensor
from braze.kernels.cpu.int8 import OneDnnQConvTactic, OneDnnQGemmTactic, exact_int8_available
from braze.ops.kinds import DOMAIN, Kind
from braze.ops.qfused import qconv, qgemm
from braze.testing import assert_close, nonfinite_mismatch, quantized_tolerance

pytestmark = pytest.mark.skipif(not exact_int8_available(), reason="no exact oneDNN INT8 on this CPU (VNNI)")
CPU = Target.parse("cpu")
CODES = {"float32": 1, "float16": 10, "bfloat16": 16, "int8": 3, "uint8": 2}
X_SCALE = 0.02


def _ints(dtype: torch.dtype, shape, g: torch.Generator) -> torch.Tensor:
    info = torch.iinfo(dtype)
    return torch.randint(info.min, info.max + 1, tuple(shape), generator=g, dtype=dtype)


class Layer:
    """A QConv or QGemm node with its runtime inputs (constants included) and the tolerance step."""

    def __init__(self, op: Kind, x_shape, w: torch.Tensor, *, x_dtype=torch.uint8, zp=7, bias=True, residual=None,
                 out="float32", act="none", params=(), seed=0, **geometry):
        g = torch.Generator().manual_seed(seed)
        self.op, self.ref = op, qconv if op == Kind.QCONV else qgemm
        channels = w.shape[0] if op == Kind.QCONV else w.shape[1]
        x = _ints(x_dtype, x_shape, g)
        w_scale = torch.rand(channels, generator=g) * 0.01 + 1e-3
        b = torch.randn(channels, generator=g) * 2 if bias else None
        self.step = X_SCALE * float(w_scale.max())
        self.attrs = {"x_scale": X_SCALE, "x_zero_point": zp, "activation": act, "act_params": list(params),
                      "output_dtype": 1, **geometry}
        y_shape = self.ref.run([x, w, w_scale, b], self.attrs, 1)[0].shape
        self.inputs = [x, w, w_scale, b]
        if residual == "float":
            self.inputs.append(torch.randn(tuple(y_shape), generator=g) * 3)
        elif residual in ("int8", "uint8"):
            self.inputs.append(_ints(getattr(torch, residual), y_shape, g))
            self.attrs.update(residual_scale=0.05, residual_zero_point=3 if residual == "int8" else 130)
        if out in ("int8", "uint8"):  # an out_scale that spans the range, a little saturated
            amax = float(self.ref.run(self.inputs, self.attrs, 1)[0].abs().max())
            self.attrs.update(out_scale=amax / 100, out_zero_point=5 if out == "int8" else 120)
        self.attrs["output_dtype"] = CODES[out]
        tensors = [Tensor("x", DType.parse(x_dtype), tuple(x_shape)), Tensor("w", DType.int8, tuple(w.shape), w),
                   Tensor("w_scale", DType.float32, (channels,), w_scale),
                   None if b is None else Tensor("b", DType.float32, (channels,), b)]
        if residual is not None:
            r = self.inputs[4]
            tensors.append(Tensor("r", DType.parse(r.dtype), tuple(r.shape)))
        self.node = Node(op, tensors, [Tensor("y", DType.parse(out), tuple(y_shape))], self.attrs, name="layer",
                         domain=DOMAIN)
        self.tactic = OneDnnQConvTactic() if op == Kind.QCONV else OneDnnQGemmTactic()

    def check(self, channels_last: bool = False, planned: bool = True) -> torch.Tensor:
        assert self.tactic.supports(self.node, CPU)
        expected = self.ref.run(self.inputs, self.attrs, 1)[0]
        args = [None if i in self.tactic.owned_inputs else v for i, v in enumerate(self.inputs)]
        if channels_last:
            args = [a if a is None or a.dim() != 4 else a.contiguous(memory_format=torch.channels_last) for a in args]
        out = None
        if planned:
            out = torch.full(expected.shape, 77, dtype=expected.dtype)
            if channels_last:
                out = out.contiguous(memory_format=torch.channels_last)
        produced = self.tactic.compile(self.node, {}, CPU)(args, [out])
        actual = out if planned else produced[0]
        assert (produced is None) == planned and actual.dtype == expected.dtype and actual.shape == expected.shape
        tol = quantized_tolerance(expected.dtype, self.step)
        assert_close(actual.double(), expected.double(), rtol=tol.rtol, atol=tol.atol)
        if not expected.dtype.is_floating_point:  # one off only where a value lies near a rounding tie
            assert (actual != expected).float().mean() < 0.01
        return actual


def conv_layer(*, c=8, m=12, k=(3, 3), group=1, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1),
               x_shape=None, **kwargs) -> Layer:
    w = _ints(torch.int8, (m, c // group, *k), torch.Generator().manual_seed(1))
    return Layer(Kind.QCONV, x_shape or (2, c, 11, 13), w, group=group, strides=list(strides), pads=list(pads),
                 dilations=list(dilations), kernel_shape=list(k), **kwargs)


def gemm_layer(x_shape=(3, 5, 64), n=48, **kwargs) -> Layer:
    return Layer(Kind.QGEMM, x_shape, _ints(torch.int8, (x_shape[-1], n), torch.Generator().manual_seed(1)), **kwargs)


@pytest.mark.parametrize("geometry", [dict(), dict(strides=(2, 1)), dict(pads=(0, 1, 2, 1)), dict(dilations=(2, 1)),
                                      dict(group=2), dict(group=4, m=8), dict(c=8, m=8, group=8),
                                      dict(c=8, m=16, group=8, strides=(2, 2)), dict(k=(1, 1), pads=(0, 0, 0, 0)),
                                      dict(k=(5, 3), pads=(2, 1, 2, 1), strides=(1, 2)), dict(bias=False)])
@pytest.mark.parametrize("out", ["int8", "float32"])
def test_conv_geometry(geometry, out):
    conv_layer(out=out, act="relu", **geometry).check()


@pytest.mark.parametrize("x_dtype,zp", [(torch.uint8, 0), (torch.uint8, 200), (torch.int8, 0), (torch.int8, -17)])
def test_conv_input_types_and_zero_points(x_dtype, zp):
    conv_layer(x_dtype=x_dtype, zp=zp, out="uint8", act="relu", pads=(1, 0, 0, 1)).check()


@pytest.mark.parametrize("residual", [None, "float", "int8", "uint8"])
@pytest.mark.parametrize("out", ["float32", "float16", "bfloat16", "int8", "uint8"])
@pytest.mark.parametrize("act", ["none", "relu", "silu"])
def test_conv_residual_output_activation(residual, out, act):
    conv_layer(residual=residual, out=out, act=act, x_dtype=torch.int8, zp=-3).check()


@pytest.mark.parametrize("act,params", [("clip", [0.0, 6.0]), ("clip", [-math.inf, 3.0]), ("hardswish", []),
                                        ("leaky_relu", [0.1]), ("sigmoid", []), ("gelu", []), ("elu", [1.0])])
@pytest.mark.parametrize("out", ["int8", "float32"])
def test_conv_activations(act, params, out):
    conv_layer(out=out, act=act, params=params).check()


@pytest.mark.parametrize("residual,out", [(None, "int8"), ("int8", "int8"), ("float", "uint8"), ("uint8", "float32")])
def test_conv_channels_last_and_unplanned_outputs(residual, out):
    layer = conv_layer(residual=residual, out=out, act="relu")
    layer.check(channels_last=True)
    layer.check(planned=False)


@pytest.mark.parametrize("x_shape", [(3, 5, 64), (7, 64), (1, 256)])
@pytest.mark.parametrize("x_dtype,zp", [(torch.uint8, 128), (torch.int8, 0), (torch.int8, 9)])
def test_gemm_shapes_and_input_types(x_shape, x_dtype, zp):
    gemm_layer(x_shape, x_dtype=x_dtype, zp=zp, out="int8").check()


@pytest.mark.parametrize("residual", [None, "float", "int8", "uint8"])
@pytest.mark.parametrize("out", ["float32", "float16", "bfloat16", "int8", "uint8"])
@pytest.mark.parametrize("act", ["none", "gelu"])
def test_gemm_residual_output_activation(residual, out, act):
    gemm_layer(residual=residual, out=out, act=act).check()


@pytest.mark.parametrize("act,params", [("relu", []), ("gelu_tanh", []), ("silu", []), ("hardswish", []),
                                        ("tanh", []), ("leaky_relu", [0.2]), ("clip", [-1.0, 1.0]),
                                        ("sigmoid", []), ("hardsigmoid", [0.2, 0.5]), ("elu", [0.5])])
@pytest.mark.parametrize("out", ["uint8", "float32"])
def test_gemm_activations(act, params, out):
    gemm_layer(out=out, act=act, params=params, bias=act != "relu").check()


def test_gemm_unplanned_output():
    gemm_layer(residual="int8", out="int8").check(planned=False)
    gemm_layer(residual="float", out="float16", act="relu").check(planned=False)


def _poison(layer: Layer) -> None:
    r = layer.inputs[4].view(-1)
    r[::7], r[1::11], r[2::13] = float("nan"), float("inf"), -float("inf")


def _check_poisoned(layer: Layer) -> None:
    """Within tolerance everywhere; where the residual is not finite, exactly the reference's NaN and infinities
    (a float output) or exactly its integers (a requantized output: saturated, or whatever NaN casts to)."""
    actual = layer.check()
    expected = layer.ref.run(layer.inputs, layer.attrs, 1)[0]
    if actual.dtype.is_floating_point:
        assert nonfinite_mismatch(actual, expected) is None
    else:
        poisoned = ~torch.isfinite(layer.inputs[4])
        assert torch.equal(actual[poisoned], expected[poisoned])


@pytest.mark.parametrize("act,params", [("none", []), ("relu", []), ("clip", [0.0, 6.0]), ("sigmoid", []),
                                        ("leaky_relu", [0.1])])
@pytest.mark.parametrize("out", ["float32", "float16", "int8"])
def test_conv_float_residual_nan_and_inf_propagate_as_the_reference(act, params, out):
    layer = conv_layer(residual="float", out=out, act=act, params=params)
    _poison(layer)
    _check_poisoned(layer)


@pytest.mark.parametrize("act", ["none", "relu", "gelu"])
@pytest.mark.parametrize("out", ["float32", "bfloat16", "uint8"])
def test_gemm_float_residual_nan_and_inf_propagate_as_the_reference(act, out):
    layer = gemm_layer(residual="float", out=out, act=act)
    _poison(layer)
    _check_poisoned(layer)


def _declined(layer: Layer, **changes) -> bool:
    node = layer.node
    inputs = list(node.inputs) + [None] * (5 - len(node.inputs))
    for i, t in changes.pop("inputs", {}).items():
        inputs[i] = t
    attrs = {**node.attrs, **changes}
    return not layer.tactic.supports(Node(node.op, inputs, node.outputs, attrs, name="layer", domain=DOMAIN), CPU)


def test_what_cannot_run_exactly_is_left_to_the_reference():
    conv, gemm = conv_layer(x_dtype=torch.int8, zp=0), gemm_layer()
    w_u8 = Tensor("w", DType.uint8, tuple(conv.inputs[1].shape), conv.inputs[1].view(torch.uint8))
    w_var = Tensor("w", DType.int8, tuple(conv.inputs[1].shape))
    zero_scale = Tensor("w_scale", DType.float32, (12,), torch.zeros(12))
    nan_bias = Tensor("b", DType.float32, (12,), torch.full((12,), float("nan")))
    assert _declined(conv, inputs={1: w_u8})  # uint8 weights
    assert _declined(conv, inputs={1: w_var})  # a weight known only at run time
    assert _declined(conv, inputs={2: zero_scale})
    assert _declined(conv, inputs={3: nan_bias})
    assert _declined(conv, x_zero_point=200)  # outside int8's range
    assert _declined(conv, x_scale=0.0)
    assert _declined(conv, out_scale=0.1, output_dtype=CODES["int8"], out_zero_point=128)
    assert _declined(conv, output_dtype=CODES["uint8"])  # an integer output needs its scale
    assert _declined(gemm, residual_scale=0.1, inputs={4: Tensor("r", DType.float32, (3, 5, 48))})
    assert _declined(gemm, inputs={4: Tensor("r", DType.float32, (48,))})  # a broadcast residual
    assert not _declined(gemm)
