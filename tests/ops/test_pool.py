import numpy as np
import onnx.helper as oh
import pytest
from onnx import TensorProto

import braze
from braze.testing import assert_close

from .harness import check_bfloat16, check_op, check_reference, feeds_of, make_model, rand, run_braze, run_ort






def typed(model, rank):
    """Type the outputs ONNX's shape inference gave up on (bad nodes, shapes from values): the checkers need it."""
    for out in model.graph.output:
        if not out.type.tensor_type.HasField("shape"):
            out.CopyFrom(oh.make_tensor_value_info(out.name, TensorProto.FLOAT, [f"d{i}" for i in range(rank)]))
    return model


def expect_error(op_type, inputs, attrs, match, named=True, **kw):
    model = typed(make_model(op_type, inputs, attrs, **kw), len(inputs["x"].shape))
    with pytest.raises(braze.BrazeError, match=match) as info:
        run_braze(model, feeds_of(inputs))
    assert not named or f"{op_type.lower()}_node" in str(info.value)


WINDOWS = [
    # x shape, attrs
    ((2, 3, 11), {"kernel_shape": [3]}),
    ((1, 2, 10), {"kernel_shape": [4], "strides": [3], "pads": [1, 2], "ceil_mode": 1}),
    ((2, 3, 7, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((2, 3, 7, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 3, 7, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ((1, 3, 7, 8), {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [0, 1, 2, 0]}),
    ((1, 3, 7, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 2, 1], "ceil_mode": 1}),
    ((1, 2, 5, 5), {"kernel_shape": [2, 2], "strides": [3, 3], "pads": [0, 0, 1, 1], "ceil_mode": 1}),
    ((1, 2, 9, 8), {"kernel_shape": [5, 5], "pads": [2, 2, 2, 2], "strides": [3, 3]}),
    ((1, 3, 7, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 3, 7, 8), {"kernel_shape": [2, 4], "strides": [2, 3], "auto_pad": "SAME_LOWER"}),
    ((1, 3, 7, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}),
    ((1, 2, 5, 6, 7), {"kernel_shape": [2, 3, 3], "strides": [1, 2, 2], "pads": [1, 1, 1, 0, 1, 1]}),
    ((1, 2, 5, 6, 7), {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2], "ceil_mode": 1}),
]
DILATED = [
    ((1, 2, 12), {"kernel_shape": [3], "dilations": [2], "pads": [1, 2]}),
    ((1, 3, 9, 10), {"kernel_shape": [2, 3], "dilations": [2, 3], "strides": [1, 2]}),
    ((1, 3, 9, 10), {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [2, 2, 2, 2], "ceil_mode": 1,
                     "strides": [2, 2]}),
    ((1, 3, 9, 10), {"kernel_shape": [3, 2], "dilations": [2, 1], "pads": [1, 0, 2, 1], "strides": [2, 2]}),
    ((1, 2, 6, 7, 6), {"kernel_shape": [2, 2, 2], "dilations": [2, 1, 2], "strides": [2, 2, 1]}),
]


@pytest.mark.parametrize("xs,attrs", WINDOWS + DILATED)
def test_max_pool(xs, attrs):
    check_op("MaxPool", {"x": rand(*xs)}, attrs)


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("xs,attrs", WINDOWS[1:9:2] + DILATED[1:4] + WINDOWS[-2:-1])
def test_max_pool_indices(xs, attrs, storage_order):
    check_op("MaxPool", {"x": rand(*xs)}, {**attrs, "storage_order": storage_order}, n_outputs=2)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int8, np.uint8])
def test_max_pool_dtypes(dtype):
    x = rand(1, 3, 7, 8, dtype=dtype, low=0 if dtype == np.uint8 else -100, high=100)
    check_op("MaxPool", {"x": x}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 2]}, opset=12)


