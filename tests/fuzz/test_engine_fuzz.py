"""A fixed-seed slice of scripts/fuzz_engines.py: damaged and forged engine files never give a raw exception,
a crash, a hang or a silent wrong answer."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = str(Path(__file__).resolve().parents[2] / "scripts")


@pytest.fixture(scope="module")
def fuzz_engines():
    # NOTE: imported by name from a path entry, so that the fuzzer's worker process can import it too
    sys.path.insert(0, SCRIPTS)
    try:
        yield importlib.import_module("fuzz_engines")
    finally:
        sys.path.remove(SCRIPTS)


def test_forged_but_unchanged_engine_runs_the_same(fuzz_engines):
    seed = fuzz_engines.build_seeds()[0]
    same = fuzz_engines.pack(fuzz_engines.split(seed.data))
    case = fuzz_engines.Case(0, seed.name, "none", same, seed.feeds, seed.outputs)
    assert fuzz_engines.run_case(case) == ("same", "")
    wrong = {k: v + 1 for k, v in seed.outputs.items()}
    case = fuzz_engines.Case(0, seed.name, "none", same, seed.feeds, wrong)
    assert fuzz_engines.run_case(case) == ("consistent", "")  # its own graph's reference agrees


def test_close_compares_dtypes_shapes_and_values(fuzz_engines):
    y = {"y": np.ones(3, np.float32)}
    assert fuzz_engines._close(y, {"y": np.ones(3, np.float32) + 1e-7})
    assert not fuzz_engines._close(y, {"y": np.ones(3, np.float64)})
    assert not fuzz_engines._close(y, {"y": np.ones(4, np.float32)})
    assert not fuzz_engines._close(y, {"y": np.full(3, np.nan, np.float32)})


def test_fixed_seed_slice_has_no_bad_outcome(fuzz_engines):
    result = fuzz_engines.fuzz(200, seed=2024, say=lambda msg: None)
    bad = [f"case {case.index} ({case.seed}, {case.mutation}): {outcome}: {detail}"
           for case, outcome, detail in result["bad"]]
    assert not bad, "\n".join(bad)
    assert sum(result["totals"].values()) == 200
    assert len(result["per_mutation"]) >= 20  # the slice reaches most mutations
    assert result["totals"]["refused"] >= 100  # and most forgeries are refused
