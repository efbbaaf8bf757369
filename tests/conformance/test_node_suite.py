"""The whole ONNX node test suite through braze's CPU backend, run once: no case may crash, the report
must add up, and every case that passed when tests/conformance/expected.txt was written must still pass
(the regression gate). Cases that do not pass yet are reported (docs/conformance.md): ops land over time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from braze.tools.conformance import (STATUSES, Report, collect_cases, read_expected, regressions, run_suite,
                                     suite_op_types, to_markdown)

EXPECTED = Path(__file__).with_name("expected.txt")


@pytest.fixture(scope="module")
def report() -> Report:
    return run_suite(collect_cases())


def test_no_case_crashes(report):
    crashes = [c for c in report.cases if c.status == "crash"]
    listing = "\n".join(f"  {c.name} [{c.stage}]: {c.reason} (at {c.where})" for c in crashes)
    assert not crashes, f"{len(crashes)} case(s) crashed with an exception that is not a BrazeError:\n{listing}"


def test_no_passing_case_regresses(report):
    expected = read_expected(EXPECTED)
    assert sum(status == "pass" for status in expected.values()) > 1700, "the gate lists too few passing cases"
    regressed = regressions(report, expected)
    assert not regressed, (f"{len(regressed)} case(s) that passed no longer do (or are gone from the suite):\n  "
                           + "\n  ".join(regressed))


def test_every_case_ends_in_one_status(report):
    names = [c.name for c in report.cases]
    assert len(names) == len(set(names)) == len(collect_cases())
    for case in report.cases:
        assert case.status in STATUSES
        assert case.ops, case.name
        assert case.seconds >= 0
        assert (case.reason == "") == (case.status == "pass"), (case.name, case.status, case.reason)
        assert (case.stage == "done") == (case.status == "pass"), (case.name, case.status, case.stage)


def test_totals_add_up(report):
    totals = report.totals()
    assert totals["cases"] == len(report.cases) == sum(totals[s] for s in STATUSES)
    by_op = report.by_op()
    assert set(by_op) == suite_op_types()
    for op_type, row in by_op.items():
        containing = [c for c in report.cases if op_type in c.ops]
        assert row["cases"] == len(containing) == sum(row[s] for s in STATUSES), op_type
        for status in STATUSES:
            assert row[status] == sum(c.status == status for c in containing), (op_type, status)
        assert (row["supported"] == "yes") == (row["pass"] == row["cases"]), op_type
    assert sum(row["cases"] for row in by_op.values()) == sum(len(c.ops) for c in report.cases)
    kinds = report.op_types()
    assert kinds["in_report"] == len(by_op)
    assert kinds["fully_supported"] == sum(row["supported"] == "yes" for row in by_op.values())


def test_report_is_written(report, tmp_path_factory):
    out = tmp_path_factory.mktemp("conformance")
    (out / "conformance.md").write_text(to_markdown(report))
    (out / "conformance.json").write_text(json.dumps(report.to_json(), indent=1))
    data = json.loads((out / "conformance.json").read_text())
    assert data["totals"] == report.totals()
    assert [c["name"] for c in data["cases"]] == [c.name for c in report.cases]
    assert set(data["ops"]) == set(report.by_op())
    text = (out / "conformance.md").read_text()
    totals = report.totals()
    assert f"| {totals['cases']} | " + " | ".join(str(totals[s]) for s in STATUSES) + " |" in text
    for op_type in report.by_op():
        assert f"\n| {op_type} | " in text
