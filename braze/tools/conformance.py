"""`braze conformance`: the ONNX node test suite through braze's CPU backend, and its report.

    python -m braze.tools.conformance --markdown docs/conformance.md --json conformance.json
    braze conformance --op Conv --op Gemm --failures

Every case of `onnx.backend.test.case.node` is parsed, built for its data set's input shapes,
serialized, reloaded, run on each data set and compared output by output (dtype, shape, then
values within the case's own rtol/atol). Each case ends in exactly one status:

    pass         every output of every data set matches
    fail         an output has the wrong value, shape or dtype
    unsupported  an UnsupportedError while parsing, building or loading the engine
    error        any other BrazeError (a shape error, an execution error, ...)
    crash        an exception that is not a BrazeError, or no end within the time limit: a bug

A case that contains several op types (the `_expanded` ones) counts for each of them; an op
type is fully supported when every case containing it passes.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import onnx
import onnx.numpy_helper
import torch

from .. import Builder, BuilderConfig, Runtime, __version__, parse_onnx
from ..errors import BrazeError, UnsupportedError
from ..ops import REGISTRY
from ..testing import mismatch

STATUSES = ("pass", "fail", "unsupported", "error", "crash")
FAILURES = ("fail", "error", "crash")
DEFAULT_TIMEOUT = 60.0
_BRAZE_ROOT = Path(__file__).resolve().parents[1]


class CaseTimeout(BaseException):
    """A case ran past its time limit. NOTE: a BaseException, so that braze's own `except Exception`
    (kernel errors become ExecutionError) cannot turn it into a clean error."""


@dataclass
class CaseResult:
    name: str
    ops: list[str]
    status: str = "pass"
    stage: str = "parse"  # where the case ended: parse, build, load, infer, compare, done
    reason: str = ""  # one line; empty for a pass
    seconds: float = 0.0
    where: str = ""  # for a crash: the innermost braze frame that raised


@dataclass
class Report:
    cases: list[CaseResult]
    seconds: float
    environment: dict[str, str] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        counts = Counter(c.status for c in self.cases)
        return {"cases": len(self.cases), **{s: counts[s] for s in STATUSES}}

    def by_op(self) -> dict[str, dict[str, Any]]:
        """Per op type: how many cases contain it, their statuses, and whether all of them pass."""
        table: dict[str, dict[str, Any]] = {}
        for case in self.cases:
            for op_type in case.ops:
                row = table.setdefault(op_type, {"cases": 0, **{s: 0 for s in STATUSES}})
                row["cases"] += 1
                row[case.status] += 1
        for row in table.values():
            row["supported"] = "yes" if row["pass"] == row["cases"] else "partial" if row["pass"] else "no"
        return dict(sorted(table.items(), key=lambda kv: ("." in kv[0], kv[0].lower())))  # other domains last

    def by_tested_op(self) -> dict[str, dict[str, Any]]:
        """Per op type, counting each case once, against the op it tests (an `_expanded` case against its
        function op, not the primitives it expands to)."""
        table: dict[str, dict[str, Any]] = {}
        for case in self.cases:
            row = table.setdefault(tested_op(case), {"cases": 0, **{s: 0 for s in STATUSES}})
            row["cases"] += 1
            row[case.status] += 1
        for row in table.values():
            row["supported"] = "yes" if row["pass"] == row["cases"] else "partial" if row["pass"] else "no"
        return dict(sorted(table.items(), key=lambda kv: ("." in kv[0], kv[0].lower())))

    def op_types(self) -> dict[str, Any]:
        """The report's op types set against those braze defines (REGISTRY.names()) and the whole suite's."""
        ops = self.by_op()
        tested = self.by_tested_op()
        defined = set(REGISTRY.names())
        return {
            "in_report": len(ops),
            "fully_supported": sum(1 for row in ops.values() if row["supported"] == "yes"),
            "tested": len(tested),
            "fully_supported_by_tested_op": sum(1 for row in tested.values() if row["supported"] == "yes"),
            "not_defined": [op for op in ops if not _defined(op)],
            "braze_defines": len(defined),
            "defined_not_in_suite": sorted(defined - suite_op_types()),
        }

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "seconds": round(self.seconds, 2), "totals": self.totals(),
                "op_types": self.op_types(), "ops": self.by_op(), "cases": [asdict(c) for c in self.cases]}


def tested_op(case: "CaseResult") -> str:
    """The op type a case tests: its only op, or the longest op type its name starts with (test_<op>_...,
    ignoring underscores and case, so test_bitshift_left and test_layer_normalization_2d both resolve)."""
    distinct = sorted(set(case.ops))
    if len(distinct) == 1:
        return distinct[0]
    stem = case.name.removeprefix("test_").replace("_", "").lower()
    candidates = set(case.ops) | suite_op_types() | set(REGISTRY.names())
    matches = [op for op in candidates if stem.startswith(op.replace(".", "").lower())]
    return max(matches, key=len) if matches else (distinct[0] if distinct else case.name)


def collect_cases(ops: Sequence[str] = (), pattern: str | None = None) -> list[Any]:
    """The suite's cases (onnx's TestCase objects), optionally only those containing one of `ops`
    or whose name matches the regular expression `pattern`."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():  # the generators overflow and divide by zero on purpose
        warnings.simplefilter("ignore")
        # NOTE: always None: onnx filters by op type at import, so a filtered first call hides the rest.
        cases = list(collect_testcases(None))
    wanted = {o.lower() for o in ops}
    if wanted:
        cases = [c for c in cases if wanted & {o.lower() for o in case_ops(c.model)}]
    if pattern:
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise BrazeError(f"case-name pattern {pattern!r} is not a regular expression: {e}") from None
        cases = [c for c in cases if regex.search(c.name)]
    return cases


