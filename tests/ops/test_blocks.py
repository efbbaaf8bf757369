import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx.reference import ReferenceEvaluator

import braze

from .harness import check_op, feeds_of, make_model, rand, run_braze


def i64(*v):
    return np.array(v, np.int64)


def _raises(op_type, inputs, attrs, match, *, opset, constants=()):
    model = make_model(op_type, inputs, attrs, opset=opset, constants=constants)
    with pytest.raises(braze.BrazeError, match=f"{op_type.lower()}_node.*{match}"):
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False), braze.BuilderConfig())
        engine.create_execution_context().infer(feeds_of(inputs, constants))


# -- Col2Im ------------------------------------------------------------------------------------

COL2IM_2D = [
    ((5, 5), (2, 2), {}),
    ((6, 7), (3, 2), {"strides": [2, 1]}),
    ((5, 6), (2, 3), {"pads": [1, 0, 2, 1]}),
    ((8, 8), (2, 2), {"dilations": [2, 3], "strides": [1, 2], "pads": [1, 1, 1, 1]}),
]


def blocks_of(image, block, attrs):
    """How many sliding blocks fit (the L of Col2Im's input)."""
    rank = len(image)
    strides = attrs.get("strides", [1] * rank)
    dilations = attrs.get("dilations", [1] * rank)
    pads = attrs.get("pads", [0] * 2 * rank)
    return int(np.prod([(i + pads[a] + pads[a + rank] - d * (b - 1) - 1) // s + 1
                        for a, (i, b, s, d) in enumerate(zip(image, block, strides, dilations))]))


@pytest.mark.parametrize("image,block,attrs", COL2IM_2D)
def test_col2im_2d(image, block, attrs):
    x = rand(2, 3 * int(np.prod(block)), blocks_of(image, block, attrs))
    got = check_op("Col2Im", {"x": x, "image": i64(*image), "block": i64(*block)}, attrs, opset=18,
                   constants=("image", "block"))[0]
    rank = len(image)
    pads = attrs.get("pads", [0] * 4)
    if pads[:rank] == pads[rank:]:  # PyTorch's fold takes symmetric padding only
        fold = F.fold(torch.from_numpy(x), image, block, dilation=attrs.get("dilations", 1),
                      padding=pads[:rank], stride=attrs.get("strides", 1))
        np.testing.assert_allclose(got, fold.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("image,block,attrs", [((3, 4, 5), (1, 2, 2), {}),
                                                ((4, 4, 3), (2, 2, 2), {"strides": [2, 1, 1], "pads": [1] * 6})])
def test_col2im_3d(image, block, attrs):
    x = rand(1, 2 * int(np.prod(block)), blocks_of(image, block, attrs))
    check_op("Col2Im", {"x": x, "image": i64(*image), "block": i64(*block)}, attrs, opset=18,
             constants=("image", "block"))


def test_col2im_errors():
    x = rand(1, 4, 16)
    _raises("Col2Im", {"x": rand(1, 4, 15), "image": i64(5, 5), "block": i64(2, 2)}, {}, "does not fit", opset=18,
            constants=("image", "block"))
    _raises("Col2Im", {"x": x, "image": i64(5, 5), "block": i64(2, 2, 1)}, {}, "same spatial axes", opset=18,
            constants=("image", "block"))
    _raises("Col2Im", {"x": rand(1, 5, 16), "image": i64(5, 5), "block": i64(2, 2)}, {}, "does not fit",
            opset=18, constants=("image", "block"))


# -- DeformConv --------------------------------------------------------------------------------

def deform_inputs(n, c, m, spatial, kernel, *, group=1, offset_group=1, attrs=None, mask=False, bias=False):
    attrs = attrs or {}
    rank = len(spatial)
    strides = attrs.get("strides", [1] * rank)
    dilations = attrs.get("dilations", [1] * rank)
    pads = attrs.get("pads", [0] * 2 * rank)
    out = [(i + pads[a] + pads[a + rank] - d * (k - 1) - 1) // s + 1
           for a, (i, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations))]
    taps = int(np.prod(kernel))
    inputs = {"x": rand(n, c, *spatial), "w": rand(m, c // group, *kernel, seed=1),
              "offset": rand(n, offset_group * taps * rank, *out, low=-1.5, high=1.5, seed=2)}
    inputs["b"] = rand(m, seed=3) if bias else None
    inputs["mask"] = rand(n, offset_group * taps, *out, low=0, high=1, seed=4) if mask else None
    return inputs


def check_deform(inputs, attrs):
    """Against ONNX's reference evaluator (onnxruntime has no DeformConv kernel)."""
    model = make_model("DeformConv", inputs, attrs, opset=19)
    feeds = feeds_of(inputs)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    np.testing.assert_allclose(run_braze(model, feeds)[0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs", [{}, {"pads": [1, 1, 1, 1]}, {"strides": [2, 1], "pads": [0, 1, 1, 0]},
                                   {"dilations": [2, 1]}])
def test_deform_conv(attrs):
    check_deform(deform_inputs(2, 3, 4, (6, 5), (3, 2), attrs=attrs), attrs)


def test_deform_conv_groups_mask_bias():
    attrs = {"group": 2, "offset_group": 2, "pads": [1, 1, 1, 1]}
    check_deform(deform_inputs(1, 4, 6, (5, 5), (2, 2), group=2, offset_group=2, attrs=attrs, mask=True, bias=True),
                 attrs)


def test_deform_conv_zero_offsets_is_conv():
    """With zero offsets and no mask DeformConv is Conv, in 1-D and 3-D too."""
    for spatial, kernel, attrs in [((9,), (3,), {"pads": [1, 1], "strides": [2]}),
                                   ((4, 5, 4), (2, 3, 2), {"dilations": [1, 1, 2]})]:
        inputs = deform_inputs(2, 2, 3, spatial, kernel, attrs=attrs, bias=True)
        inputs["offset"] = np.zeros_like(inputs["offset"])
        got = run_braze(make_model("DeformConv", inputs, attrs, opset=19), feeds_of(inputs))[0]
        conv = check_op("Conv", {"x": inputs["x"], "w": inputs["w"], "b": inputs["b"]}, attrs, opset=11)[0]
        np.testing.assert_allclose(got, conv, rtol=1e-5, atol=1e-5)


def test_deform_conv_1d_offsets():
    """A 1-D offset of exactly one pixel shifts the input by one (zero past the end)."""
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 1, 6)
    w = np.ones((1, 1, 1), np.float32)
    offset = np.ones((1, 1, 6), np.float32)
    got = run_braze(make_model("DeformConv", {"x": x, "w": w, "offset": offset}, opset=22),
                    {"x": x, "w": w, "offset": offset})[0]
    np.testing.assert_array_equal(got.reshape(-1), [2, 3, 4, 5, 6, 0])


def test_deform_conv_errors():
    inputs = deform_inputs(1, 2, 2, (4, 4), (2, 2))
    _raises("DeformConv", {**inputs, "offset": rand(1, 7, 3, 3)}, {}, "offset must have shape", opset=19)
    _raises("DeformConv", {**inputs, "mask": rand(1, 3, 3, 3)}, {}, "mask must have shape", opset=19)
    _raises("DeformConv", inputs, {"group": 2}, "do not fit", opset=19)
    _raises("DeformConv", inputs, {"kernel_shape": [3, 3]}, "kernel_shape", opset=19)
    _raises("DeformConv", {**inputs, "b": rand(3)}, {}, "B must have shape", opset=19)
