"""Trained models on real data (scripts/fetch_models.py makes them; each test skips, saying so, when they are absent):
a braze CPU engine in FP32 matches onnxruntime on real inputs, with the same top-1, and the models do their job
on that data (the digits CNN's held-out accuracy, the classes EfficientNet-Lite0 sees in the photos, PaddleOCR's
classifier telling upright text lines from turned ones). These are the references braze's INT8 results are
measured against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import braze
from braze.testing import assert_close

MODELS = Path(__file__).parents[2] / ".models"


def need(*names: str) -> list[Path]:
    paths = [MODELS / name for name in names]
    missing = [path.name for path in paths if not path.exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not in .models/: run scripts/fetch_models.py")
    return paths


def run_both(model: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(braze's, onnxruntime's) output of the one-input, one-output model on x, float32 on the CPU."""
    (expected,) = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    engine = braze.Builder("cpu").build(str(model), braze.BuilderConfig(shapes={"x": x.shape}, progress=False))
    (got,) = engine.create_execution_context().infer({"x": x}).values()
    return np.asarray(got), expected


def test_digits_cnn_matches_onnxruntime_on_the_held_out_digits_and_is_accurate():
    model, data = need("digits_cnn.onnx", "digits.npz")
    split = np.load(data)
    x, y = split["x_test"], split["y_test"]
    assert x.shape == (360, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    got, expected = run_both(model, x)
    assert_close(got, expected, "float32", name="digits logits")
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    assert (got.argmax(1) == y).mean() >= 0.95


# The centre crop of each photo and what EfficientNet-Lite0 sees there (ImageNet-1k class indices).
PHOTO_CLASSES = {"chelsea": {281, 282, 285}, "coffee": {967}, "rocket": {657}, "motorcycle_left": {665},
                 "camera": {872}, "china": {698}, "flower": {985}}


def test_efficientnet_lite0_matches_onnxruntime_on_real_photos_and_sees_what_they_show():
    model, data = need("efficientnet_lite0.onnx", "photos.npz")
    photos = np.load(data)
    centre = [i for i, name in enumerate(photos["names"]) if name.endswith("/center")]
    x, names = photos["x"][centre], [str(name).split("/")[0] for name in photos["names"][centre]]
    got, expected = run_both(model, x)
    assert_close(got, expected, "float32", name="EfficientNet-Lite0 logits")
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    seen = {name: int(top) for name, top in zip(names, got.argmax(1))}
    assert all(seen[name] in classes for name, classes in PHOTO_CLASSES.items()), seen


def test_ppocr_cls_matches_onnxruntime_on_real_text_lines_and_tells_upright_from_turned():
    model, data = need("ppocr_cls.onnx", "page_lines.npz")
    lines = np.load(data)
    got, expected = run_both(model, lines["x"])
    assert_close(got, expected, "float32", name="text direction probabilities")
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    assert (got.argmax(1) == lines["y"]).mean() >= 0.8  # 86% in FP32: short pieces of a line are hard to tell


def test_digits_cnn_in_int8_keeps_its_accuracy_on_held_out_digits():
    """Calibrated on training digits (percentile, the default), checked on the held-out ones against FP32."""
    model, data = need("digits_cnn.onnx", "digits.npz")
    split = np.load(data)
    x, y = split["x_test"], split["y_test"]
    batches = [{"x": split["x_train"][i:i + len(x)]} for i in range(0, 3 * len(x), len(x))]  # the engine's batch
    config = braze.BuilderConfig(shapes={"x": x.shape}, precision="int8", calibration=braze.Calibration(data=batches),
                                 progress=False)
    engine = braze.Builder("cpu").build(str(model), config)
    assert [n.op for n in engine.plan.graph.nodes].count("QConv") == 2
    fp32 = braze.Builder("cpu").build(str(model), braze.BuilderConfig(shapes={"x": x.shape}, progress=False))
    (got,) = engine.create_execution_context().infer({"x": x}).values()
    (want,) = fp32.create_execution_context().infer({"x": x}).values()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.99
    assert (got.argmax(1) == y).mean() >= (want.argmax(1) == y).mean() - 0.01