@pytest.mark.parametrize("opset", [1, 8, 10, 11, 12, 22])
def test_max_pool_opsets(opset):
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 2]}
    check_op("MaxPool", {"x": rand(1, 2, 7, 8)}, attrs, opset=opset, n_outputs=1 if opset < 8 else 2)


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("xs,attrs", WINDOWS)
def test_average_pool(xs, attrs, count_include_pad):
    check_op("AveragePool", {"x": rand(*xs)}, {**attrs, "count_include_pad": count_include_pad})


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("xs,attrs", DILATED)
def test_average_pool_dilated(xs, attrs, count_include_pad):
    check_op("AveragePool", {"x": rand(*xs)}, {**attrs, "count_include_pad": count_include_pad}, opset=19)


@pytest.mark.parametrize("opset", [7, 10, 11, 19, 22])
def test_average_pool_opsets(opset):
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 2], "count_include_pad": 1}
    check_op("AveragePool", {"x": rand(1, 2, 7, 8)}, attrs, opset=opset)


@pytest.mark.parametrize("xs", [(1, 3, 7, 8), (1, 2, 4, 5, 6)])
def test_average_pool_float16(xs):
    check_op("AveragePool", {"x": rand(*xs, dtype=np.float16)}, {"kernel_shape": [2] * (len(xs) - 2), "ceil_mode": 1,
             "strides": [2] * (len(xs) - 2)})


def test_average_pool_float64():
    check_reference("AveragePool", {"x": rand(1, 3, 7, 8, dtype=np.float64)},
                    {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1})


def test_average_pool_4d_spatial():
    check_reference("AveragePool", {"x": rand(1, 2, 4, 5, 3, 4)},
                    {"kernel_shape": [2, 3, 2, 2], "strides": [2, 1, 1, 2]})


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("xs,attrs", [w for w in WINDOWS[2:13:2] if "ceil_mode" not in w[1]])
def test_lp_pool(xs, attrs, p):
    check_op("LpPool", {"x": rand(*xs)}, {**attrs, "p": p}, opset=11)


@pytest.mark.parametrize("xs,attrs", WINDOWS[4:5] + DILATED[2:4])
def test_lp_pool_18(xs, attrs):
    check_op("LpPool", {"x": rand(*xs)}, {**attrs, "p": 2}, opset=18)


def test_lp_pool_float16():
    check_op("LpPool", {"x": rand(1, 2, 6, 6, dtype=np.float16)}, {"kernel_shape": [2, 2], "p": 2}, opset=11)


