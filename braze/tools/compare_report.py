"""A `braze compare` report as text, in the manner of `polygraphy run`: what ran on what, a table per output
(one row per reference), a PASSED/FAILED line per output and for the whole, and with --per-layer a table of the
layers and the first layer whose error jumps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ir import format_shape
from .compare_layers import JUMP, LayerResult, first_jump, first_out_of_tolerance
from .compare_metrics import Diff

if TYPE_CHECKING:
    from .compare import CompareReport, OutputResult


def format_report(report: "CompareReport") -> list[str]:
    tol = report.tolerance
    lines = [f"[I] braze compare: {report.model} on {report.device}, precision {report.precision}, against "
             f"{' and '.join(report.against)}"]
    for i in report.inputs:
        lines.append(f"[I]     input {i['name']!r} {i['dtype']}{format_shape(tuple(i['shape']))}: {i['source']}")
    count = len(report.samples)
    shown = ", ".join(report.samples[:4]) + (f", ... ({count - 4} more)" if count > 4 else "")
    lines.append(f"[I]     {count} sample{'s' if count != 1 else ''}: {shown}")
    lines.append(f"[I]     tolerance of {report.tolerance_of}: rel-L2 <= {tol.rel_l2:g}, NaN/inf in the same places "
                 f"(integer and boolean outputs: equal)")
    for out in report.outputs:
        lines += _output(out)
    failed = [o.name for o in report.outputs if not o.passed]
    if report.layers is not None:
        lines += _layers(report.layers, tol.rel_l2, not failed)
    if failed:
        lines.append(f"[E] FAILED | Mismatched outputs: {failed}")
    else:
        lines.append(f"[I] PASSED | All outputs matched | Outputs: {[o.name for o in report.outputs]}")
    return lines


def _output(out: "OutputResult") -> list[str]:
    lines = [f"[I] Output {out.name!r} {out.dtype}{format_shape(tuple(out.shape))}"]
    if not out.diffs:
        return lines + [f"[I]     {out.note or 'not compared'}"]
    k = next((d.k for d in out.diffs.values() if d.k), None)
    header = ["vs.", "max abs", "max rel", "rel-L2", "cosine", "top-1", f"top-{k}" if k else "top-k", "NaN/inf",
              "result"]
    rows = [[runner, _num(d.max_abs), _num(d.max_rel), _num(d.rel_l2), f"{d.cosine:.7f}", _pct(d.top1), _pct(d.topk),
             "differ" if d.nonfinite else "same", "PASSED" if d.passed else "FAILED"]
            for runner, d in out.diffs.items()]
    lines += [f"[I]     {row}" for row in _table([header] + rows)]
    for runner, d in out.diffs.items():
        if not d.passed:
            lines.append(f"[E]     FAILED | Output {out.name!r} vs. {runner} | {_why(d)}")
    if out.passed:
        bound = next(iter(out.diffs.values())).bound
        worst = max(d.rel_l2 for d in out.diffs.values())
        what = f"rel-L2 {_num(worst)} <= {bound:g}" if bound else "equal"
        lines.append(f"[I]     PASSED | Output {out.name!r} | {what} against {' and '.join(out.diffs)}")
    return lines


def _why(d: Diff) -> str:
    where = f" (sample {d.sample})"
    if d.problem:
        return d.problem
    if d.nonfinite:
        return f"NaN/inf differ: {d.nonfinite}"
    if not d.bound:
        return f"not equal: max abs {_num(d.max_abs)}{where}"
    return f"rel-L2 {_num(d.rel_l2)} > {d.bound:g}{where}"


def _layers(layers: list[LayerResult], bound: float, passed: bool) -> list[str]:
    compared = sum(1 for layer in layers for t in layer.tensors if t.diff is not None)
    jump, out = first_jump(layers), first_out_of_tolerance(layers)
    lines = [f"[I] Per-layer comparison with onnxruntime, first sample: {len(layers)} layers, {compared} tensors "
             f"compared (rel-L2 bound {bound:g})"]
    header = ["#", "layer", "op", "tensor", "onnx tensor", "max abs", "rel-L2", "cosine", "handed", ""]
    rows = []
    for layer in layers:
        for j, t in enumerate(layer.tensors):
            head = [str(layer.index), _cut(layer.label), layer.op] if j == 0 else ["", "", ""]
            d = t.diff
            cells = [_num(d.max_abs), _num(d.error), f"{d.cosine:.7f}"] if d else [t.note or "", "", ""]
            mark = "" if j else "<- jump" if layer is jump else "<- out of tolerance" if layer is out else ""
            rows.append(head + [_cut(t.name, 24), _cut(t.onnx_name or "-", 24)] + cells
                        + [_num(layer.handed) if j == 0 else "", mark])
    lines += [f"[I]     {row}".rstrip() for row in _table([header] + rows)]
    severity = "[W]" if passed else "[E]"
    if jump is not None:
        lines.append(f"{severity} First layer whose error jumps: {_describe(jump, bound)}")
    else:
        lines.append(f"[I] No layer's error jumps: none goes out of tolerance with over {JUMP:g}x the error it is "
                     f"handed")
    if out is not None and out is not jump:
        lines.append(f"{severity} First layer out of tolerance: {_describe(out, bound)}")
    return lines


def _describe(layer: LayerResult, bound: float) -> str:
    return (f"#{layer.index} {layer.label!r} ({layer.op}, layer {layer.layer!r}, tactic {layer.tactic}): rel-L2 "
            f"{_num(layer.error)}, handed {_num(layer.handed)} (bound {bound:g})")


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return "0" if x == 0 else f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _cut(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."
