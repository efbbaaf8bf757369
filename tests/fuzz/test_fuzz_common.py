"""scripts/fuzz_common.py: the fuzzers' worker classifies a crash and a hang and does not count its own start
(importing braze) as a case's time; the loop totals per class and per mutation; the exit status says 'bad'."""

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPTS = str(Path(__file__).resolve().parents[2] / "scripts")


@pytest.fixture(scope="module")
def fuzz_common():
    # NOTE: imported by name from a path entry, so that the fuzzer's worker process can import it too
    sys.path.insert(0, SCRIPTS)
    try:
        yield importlib.import_module("fuzz_common")
    finally:
        sys.path.remove(SCRIPTS)


def test_worker_classifies_results_hangs_and_crashes(fuzz_common):
    # `eval` is a top-level function the spawned worker can unpickle; each job is an expression
    worker = fuzz_common.Worker(eval, 1 << 30)
    try:
        # NOTE: far less than importing braze and torch takes: the case's time starts once the worker is ready
        assert worker.run("abs(-3)", timeout=2.0) == 3
        assert worker.run("__import__('time').sleep(60)", timeout=0.5) == ("hang", "no result after 0 s")
        outcome, detail = worker.run("__import__('os')._exit(3)", timeout=30.0)
        assert outcome == "crash" and detail.startswith("worker died"), detail
    finally:
        worker.close()
    assert worker.proc is None


@dataclass
class _Case:
    index: int
    seed: str
    mutation: str


class _NoWorker:
    closed = False

    def close(self):
        self.closed = True


def test_loop_totals_per_class_and_mutation(fuzz_common):
    outcomes = ["ok", "wrong_answer", "ok", "hang"]
    said, worker = [], _NoWorker()
    result = fuzz_common.fuzz_loop(
        4, lambda i: _Case(i, "conv", ["dim", "external:parent", "dim", "opset"][i]),
        lambda w, case: (outcomes[case.index], "" if case.index == 1 else "first\nlast"), worker,
        ("wrong_answer", "hang"), said.append)
    assert worker.closed
    assert result["totals"] == {"ok": 2, "wrong_answer": 1, "hang": 1}
    assert result["per_mutation"] == {"dim": {"ok": 2}, "external": {"wrong_answer": 1}, "opset": {"hang": 1}}
    assert [(c.index, o) for c, o, _ in result["bad"]] == [(1, "wrong_answer"), (3, "hang")]
    assert said == ["case 1 (conv, external:parent): wrong_answer: ", "case 3 (conv, opset): hang: last"]


def test_report_and_exit_status(fuzz_common):
    def fuzz(cases, seed, timeout):
        assert (cases, seed, timeout) == (5, 7, 3.0)
        return {"totals": {"ok": 5, "crash": crashes}, "per_mutation": {"dim": {"ok": 5, "crash": crashes}}}

    lines = []
    crashes = 0
    args = ["--cases", "5", "--seed", "7", "--timeout", "3"]
    report = lambda result: fuzz_common.report(result, ["ok", "crash"], (6, 7), lines.append)  # noqa: E731
    assert fuzz_common.main(args, "test", fuzz, report, ("crash",)) == 0
    assert lines == ["totals: ok 5, crash 0", "mutation     ok  crash", "dim         5      0"]
    crashes = 1
    assert fuzz_common.main(args, "test", fuzz, report, ("crash",)) == 1