def _defined(op_type: str) -> bool:
    domain, _, name = op_type.rpartition(".")
    return bool(REGISTRY.versions(name, domain))


@functools.cache
def suite_op_types() -> frozenset[str]:
    """Every op type some case of the whole suite contains."""
    return frozenset(op for case in collect_cases() for op in case_ops(case.model))


def case_ops(model: onnx.ModelProto) -> list[str]:
    """Op types a model contains, subgraphs and local functions included (`domain.Op` outside ONNX's)."""
    found: set[str] = set()

    def visit(nodes: Iterable[onnx.NodeProto]) -> None:
        for node in nodes:
            found.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g.node)
                for g in attr.graphs:
                    visit(g.node)

    visit(model.graph.node)
    for function in model.functions:
        visit(function.node)
    return sorted(found)


def run_case(case: Any, timeout: float | None = DEFAULT_TIMEOUT) -> CaseResult:
    """Run one case end to end, within `timeout` seconds where a timer can interrupt it (Unix, main
    thread); never raises, except KeyboardInterrupt and the like."""
    result = CaseResult(case.name, case_ops(case.model))
    started = time.perf_counter()
    try:
        with _time_limit(timeout):
            _run(case, result)
    except CaseTimeout as e:
        result.status, result.reason = "crash", f"{type(e).__name__}: {e}"
        result.where = _braze_frame(e)
    except UnsupportedError as e:
        result.status = "unsupported" if result.stage in ("parse", "build", "load") else "error"
        result.reason = _one_line(e)
    except BrazeError as e:
        result.status, result.reason = "error", f"{type(e).__name__}: {_one_line(e)}"
    except Exception as e:
        result.status, result.reason = "crash", f"{type(e).__name__}: {_one_line(e)}"
        result.where = _braze_frame(e)
    result.seconds = time.perf_counter() - started
    return result


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"did not finish within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run(case: Any, result: CaseResult) -> None:
    graph = parse_onnx(case.model)
    initializers = {t.name for t in case.model.graph.initializer}
    input_names = [vi.name for vi in case.model.graph.input if vi.name not in initializers]
    output_names = [vi.name for vi in case.model.graph.output]
    contexts: dict[tuple, Any] = {}
    for i, (inputs, expected) in enumerate(case.data_sets):
        feeds = {name: _value(x) for name, x in zip(input_names, inputs)}
        shapes = {name: x.shape for name, x in feeds.items() if isinstance(x, np.ndarray)}
        key = tuple(sorted(shapes.items()))
        if key not in contexts:
            result.stage = "build"
            engine = Builder(device="cpu").build(graph, BuilderConfig(shapes=shapes))
            result.stage = "load"
            contexts[key] = Runtime().load(engine.serialize()).create_execution_context()
        result.stage = "infer"
        outputs = contexts[key].infer(feeds)
        result.stage = "compare"
        for name, want in zip(output_names, expected):
            problem = compare(outputs.get(name), _value(want), case.rtol, case.atol)
            if problem:
                prefix = f"data set {i}: " if len(case.data_sets) > 1 else ""
                result.status, result.reason = "fail", f"{prefix}output {name!r}: {problem}"
                return
    result.stage = "done"


