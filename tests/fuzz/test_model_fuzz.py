"""A fixed-seed slice of scripts/fuzz_models.py: mutated ONNX models never give a raw exception, a crash, a hang,
a wrong answer, or a model accepted that onnxruntime and onnx's full checker both refuse."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = str(Path(__file__).resolve().parents[2] / "scripts")


@pytest.fixture(scope="module")
def fuzz_models():
    # NOTE: imported by name from a path entry, so that the fuzzer's worker process can import it too
    sys.path.insert(0, SCRIPTS)
    try:
        yield importlib.import_module("fuzz_models")
    finally:
        sys.path.remove(SCRIPTS)


def test_seed_models_agree_with_onnxruntime(fuzz_models, tmp_path):
    for name, model in fuzz_models.seed_models().items():
        case = fuzz_models.Case(0, name, "none", model.SerializeToString())
        if name == "external":
            case.folder = str(fuzz_models._external_folder(0, tmp_path, case.model, "none"))
        outcome, detail = fuzz_models.classify(fuzz_models.run_braze(case), fuzz_models.run_reference(case))
        assert outcome == "ok", (name, detail)


def test_classes(fuzz_models):
    out = {"y": np.ones(3, np.float32)}
    classify = fuzz_models.classify
    assert classify(("raw", "KeyError"), ("ok", out, True))[0] == "raw_exception"
    assert classify(("ok", {"y": out["y"] + 1}), ("ok", out, True))[0] == "wrong_answer"
    assert classify(("ok", {"y": out["y"].astype(np.float16)}), ("ok", out, True))[0] == "wrong_answer"
    assert classify(("ok", out), ("refused", "bad", False))[0] == "accepted_invalid"
    assert classify(("ok", out), ("refused", "bad", True))[0] == "braze_only"
    assert classify(("error", "ModelError"), ("refused", "bad", False))[0] == "ok"
    assert classify(("error", "ModelError"), ("ok", out, True))[0] == "clean_error"


def test_fixed_seed_slice_has_no_bad_outcome(fuzz_models):
    result = fuzz_models.fuzz(200, seed=2024, say=lambda msg: None)
    bad = [f"case {case.index} ({case.seed}, {case.mutation}): {outcome}: {detail}"
           for case, outcome, detail in result["bad"]]
    assert not bad, "\n".join(bad)
    assert sum(result["totals"].values()) == 200
    assert len(result["per_mutation"]) >= 15  # the slice reaches most mutations
