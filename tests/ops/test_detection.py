import numpy as np
import onnx.helper as oh
import pytest
from onnx import TensorProto

import braze

from .harness import check_op, feeds_of, make_model, rand, run_braze, run_ort


def _raises(op_type, inputs, attrs, match, *, opset=16, n_outputs=1):
    model = make_model(op_type, inputs, attrs, opset=opset, n_outputs=n_outputs)
    with pytest.raises(braze.BrazeError, match=f"{op_type.lower()}_node.*{match}"):
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False), braze.BuilderConfig())
        engine.create_execution_context().infer(feeds_of(inputs))


def rois(n, size, seed=0):
    """Regions (x1, y1, x2, y2) inside (and a little past) a size x size image, some degenerate."""
    rng = np.random.default_rng(seed)
    corners = rng.uniform(-1, size + 1, size=(n, 2, 2)).astype(np.float32)
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)
    boxes[0, 2:] = boxes[0, :2]  # an empty region
    return boxes


# -- RoiAlign ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("transform", ["half_pixel", "output_half_pixel"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align_16(mode, transform, sampling_ratio):
    x = rand(2, 3, 12, 10)
    attrs = {"mode": mode, "coordinate_transformation_mode": transform, "sampling_ratio": sampling_ratio,
             "output_height": 3, "output_width": 4}
    check_op("RoiAlign", {"x": x, "rois": rois(5, 10), "b": np.array([0, 1, 1, 0, 1], np.int64)}, attrs, opset=16)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_roi_align_10(scale):
    x = rand(1, 2, 8, 8)
    attrs = {"spatial_scale": scale, "output_height": 2, "output_width": 2, "sampling_ratio": 0}
    check_op("RoiAlign", {"x": x, "rois": rois(4, 8 / scale, seed=1), "b": np.zeros(4, np.int64)}, attrs, opset=10)


def test_roi_align_opset_22_double():
    x = rand(1, 2, 6, 7, dtype=np.float64)
    attrs = {"output_height": 2, "output_width": 3, "sampling_ratio": 3}
    model = make_model("RoiAlign", {"x": x, "rois": rois(3, 6).astype(np.float64), "b": np.zeros(3, np.int64)},
                       attrs, opset=22)
    feeds = {"x": x, "rois": rois(3, 6).astype(np.float64), "b": np.zeros(3, np.int64)}
    expected = run_ort(make_model("RoiAlign", feeds, attrs, opset=16), feeds)[0]
    np.testing.assert_allclose(run_braze(model, feeds)[0], expected, rtol=1e-10, atol=1e-12)


def test_roi_align_no_regions():
    got = run_braze(make_model("RoiAlign", {"x": rand(1, 2, 5, 5), "rois": np.zeros((0, 4), np.float32),
                                            "b": np.zeros(0, np.int64)}, {"output_height": 2}, opset=16),
                    {"x": rand(1, 2, 5, 5), "rois": np.zeros((0, 4), np.float32), "b": np.zeros(0, np.int64)})[0]
    assert got.shape == (0, 2, 2, 1)


def test_roi_align_errors():
    x, r, b = rand(1, 2, 5, 5), rois(2, 5), np.zeros(2, np.int64)
    _raises("RoiAlign", {"x": x, "rois": r, "b": np.zeros(3, np.int64)}, {}, "batch_indices")
    _raises("RoiAlign", {"x": x, "rois": r[:, :3], "b": b}, {}, "num_rois x 4")
    _raises("RoiAlign", {"x": x, "rois": r, "b": b}, {"mode": "sum"}, "mode")
    _raises("RoiAlign", {"x": x, "rois": r, "b": b}, {"coordinate_transformation_mode": "asymmetric"}, "coordinate")
    _raises("RoiAlign", {"x": x, "rois": r.astype(np.float64), "b": b}, {}, "share")
    _raises("RoiAlign", {"x": x, "rois": r, "b": np.array([0, 1], np.int64)}, {}, "outside the batch")


# -- NonMaxSuppression -------------------------------------------------------------------------