def compare(actual: Any, expected: Any, rtol: float, atol: float) -> str | None:
    """None when `actual` matches `expected` as onnx's backend runner judges it (dtype and shape
    exactly, values within rtol/atol); otherwise a one-line description of the difference."""
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)):
            return f"expected a sequence of {len(expected)} tensors, got {_kind(actual)}"
        if len(actual) != len(expected):
            return f"sequence of {len(actual)} tensors != expected {len(expected)}"
        for j, (a, e) in enumerate(zip(actual, expected)):
            problem = compare(a, _value(e), rtol, atol)
            if problem:
                return f"item {j}: {problem}"
        return None
    if expected is None or actual is None:
        return None if actual is expected else f"got {_kind(actual)}, expected {_kind(expected)}"
    if not isinstance(actual, np.ndarray):
        return f"got {_kind(actual)}, expected a tensor"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype} != expected {expected.dtype}"
    if actual.shape != expected.shape:
        return f"shape {actual.shape} != expected {expected.shape}"
    if expected.dtype == object:
        return None if np.array_equal(actual, expected) else "strings differ"
    if expected.dtype.kind == "V":  # bfloat16 and float8 (ml_dtypes): compared in float32, as onnx does
        if expected.dtype.name == "bfloat16":
            rtol = max(rtol, 2**-6)
        actual, expected = actual.astype(np.float32), expected.astype(np.float32)
    return mismatch(actual, expected, rtol, atol)


def run_suite(cases: Sequence[Any], progress: Callable[[CaseResult], None] | None = None,
              timeout: float | None = DEFAULT_TIMEOUT) -> Report:
    """Run every case, each isolated from the others; returns the report."""
    torch.empty(1, device="meta").abs()  # NOTE: the first meta op imports torch._dynamo (1-2 s): not a case's time
    started = time.perf_counter()
    results = []
    for case in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results.append(run_case(case, timeout))
        if progress is not None:
            progress(results[-1])
    return Report(results, time.perf_counter() - started, environment())


def environment() -> dict[str, str]:
    return {"braze": __version__, "onnx": onnx.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "date": datetime.date.today().isoformat()}


