"""The calibration cache: round trip, atomic save, each refusal on load (version, malformed fields, bad scales,
another model, another graph of the same model, missing tensors), and the graph and data digests."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import braze
from braze.errors import BrazeError
from braze.ir import Graph
from braze.ops import infer_shapes
from braze.precision.calib_cache import CalibrationCache, data_digest, graph_digest, load_cache
from tests.conftest import tiny_cnn, tiny_mlp

SCALES = {"x": 0.025, "r1": 0.5 / 127, "s": 1e-3}


def parsed(model) -> Graph:
    graph = braze.parse_onnx(model)
    infer_shapes(graph)
    return graph


@pytest.fixture(scope="module")
def cnn() -> Graph:
    return parsed(tiny_cnn())


def cache_for(graph: Graph, **changes) -> CalibrationCache:
    fields = dict(calibrator="entropy", graph_digest=graph_digest(graph), data_digest="ab" * 32, scales=dict(SCALES))
    fields.update(changes)
    return CalibrationCache(**fields)


def written(tmp_path, data) -> str:
    path = tmp_path / "calib.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def refused(path, graph, *fragments, tensors=()) -> None:
    with pytest.raises(BrazeError) as info:
        load_cache(path, graph, tensors)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


# -- round trip and saving ----------------------------------------------------------------------------------

@pytest.mark.parametrize("calibrator, percentile", [("entropy", None), ("minmax", None), ("percentile", 99.9)])
def test_a_saved_cache_loads_back_equal(tmp_path, cnn, calibrator, percentile):
    cache = cache_for(cnn, calibrator=calibrator, percentile=percentile)
    path = tmp_path / "calib.json"
    cache.save(path)
    data = json.loads(path.read_text())
    expected_keys = ["version", "calibrator"] + (["percentile"] if percentile else []) + \
        ["graph_digest", "data_digest", "scales"]
    assert list(data) == expected_keys and data["version"] == 1
    assert load_cache(path, cnn, tensors=["x", "s"]) == cache
    assert load_cache(str(path), cnn, digest=cache.graph_digest).scales == SCALES  # floats exactly


def test_save_replaces_atomically_and_leaves_no_temporary_file(tmp_path, cnn):
    path = tmp_path / "calib.json"
    cache_for(cnn).save(path)
    cache_for(cnn, scales={"x": 2.0}).save(path)
    assert os.listdir(tmp_path) == ["calib.json"] and load_cache(path, cnn).scales == {"x": 2.0}
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_save_keeps_the_old_cache_and_removes_its_temporary_file(tmp_path, cnn, monkeypatch):
    path = tmp_path / "calib.json"
    cache_for(cnn).save(path)
    before = path.read_text()

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(BrazeError, match="cannot write calibration cache .*No space left"):
        cache_for(cnn, scales={"x": 3.0}).save(path)
    assert path.read_text() == before and os.listdir(tmp_path) == ["calib.json"]


def test_save_into_a_missing_folder_is_a_braze_error(tmp_path, cnn):
    with pytest.raises(BrazeError, match="cannot write calibration cache"):
        cache_for(cnn).save(tmp_path / "nowhere" / "calib.json")


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_save_refuses_a_scale_that_is_not_positive_and_finite(tmp_path, cnn, scale):
    with pytest.raises(BrazeError, match="scale of tensor 'r1'"):
        cache_for(cnn, scales={"x": 1.0, "r1": scale}).save(tmp_path / "calib.json")
    assert not (tmp_path / "calib.json").exists()


# -- refusals on load ---------------------------------------------------------------------------------------

def good(graph: Graph) -> dict:
    return cache_for(graph).to_json()


@pytest.mark.parametrize("edit, fragments", [
    (lambda d: d.update(version=2), ["format version 2", "reads version 1"]),
    (lambda d: d.pop("version"), ["no 'version'"]),
    (lambda d: d.update(calibrator="kl"), ["'calibrator' is 'kl'"]),
    (lambda d: d.update(calibrator="percentile"), ["'percentile' is None"]),
    (lambda d: d.update(graph_digest="1234"), ["'graph_digest' is '1234'", "sha256"]),
    (lambda d: d.pop("data_digest"), ["'data_digest' is None"]),
    (lambda d: d.update(scales=[1.0]), ["'scales' is list"]),
    (lambda d: d["scales"].update(r1=0.0), ["scale of tensor 'r1' is 0.0"]),
    (lambda d: d["scales"].update(r1=-0.5), ["scale of tensor 'r1' is -0.5"]),
    (lambda d: d["scales"].update(r1=float("nan")), ["scale of tensor 'r1' is nan"]),
    (lambda d: d["scales"].update(r1=float("inf")), ["scale of tensor 'r1' is inf"]),
    (lambda d: d["scales"].update(r1="0.1"), ["scale of tensor 'r1' is '0.1'"]),
    (lambda d: d["scales"].update(r1=True), ["scale of tensor 'r1' is True"]),
])
def test_a_malformed_cache_is_refused_with_the_field(tmp_path, cnn, edit, fragments):
    data = good(cnn)
    edit(data)
    refused(written(tmp_path, data), cnn, "calibration cache", *fragments)


def test_a_file_that_is_not_a_cache_is_refused(tmp_path, cnn):
    refused(written(tmp_path, "{not json"), cnn, "is not JSON")
    refused(written(tmp_path, "[1, 2]"), cnn, "holds a JSON list")
    refused(tmp_path / "absent.json", cnn, "does not exist")


def test_a_cache_made_for_another_model_is_refused_saying_so(tmp_path, cnn):
    mlp = parsed(tiny_mlp())
    path = tmp_path / "calib.json"
    CalibrationCache("minmax", graph_digest(mlp), "0" * 64, {"h": 0.1, "r": 0.2}).save(path)
    refused(path, cnn, "was made for another model", "none of its 2 tensor names", "calibrate again")


def test_a_cache_made_for_another_graph_of_the_model_is_refused_saying_so(tmp_path, cnn):
    path = tmp_path / "calib.json"
    cache_for(parsed(tiny_cnn(batch=4))).save(path)
    refused(path, cnn, "another graph of this model", "3 of its 3 tensor names", "input shapes")


def test_a_cache_without_a_tensor_the_build_quantizes_is_refused_naming_it(tmp_path, cnn):
    path = tmp_path / "calib.json"
    cache_for(cnn).save(path)
    refused(path, cnn, "no scale for 2 tensor(s)", "'c2', 'g'", tensors=["x", "c2", "s", "g"])


# -- digests ------------------------------------------------------------------------------------------------

def test_the_graph_digest_is_stable_across_copies_and_parses(cnn):
    digest = graph_digest(cnn)
    assert len(digest) == 64
    assert graph_digest(cnn.copy()) == digest == graph_digest(parsed(tiny_cnn()))
    renamed = cnn.copy()
    renamed.nodes[0].name = "another_name"
    assert graph_digest(renamed) == digest  # node names do not change what is computed


@pytest.mark.parametrize("change", ["weight", "attr", "tensor name", "shape", "op", "order of outputs"])
def test_the_graph_digest_changes_with_structure_and_weights(cnn, change):
    graph = cnn.copy()
    conv = graph.nodes[0]
    if change == "weight":
        w = conv.inputs[1]
        w.value = w.value.clone()
        w.value[0, 0, 0, 0] += 1e-6
    elif change == "attr":
        conv.attrs["pads"] = [0, 0, 0, 0]
    elif change == "tensor name":
        conv.outputs[0].name = "c1_renamed"
    elif change == "shape":
        graph.inputs[0].shape = (2, 3, 16, 16)
    elif change == "op":
        graph.nodes[1].op = "Sigmoid"
    else:
        graph.outputs = [graph.nodes[-2].outputs[0], graph.outputs[0]]
    assert graph_digest(graph) != graph_digest(cnn)


def test_the_data_digest_follows_the_bytes_in_order():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3)]
    feeds = [{"x": torch.from_numpy(a)} for a in arrays]
    digest = data_digest(feeds)
    assert data_digest([{"x": a} for a in arrays]) == digest  # numpy or torch: the same bytes
    assert data_digest(feeds[::-1]) != digest and data_digest(feeds[:2]) != digest
    changed = [dict(f) for f in feeds]
    changed[1] = {"x": feeds[1]["x"].clone()}
    changed[1]["x"][0, 0] = torch.nextafter(changed[1]["x"][0, 0], torch.tensor(10.0))  # one ulp
    assert data_digest(changed) != digest
    assert data_digest([{"x": f["x"].to(torch.float64)} for f in feeds]) != digest
    assert data_digest([{"x": f["x"].reshape(3, 2)} for f in feeds]) != digest