def boxes_and_scores(batches, classes, n, seed=0, center=False):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 10, size=(batches, n, 2))
    wh = rng.uniform(1, 4, size=(batches, n, 2))
    if center:
        boxes = np.concatenate([xy, wh], -1)
    else:  # [y1, x1, y2, x2], with some corners given in the other order
        boxes = np.concatenate([xy[..., ::-1], (xy + wh)[..., ::-1]], -1)
        boxes[:, ::3] = boxes[:, ::3][..., [2, 3, 0, 1]]
    scores = rng.uniform(0, 1, size=(batches, classes, n))
    scores[..., 1] = scores[..., 0]  # a tie
    return boxes.astype(np.float32), scores.astype(np.float32)


def nms_inputs(boxes, scores, limit, iou, score=None):
    inputs = {"boxes": boxes, "scores": scores, "limit": np.array([limit], np.int64),
              "iou": np.array([iou], np.float32)}
    if score is not None:
        inputs["score"] = np.array([score], np.float32)
    return inputs


def check_nms(inputs, attrs=None, *, opset=11):
    """Against onnxruntime; the output's type is declared (ONNX infers none at opset 10)."""
    model = make_model("NonMaxSuppression", inputs, attrs, opset=opset)
    model.graph.output[0].CopyFrom(oh.make_tensor_value_info("y0", TensorProto.INT64, ["selected", 3]))
    feeds = feeds_of(inputs)
    got = run_braze(model, feeds)[0]
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, run_ort(model, feeds)[0])
    return got


@pytest.mark.parametrize("limit,iou,score", [(3, 0.5, None), (10, 0.3, 0.4), (100, 0.0, None), (2, 0.7, 0.1)])
@pytest.mark.parametrize("center", [0, 1])
@pytest.mark.parametrize("opset", [10, 11])
def test_nms(limit, iou, score, center, opset):
    boxes, scores = boxes_and_scores(2, 3, 12, seed=limit, center=bool(center))
    check_nms(nms_inputs(boxes, scores, limit, iou, score), {"center_point_box": center}, opset=opset)


def test_nms_without_optional_inputs_selects_nothing():
    boxes, scores = boxes_and_scores(1, 2, 5)
    assert check_nms({"boxes": boxes, "scores": scores}).shape == (0, 3)


def test_nms_many_boxes():
    boxes, scores = boxes_and_scores(1, 1, 300, seed=5)
    assert len(check_nms(nms_inputs(boxes, scores, 50, 0.45, 0.2))) > 10


def test_nms_errors():
    boxes, scores = boxes_and_scores(1, 2, 5)
    _raises("NonMaxSuppression", nms_inputs(boxes, scores[:, :, :4], 3, 0.5), {}, "scores must be", opset=11)
    _raises("NonMaxSuppression", nms_inputs(boxes[..., :3], scores, 3, 0.5), {}, "boxes must be", opset=11)
    _raises("NonMaxSuppression", nms_inputs(boxes, scores, 3, 0.5), {"center_point_box": 2}, "center_point_box",
            opset=11)


def test_nms_feeds_a_gather():
    """The data-dependent output flows on: Gather of the selected box indices."""
    boxes, scores = boxes_and_scores(1, 1, 8, seed=3)
    inputs = nms_inputs(boxes, scores, 4, 0.5)
    nodes = [oh.make_node("NonMaxSuppression", list(inputs), ["sel"]),
             oh.make_node("Gather", ["sel", "two"], ["idx"], axis=1),
             oh.make_node("Gather", ["flat", "idx"], ["picked"], axis=0),
             oh.make_node("Squeeze", ["boxes", "zero"], ["flat"])]
    graph = oh.make_graph(
        [nodes[0], nodes[3], nodes[1], nodes[2]], "nms_gather",
        [oh.make_tensor_value_info(k, oh.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()],
        [oh.make_tensor_value_info("picked", TensorProto.FLOAT, ["n", 4])],
        [oh.make_tensor("two", TensorProto.INT64, [], [2]), oh.make_tensor("zero", TensorProto.INT64, [1], [0])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    model.ir_version = 8
    np.testing.assert_array_equal(run_braze(model, inputs)[0], run_ort(model, inputs)[0])
