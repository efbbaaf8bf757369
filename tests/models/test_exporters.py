"""Real exporter output: small models exported by torch.onnx.export (TorchScript and dynamo exporters)
from transformers, checked in under tests/data by `scripts/export_models.py --tiny --save-dir tests/data`,
build with braze and match onnxruntime at FP32's tolerance. Where transformers is installed, a few are
also exported live, through the script itself."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import braze
from braze.testing import rel_l2, tolerance

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
EXPORTED = sorted(p for p in DATA.glob("*.onnx") if p.stem.endswith(("_torchscript", "_dynamo")))
RTOL_L2 = tolerance("float32").rel_l2


def load_script():
    """scripts/export_models.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("export_models", ROOT / "scripts" / "export_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return load_script()


def test_both_exporters_are_covered():
    stems = {p.stem for p in EXPORTED}
    models = {s.rsplit("_", 1)[0] for s in stems}
    assert {"bert", "gpt2", "gpt2-past", "llama-past", "t5-encoder", "vit-hf", "detr"} <= models
    assert all(f"{m}_{e}" in stems for m in models for e in ("torchscript", "dynamo"))
    assert all(p.stat().st_size < 1.5e6 for p in EXPORTED)


@pytest.mark.parametrize("path", EXPORTED, ids=lambda p: p.stem)
def test_exported_model_matches_onnxruntime(path, script):
    model = onnx.load(path)
    spec = json.loads(next(p.value for p in model.metadata_props if p.key == script.METADATA_KEY))
    assert path.stem == f"{spec['model']}_{spec['exporter']}"
    feeds = script.sample_feeds(model, seed=1)
    expected = script.onnxruntime_outputs(model, feeds)
    engine = braze.Builder("cpu").build(model, braze.BuilderConfig(shapes={n: v.shape for n, v in feeds.items()}))
    actual = engine.create_execution_context().infer(feeds)
    assert set(actual) == set(expected)
    for name, value in expected.items():
        assert value.std() > 0, f"{name} is constant: a meaningless comparison"
        assert actual[name].shape == value.shape, name
        assert rel_l2(actual[name], value) <= RTOL_L2, name


def test_feeds_follow_the_annotation(script):
    model = onnx.load(DATA / "bert_dynamo.onnx")
    feeds = script.sample_feeds(model)
    sizes = script.RUN_SIZES
    assert feeds["input_ids"].shape == feeds["attention_mask"].shape == (sizes["batch"], sizes["sequence"])
    assert feeds["input_ids"].dtype == np.int64 and 0 <= feeds["input_ids"].min()
    mask = feeds["attention_mask"]
    assert mask[:-1].all() and mask[-1, 0] == 1 and mask[-1, -1] == 0


def test_missing_library_is_skipped(script):
    entry = script.Entry("absent", "no_such_library_for_braze", lambda tiny: None)
    row = script.run_one(entry, "dynamo", tiny=True, opset=None, save_dir=None)
    assert row.status == "skipped" and "no_such_library_for_braze is not installed" in row.error


@pytest.mark.parametrize("name, exporter", [("bert", "torchscript"), ("bert", "dynamo"), ("llama-past", "dynamo")])
def test_live_export(name, exporter, script):
    pytest.importorskip("transformers")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    entry = next(e for e in script.MODELS if e.name == name)
    row = script.run_one(entry, exporter, tiny=True, opset=None, save_dir=None)
    assert row.status == "pass", row.error
    assert row.rel_l2 <= RTOL_L2 and row.onnx_nodes > row.braze_layers > 0


def test_script_writes_its_table(tmp_path, script):
    pytest.importorskip("transformers")
    md, js = tmp_path / "table.md", tmp_path / "table.json"
    status = script.main(["--tiny", "--models", "vit-hf", "--exporters", "torchscript", "--markdown", str(md),
                          "--json", str(js)])
    assert status == 0
    (row,) = json.loads(js.read_text())
    assert row["model"] == "vit-hf" and row["exporter"] == "torchscript" and row["status"] == "pass"
    assert row["opset"] == script.TORCHSCRIPT_OPSET
    assert "| vit-hf | torchscript | 17 |" in md.read_text()