def _value(x: Any) -> Any:
    if isinstance(x, onnx.TensorProto):
        return onnx.numpy_helper.to_array(x)
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def _kind(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"a {x.dtype} tensor of shape {x.shape}"
    return "nothing" if x is None else f"a {type(x).__name__}"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _braze_frame(e: BaseException) -> str:
    """`braze/ops/conv.py:41 (conv)`: the innermost frame inside braze (this runner aside), else the innermost."""
    frames = [(Path(f.filename).resolve(), f) for f in traceback.extract_tb(e.__traceback__)]
    ours = [(p, f) for p, f in frames if p.is_relative_to(_BRAZE_ROOT) and p != Path(__file__).resolve()]
    if not (ours or frames):
        return ""
    path, f = (ours or frames)[-1]
    return f"{path.relative_to(_BRAZE_ROOT.parent) if ours else path.name}:{f.lineno} ({f.name})"


# -- rendering ---------------------------------------------------------------------------------

def to_markdown(report: Report, command: str = "python -m braze.tools.conformance") -> str:
    env, totals, kinds = report.environment, report.totals(), report.op_types()
    titles = " | ".join(s.capitalize() for s in STATUSES)
    lines = [
        "# ONNX node conformance", "",
        f"braze {env.get('braze')} on the CPU against the node test suite of onnx {env.get('onnx')} "
        f"(torch {env.get('torch')}), {env.get('date')}: {totals['cases']} cases in {report.seconds:.1f} s, "
        f"generated by `{command}`.", "",
        "Each case is parsed, built for its inputs' shapes, serialized and reloaded, run, and compared",
        "with the case's own tolerance (dtype and shape exactly). **Unsupported**: braze reported an op,",
        "dtype or attribute it does not implement. **Error**: another clean braze error. **Crash**: an",
        "exception that is not a braze error, a bug. A case of several op types (the `_expanded` ones)",
        "counts for each; an op type is supported (*yes*) when every case containing it passes.", "",
        "## Totals", "",
        f"| Cases | {titles} |", "|---:|" + "---:|" * len(STATUSES),
        f"| {totals['cases']} | " + " | ".join(str(totals[s]) for s in STATUSES) + " |", "",
        f"Op types: {kinds['in_report']} in these cases, {kinds['fully_supported']} of them fully supported when a "
        f"case counts for every op type it contains (the matrix below). Counting each case once, against the op it "
        f"tests (an `_expanded` case against its function op), {kinds['fully_supported_by_tested_op']} of the "
        f"{kinds['tested']} tested op types pass all their cases. braze defines {kinds['braze_defines']} op types of "
        f"the ONNX domain. With no braze definition: {', '.join(kinds['not_defined']) or 'none'}.",
        "", "## Support matrix", "",
        f"| Op type | Cases | {titles} | Supported |", "|---|---:|" + "---:|" * len(STATUSES) + "---|",
    ]
    for op_type, row in report.by_op().items():
        counts = " | ".join(str(row[s]) if row[s] else "" for s in STATUSES)
        lines.append(f"| {op_type} | {row['cases']} | {counts} | {row['supported']} |")
    failing = [c for c in report.cases if c.status in FAILURES]
    lines += ["", "## Cases that fail, error or crash", ""]
    lines += ["| Case | Status | Stage | Reason |", "|---|---|---|---|"] if failing else ["None."]
    lines += [f"| {c.name} | {c.status} | {c.stage} | {_cell(c)} |" for c in failing]
    lines += ["", "## Slowest cases", "", "| Case | Status | ms |", "|---|---|---:|"]
    lines += [f"| {c.name} | {c.status} | {c.seconds * 1e3:.1f} |"
              for c in sorted(report.cases, key=lambda c: -c.seconds)[:10]]
    if kinds["defined_not_in_suite"]:
        lines += ["", "## Op types braze defines that the suite does not exercise", "",
                  ", ".join(kinds["defined_not_in_suite"])]
    lines += ["", "## Every case", "", f"<details><summary>{len(report.cases)} cases</summary>", "",
              "| Case | Op types | Status | ms | Reason |", "|---|---|---|---:|---|"]
    lines += [f"| {c.name} | {', '.join(c.ops)} | {c.status} | {c.seconds * 1e3:.1f} | {_cell(c, 160)} |"
              for c in report.cases]
    return "\n".join(lines + ["", "</details>", ""])


def _cell(case: CaseResult, limit: int = 400) -> str:
    text = f"{case.reason} [at {case.where}]" if case.where else case.reason
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.replace("|", "\\|")


def to_text(report: Report, statuses: Sequence[str] = ()) -> str:
    """The support matrix as plain text, then the cases of the given statuses with reasons, then the totals."""
    width = max([len(op) for op in report.by_op()] + [7])
    head = f"{'op type':<{width}} {'cases':>5} " + " ".join(f"{s:>11}" for s in STATUSES) + "  supported"
    lines = [head, "-" * len(head)]
    lines += [f"{op:<{width}} {row['cases']:>5} " + " ".join(f"{row[s]:>11}" for s in STATUSES) + f"  {row['supported']}"
              for op, row in report.by_op().items()]
    listed = [c for c in report.cases if c.status in statuses]
    lines += [""] if listed else []
    lines += [f"{c.status:<11} {c.name} [{c.stage}]: {_cell(c, 1000)}" for c in listed]
    totals = report.totals()
    lines += ["", f"{totals['cases']} cases in {report.seconds:.1f} s: " + ", ".join(f"{totals[s]} {s}" for s in STATUSES)]
    return "\n".join(lines)


# -- the regression gate -----------------------------------------------------------------------

EXPECTED_HEADER = """\
# The node suite's expected outcome per case, braze against the onnx version pinned in constraints.txt.
# CI fails when a case listed as pass no longer passes, or is gone from the suite; any other status may improve.
# Regenerate after a change that makes cases pass: braze conformance --write-expected tests/conformance/expected.txt
"""


def write_expected(report: Report, path: str | Path) -> None:
    """Write each case's status, one `status name` line a case, sorted by name."""
    lines = [f"{c.status} {c.name}" for c in sorted(report.cases, key=lambda c: c.name)]
    Path(path).write_text(EXPECTED_HEADER + "\n".join(lines) + "\n")


def read_expected(path: str | Path) -> dict[str, str]:
    """The statuses `write_expected` wrote, by case name."""
    expected = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            status, _, name = line.partition(" ")
            if status not in STATUSES or not name:
                raise BrazeError(f"{path}:{number}: expected 'STATUS CASE_NAME' with a status of "
                                 f"{', '.join(STATUSES)}, got {line!r}")
            expected[name] = status
    return expected


def regressions(report: Report, expected: dict[str, str]) -> list[str]:
    """One line per case expected to pass that did not, or that the suite no longer has."""
    found = {c.name: c for c in report.cases}
    lines = []
    for name in sorted(n for n, status in expected.items() if status == "pass"):
        case = found.get(name)
        if case is None:
            lines.append(f"{name}: expected to pass, but the suite has no such case")
        elif case.status != "pass":
            lines.append(f"{name}: expected to pass, now {case.status} [{case.stage}]: {case.reason}")
    return lines


# -- command line ------------------------------------------------------------------------------

def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `conformance` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser("conformance", help="run the ONNX node test suite through braze and report",
                              description=__doc__.split("\n\n")[0])
    _add_arguments(p)
    p.set_defaults(func=run)
    return p


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--op", action="append", default=[], metavar="OP",
                   help="only cases that contain this op type (repeatable; case-insensitive)")
    p.add_argument("-k", "--pattern", metavar="REGEX", help="only cases whose name matches this regular expression")
    p.add_argument("--markdown", metavar="PATH", help="write the report as Markdown")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.add_argument("--failures", action="store_true", help="list the cases that fail, error or crash, with reasons")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"time limit per case, 0 for none; a case past it counts as a crash (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("-v", "--verbose", action="store_true", help="print each case as it finishes")
    p.add_argument("--expected", metavar="PATH",
                   help="exit 1 when a case this file lists as pass does not (tests/conformance/expected.txt)")
    p.add_argument("--write-expected", metavar="PATH", help="write each case's status, for --expected")


def run(args: argparse.Namespace) -> int:
    """Run the suite as `args` asks; exit status 1 when a case crashed or (with --expected) regressed, else 0."""
    cases = collect_cases(args.op, args.pattern)
    if not cases:
        raise BrazeError("no case matches the filters given")

    def show(c: CaseResult) -> None:
        print(f"{c.status:<11} {c.seconds * 1e3:8.1f} ms  {c.name}", file=sys.stderr, flush=True)

    report = run_suite(cases, show if args.verbose else None, args.timeout)
    print(to_text(report, FAILURES if args.failures else ()))
    if args.markdown:
        filters = "".join(f" --op {o}" for o in args.op) + (f" -k '{args.pattern}'" if args.pattern else "")
        Path(args.markdown).write_text(to_markdown(report, f"braze conformance{filters} --markdown {args.markdown}"))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=1) + "\n")
    if args.write_expected:
        write_expected(report, args.write_expected)
    regressed = regressions(report, read_expected(args.expected)) if args.expected else []
    for line in regressed:
        print(f"[E] regression: {line}", file=sys.stderr)
    return 1 if report.totals()["crash"] or regressed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m braze.tools.conformance", description=__doc__.split("\n\n")[0])
    _add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except BrazeError as e:
        print(f"[E] {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