@pytest.mark.parametrize("op_type", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
@pytest.mark.parametrize("xs", [(2, 3, 7), (2, 3, 5, 6), (1, 2, 3, 4, 5)])
def test_global_pool(op_type, xs):
    check_op(op_type, {"x": rand(*xs)})


@pytest.mark.parametrize("op_type", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
def test_global_pool_float16(op_type):
    check_op(op_type, {"x": rand(2, 3, 5, 6, dtype=np.float16)})


@pytest.mark.parametrize("p", [1, 3])
def test_global_lp_pool_p(p):
    check_op("GlobalLpPool", {"x": rand(2, 3, 4, 5)}, {"p": p})


def test_global_max_pool_float64():
    check_reference("GlobalMaxPool", {"x": rand(2, 3, 4, 5, dtype=np.float64)}, {})


@pytest.mark.parametrize("op_type", ["MaxPool", "AveragePool", "LpPool"])
@pytest.mark.parametrize("attrs,match", [
    ({"kernel_shape": [3]}, "spatial axes"),
    ({"kernel_shape": [3, 3], "strides": [1]}, "strides"),
    ({"kernel_shape": [3, 3], "pads": [1, 1, 1]}, "pads"),
    ({"kernel_shape": [3, 3], "pads": [-1, 0, 0, 0]}, "negative"),
    ({"kernel_shape": [9, 3]}, "larger than"),
    ({"kernel_shape": [3, 3], "auto_pad": "SAME"}, "auto_pad"),
])
def test_pool_bad_attributes(op_type, attrs, match):
    expect_error(op_type, {"x": rand(1, 2, 5, 6)}, attrs, match)


def test_pool_missing_kernel_shape():  # the ONNX checker finds this one, before braze looks at nodes
    expect_error("MaxPool", {"x": rand(1, 2, 5, 6)}, {}, "kernel_shape", named=False)


def test_pool_bad_rank():
    expect_error("MaxPool", {"x": rand(2, 5)}, {"kernel_shape": [2]}, "rank")
    expect_error("GlobalAveragePool", {"x": rand(2, 5)}, {}, "rank")
    expect_error("MaxPool", {"x": rand(1, 2, 5, 5)}, {"kernel_shape": [2, 2], "storage_order": 2}, "storage_order",
                 n_outputs=2)


def test_max_pool_same_dilated():
    """SAME pads per the spec (and ONNX shape inference) span the dilated window; onnxruntime uses the
    undilated one and gets other shapes."""
    check_reference("MaxPool", {"x": rand(1, 2, 7, 8)},
                    {"kernel_shape": [3, 2], "strides": [2, 3], "dilations": [2, 2], "auto_pad": "SAME_UPPER"},
                    opset=12)


ROIS = np.array([[0, 1, 1, 6, 5], [1, 0, 0, 11, 9], [0, 3.4, 2.6, 3.4, 2.6], [1, -2, -3, 4, 20], [0, 5, 5, 2, 2]],
                np.float32)


@pytest.mark.parametrize("pooled_shape,spatial_scale", [([2, 3], 1.0), ([3, 3], 0.5), ([4, 2], 0.25)])
def test_max_roi_pool(pooled_shape, spatial_scale):
    check_op("MaxRoiPool", {"x": rand(2, 3, 10, 12), "rois": ROIS},
             {"pooled_shape": pooled_shape, "spatial_scale": spatial_scale})


def test_max_roi_pool_errors():
    expect_error("MaxRoiPool", {"x": rand(2, 3, 10, 12), "rois": ROIS[:, :4]}, {"pooled_shape": [2, 2]}, "rois")
    expect_error("MaxRoiPool", {"x": rand(2, 3, 10, 12), "rois": ROIS}, {"pooled_shape": [2]}, "pooled_shape")


@pytest.mark.parametrize("xs,attrs,output_shape", [
    ((1, 2, 6, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}, None),
    ((1, 2, 7, 9), {"kernel_shape": [2, 2], "strides": [2, 2]}, [1, 2, 7, 9]),
    ((2, 3, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, None),
    ((2, 3, 10), {"kernel_shape": [3], "strides": [3]}, [2, 3, 10]),
    ((1, 2, 4, 4, 6), {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]}, None),
])
def test_max_unpool(xs, attrs, output_shape):
    """Unpooling what MaxPool gave; indices address the output_shape tensor, as in onnxruntime and PyTorch."""
    y, indices = check_op("MaxPool", {"x": rand(*xs)}, attrs, n_outputs=2)
    inputs = {"x": y, "i": indices, "shape": None if output_shape is None else np.array(output_shape, np.int64)}
    model = typed(make_model("MaxUnpool", inputs, attrs, constants=("shape",), opset=11), len(xs))
    feeds = feeds_of(inputs, ("shape",))
    assert_close(run_braze(model, feeds)[0], run_ort(model, feeds)[0])


def test_max_unpool_errors():
    x = rand(1, 2, 3, 3)
    expect_error("MaxUnpool", {"x": x, "i": np.zeros((1, 2, 3), np.int64)}, {"kernel_shape": [2, 2]}, "I has shape")
    expect_error("MaxUnpool", {"x": x, "i": np.zeros(x.shape, np.int64)}, {"kernel_shape": [2]}, "spatial axes")


@pytest.mark.parametrize("op_type,inputs,attrs,n_outputs", [
    ("MaxPool", {"x": rand(1, 3, 6, 6)}, {"kernel_shape": [3, 3], "pads": [1, 0, 1, 2]}, 2),
    ("AveragePool", {"x": rand(1, 3, 6, 6, 5)}, {"kernel_shape": [3, 3, 2], "pads": [1, 0, 1, 2, 0, 1]}, 1),
    ("GlobalAveragePool", {"x": rand(2, 3, 4, 5)}, {}, 1),
])
def test_bfloat16(op_type, inputs, attrs, n_outputs):
    check_bfloat16(op_type, inputs, attrs, opset=22, n_outputs=n_outputs)
