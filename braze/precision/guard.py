"""The accuracy guard: an INT8 engine held to an accuracy budget against the FP32 engine, with the layers that cost
the most accuracy moved back to the float type until the budget holds.

    engine = guard(budget, policy, engine, candidates, build, held_out, say)

`build(policy) -> Engine` builds the same model with another policy (the builder passes a rebuild that reuses
the calibration scales); `candidates` are the INT8 layers the guard may move (those no pin holds in INT8);
`held_out` are calibration samples that calibration did not see. The steps:

1. The FP32 engine (`build(PrecisionPolicy())`) and the INT8 engine run on the held-out samples; the budget's
   metric (budget.py) compares them. If it holds, nothing moves.
2. The ceiling: every candidate in the float type (the policy's, FP16 where fp16 is allowed: the budget is
   against FP32 all the same). If even that misses, nothing can meet the budget: a BrazeError says what each
   engine measured, before any sensitivity build is spent.
3. Sensitivity, measured: one build per candidate with that layer alone in the float type; its sensitivity is the
   metric's gain over the INT8 engine. Over `max_sensitivity_builds` candidates, a cheaper proxy ranks them first
   (the error each INT8 layer adds to what it was handed, from `ExecutionContext.run_layers` of both engines) and
   only the top ones are built; the rest follow in the proxy's order.
4. Moving: candidates go to the float type in that order (ties: the larger rel-L2 gain, then the cheaper layer
   in multiply-accumulates, then the model's order): one more per build while the layers moved are ones whose
   own move measured a gain; if the budget still misses, bisection on how many of the rest move (their order
   is a weaker signal, and a discrete metric such as top-1 on few samples rarely moves for one layer), ending
   at most at the ceiling.

Builds: the FP32 engine, the ceiling, at most `max_sensitivity_builds` one-layer builds, one per layer with a
measured gain and log2 of the rest (a set already built is not built again). The report
(`plan.build["accuracy_guard"]`) holds the budget, the metric before and after, each candidate's sensitivity,
the layers moved, the builds and the median latency of the final engine against the all-INT8 one on a held-out
sample.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import torch

from ..engine import Engine
from ..errors import BrazeError
from ..ir import DType, Graph, Node
from ..ops.kinds import Kind
from ..progress import Progress
from .budget import AccuracyBudget, rel_l2
from .data import load_samples, split
from .int8 import Calibration, Int8Report
from .policy import Precision, PrecisionPolicy

Build = Callable[[PrecisionPolicy], Engine]
Feed = Mapping[str, torch.Tensor]
SENSITIVITY_BUILDS = 64  # one-layer builds at most; over this many candidates the proxy ranks the rest
PROXY_SAMPLES = 4  # held-out samples the proxy runs layer by layer
LATENCY_RUNS = 20
LISTED = 8  # layers moved named in the progress line (the report has all)
_FLOAT_PINS = {DType.float16: Precision.FP16, DType.bfloat16: Precision.BF16}
_LOWERED = re.compile(r"^(.*)_(float16|bfloat16|float32)(_\d+)?$")


@dataclass
class Trial:
    """One engine with a set of layers moved to the float type, and what it measured."""

    moved: frozenset[str]
    engine: Engine
    value: float  # the budget's metric
    rel_l2: float  # the rel-L2 of the same outputs (the worst): the tie-breaker for a discrete metric


def accuracy_budget(spec: AccuracyBudget | str | None, policy: PrecisionPolicy, calibration: Calibration | None
                    ) -> AccuracyBudget | None:
    """A build's budget (None: no guard), refused before any long work where the build cannot check it."""
    if spec is None:
        return None
    budget = AccuracyBudget.parse(spec)
    if not policy.int8:
        raise BrazeError(f"accuracy budget {budget}: the accuracy guard moves INT8 layers back to float and needs "
                         f"int8 allowed (precision 'int8' or 'fp16,int8', --int8)")
    if calibration is None or calibration.data is None:
        raise BrazeError(f"accuracy budget {budget}: the accuracy guard needs calibration data, to hold samples out "
                         f"and check the engine on them (a calibration cache holds scales only); pass --calib DIR "
                         f"or Calibration(data=...)")
    return budget


def movable(report: Int8Report, policy: PrecisionPolicy) -> list[str]:
    """The INT8 layers the guard may move, named by the ONNX node each was made from: those no pin holds in INT8."""
    return [label(c.node) for c in report.choices if c.int8 and policy.pinned(c.node) is None]


def label(node: Node) -> str:
    """A layer's name as the user knows it (and pins it): the ONNX node it was made from, a fused layer's first."""
    return node.origin[0] if node.origin else node.name


def hold_out(calibration: Calibration, graph: Graph, device: torch.device, budget: AccuracyBudget
             ) -> tuple[Calibration, list[Feed]]:
    """`calibration` on the samples it keeps, and the held-out ones (`budget.held_out` of all) to check on."""
    samples = load_samples(calibration.data, graph, device, calibration.limit)
    kept, held = split(samples, budget.held_out)
    return replace(calibration, data=kept, limit=None), held


class _Judge:
    """Measures engines against the FP32 engine on the held-out samples; builds each set of moved layers once."""

    def __init__(self, budget: AccuracyBudget, policy: PrecisionPolicy, build: Build, samples: Sequence[Feed]):
        self.budget, self.policy, self.build, self.samples = budget, policy, build, samples
        self.pin = _FLOAT_PINS.get(policy.float_type, Precision.FP32)
        self.reference = build(PrecisionPolicy())
        self.builds = 1
        self.outputs = budget.outputs(self.reference.outputs)
        self.expected = self._run(self.reference)
        self.trials: dict[frozenset[str], Trial] = {}

    def add(self, moved: frozenset[str], engine: Engine) -> Trial:
        actual = self._run(engine)
        value = self.budget.worst([self.budget.measure(actual[o], self.expected[o]) for o in self.outputs])
        error = max(rel_l2(_flat(actual[o]), _flat(self.expected[o])) for o in self.outputs)
        self.trials[moved] = Trial(moved, engine, value, error)
        return self.trials[moved]

    def trial(self, moved: frozenset[str]) -> Trial:
        if moved not in self.trials:
            pins = {**self.policy.layers, **{name: self.pin for name in moved}}
            engine = self.build(PrecisionPolicy(self.policy.allowed, pins, self.policy.op_types))
            self.builds += 1
            self.add(moved, engine)
        return self.trials[moved]

    def _run(self, engine: Engine) -> dict[str, list[torch.Tensor]]:
        context = engine.create_execution_context()
        values: dict[str, list[torch.Tensor]] = {o: [] for o in self.outputs}
        for feed in self.samples:
            result = context.infer(feed)
            for o in self.outputs:
                values[o].append(result[o].detach().to("cpu", torch.float64))
        return values


def guard(budget: AccuracyBudget, policy: PrecisionPolicy, engine: Engine, candidates: Sequence[str], build: Build,
          held_out: Sequence[Feed], say: Progress, max_sensitivity_builds: int = SENSITIVITY_BUILDS) -> Engine:
    """The engine that meets `budget` (module docstring): `engine` itself, or a rebuild with the fewest, most
    sensitive `candidates` in the float type; its plan.build["accuracy_guard"] says what was done."""
    judge = _Judge(budget, policy, build, held_out)
    before = judge.add(frozenset(), engine)
    target = f"{budget} against the FP32 engine on {len(held_out)} held-out samples"
    report: dict[str, Any] = {"budget": str(budget), "metric": budget.metric, "bound": budget.bound,
                              "outputs": judge.outputs, "held_out_samples": len(held_out),
                              "float_type": str(policy.float_type), "before": _json(before.value)}
    say(f"accuracy guard: {budget.metric} {before.value:.6g} for the INT8 engine, budget {target}")
    if budget.holds(before.value):
        say("accuracy guard: the budget holds; no layer moved")
        return _finish(report, before, before, [], [], judge.builds + 1, held_out[0], say)
    ceiling = judge.trial(frozenset(candidates))
    if not budget.holds(ceiling.value):
        raise BrazeError(f"accuracy budget {target} cannot be met: the INT8 engine measures {budget.metric} "
                         f"{before.value:.6g}, and with all {len(candidates)} INT8 layers the guard may move in "
                         f"{policy.float_type} {ceiling.value:.6g}; loosen the budget"
                         f"{', allow fp32 only (no fp16/bf16)' if judge.pin is not Precision.FP32 else ''}, or give "
                         f"more held-out samples ({judge.builds + 1} builds)")
    ranking = _rank(judge, before, candidates, max_sensitivity_builds, say)
    helped = sum(1 for e in ranking if e.get("sensitivity", 0.0) > 0)
    final = _fewest(judge, [e["layer"] for e in ranking], helped, say)
    moved = [e for e in ranking if e["layer"] in final.moved]
    return _finish(report, before, final, moved, ranking, judge.builds + 1, held_out[0], say)


def _rank(judge: _Judge, before: Trial, candidates: Sequence[str], cap: int, say: Progress) -> list[dict[str, Any]]:
    """The candidates, most sensitive first: measured by one-layer builds, the rest (over `cap`) by the proxy."""
    costs = macs(judge.reference)
    proxy: dict[str, float] = {}
    order = list(candidates)
    if len(order) > cap:
        proxy = added_errors(before.engine, judge.reference, judge.samples[:PROXY_SAMPLES], order)
        order.sort(key=lambda n: (-proxy.get(n, 0.0), costs.get(n, 0)))
        say(f"accuracy guard: {len(order)} INT8 layers; measuring the {cap} the per-layer error ranks highest")
    else:
        say(f"accuracy guard: measuring the sensitivity of {len(order)} INT8 layers, one build each")
    measured, rest = [], []
    for i, name in enumerate(order):
        entry: dict[str, Any] = {"layer": name, "macs": costs.get(name, 0)}
        if name in proxy:
            entry["proxy_error"] = proxy[name]
        if i < cap:
            alone = judge.trial(frozenset([name]))
            entry.update(alone=_json(alone.value), sensitivity=_finite(judge.budget.gain(before.value, alone.value)),
                         rel_l2_gain=_finite(before.rel_l2 - alone.rel_l2))
            say(f"accuracy guard: {name} alone in {judge.policy.float_type}: {judge.budget.metric} {alone.value:.6g} "
                f"(sensitivity {entry['sensitivity']:+.6g})")
            measured.append(entry)
        else:
            rest.append(entry)
    measured.sort(key=lambda e: (-e["sensitivity"], -e["rel_l2_gain"], e["macs"]))
    return measured + rest


def _fewest(judge: _Judge, order: list[str], helped: int, say: Progress) -> Trial:
    """The shortest prefix of `order` found to meet the budget: one more layer per build through the first `helped`
    (those whose own move measured a gain), then bisection on how many of the rest, whose order is a weaker signal
    (the whole of `order` is the ceiling, known to hold)."""
    def measured(count: int) -> Trial:
        trial = judge.trial(frozenset(order[:count]))
        say(f"accuracy guard: {count} layer(s) in {judge.policy.float_type} (the last {order[count - 1]}): "
            f"{judge.budget.metric} {trial.value:.6g}")
        return trial

    for count in range(1, helped + 1):
        trial = measured(count)
        if judge.budget.holds(trial.value):
            return trial
    low, high = helped, len(order)  # NOTE: the first `low` miss (none moved: the INT8 engine), all `high` hold
    while high - low > 1:
        middle = (low + high) // 2
        if judge.budget.holds(measured(middle).value):
            high = middle
        else:
            low = middle
    return judge.trial(frozenset(order[:high]))


def macs(engine: Engine) -> dict[str, int]:
    """Multiply-accumulates per convolution and matrix-product layer of `engine`, by `label` (from shapes)."""
    found = {}
    for node in engine.graph.nodes:
        if node.op in (Kind.FUSED_CONV, Kind.FUSED_GEMM, Kind.QCONV, Kind.QGEMM) and len(node.inputs) > 1:
            found[label(node)] = _macs(node)
    return found


def _macs(node: Node) -> int:
    w, y = node.inputs[1], node.outputs[0]
    if w is None or w.shape is None or y.shape is None or not all(isinstance(d, int) for d in (*w.shape, *y.shape)):
        return 0
    per_output = math.prod(w.shape[1:]) if node.op in (Kind.FUSED_CONV, Kind.QCONV) else w.shape[0]
    return math.prod(y.shape) * per_output


def added_errors(engine: Engine, reference: Engine, samples: Sequence[Feed], layers: Sequence[str]
                 ) -> dict[str, float]:
    """The proxy: for each of `layers` (labels of `reference`'s layers), the rel-L2 its INT8 counterpart in
    `engine` adds to the largest error upstream of its inputs, averaged over `samples`. Tensors map by name (a
    requantized output `r.int8` is dequantized and compared with `r`; a lowered copy `y_float16` with `y`)."""
    outputs = {t.name: label(n) for n in reference.graph.nodes if label(n) in set(layers) for t in n.outputs}
    nodes = {n.name: n for n in engine.graph.nodes}
    totals = dict.fromkeys(layers, 0.0)
    ref_context, context = reference.create_execution_context(), engine.create_execution_context()
    for feed in samples:
        expected: dict[str, torch.Tensor] = {}
        ref_context.run_layers(feed, lambda _, names, values: expected.update(zip(names, values)))
        handed: dict[str, float] = {}

        def observe(layer: str, names: list[str], values: list[Any]) -> None:
            node = nodes[layer]
            upstream = max((handed.get(t.name, 0.0) for t in node.inputs if t is not None and not t.is_constant),
                           default=0.0)
            for name, value in zip(names, values):
                ref_name, value = _as_reference(name, value, node, expected)
                error = upstream
                if ref_name is not None:
                    error = max(upstream, rel_l2(_flat(value), _flat(expected[ref_name])))
                    if ref_name in outputs:
                        totals[outputs[ref_name]] += (error - upstream) / len(samples)
                handed[name] = error

        context.run_layers(feed, observe)
    return totals


def _as_reference(name: str, value: Any, node: Node, expected: Mapping[str, Any]) -> tuple[str | None, Any]:
    """The reference tensor `name` stands for, and `value` comparable with it (None where there is none)."""
    if not isinstance(value, torch.Tensor):
        return None, value
    if name.endswith(".int8") and float(node.attrs.get("out_scale", 0.0)) > 0:  # a requantized INT8 output
        zero = float(node.attrs.get("out_zero_point", 0))
        name, value = name[:-len(".int8")], (value.double() - zero) * float(node.attrs["out_scale"])
    while name not in expected:
        match = _LOWERED.match(name)
        if match is None:
            return None, value
        name = match.group(1)
    return (name, value) if value.is_floating_point() and isinstance(expected[name], torch.Tensor) else (None, value)


def latency_ms(engine: Engine, feed: Feed, runs: int = LATENCY_RUNS) -> float:
    """The median wall time of `runs` inferences of `engine` on `feed`, after two for warm-up, in milliseconds."""
    context = engine.create_execution_context()
    times = []
    for i in range(runs + 2):
        started = time.perf_counter()
        context.infer(feed)
        if engine.target.is_cuda:
            torch.cuda.synchronize()
        if i >= 2:
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _finish(report: dict[str, Any], before: Trial, final: Trial, moved: list[dict[str, Any]],
            ranking: list[dict[str, Any]], builds: int, feed: Feed, say: Progress) -> Engine:
    """`final`'s engine with the report in its plan; the latency against the all-INT8 engine where layers moved."""
    report.update(after=_json(final.value), moved=moved, sensitivity=ranking, builds=builds, speed_cost=0.0)
    if moved:
        fast, slow = latency_ms(before.engine, feed), latency_ms(final.engine, feed)
        report["latency_ms"] = {"int8": round(fast, 4), "final": round(slow, 4)}
        report["speed_cost"] = round(slow / fast - 1, 4)
        listed = ", ".join(f"{m['layer']} ({m['sensitivity']:+.4g})" if "sensitivity" in m else m["layer"]
                           for m in moved[:LISTED])
        listed += f" and {len(moved) - LISTED} more" if len(moved) > LISTED else ""
        say(f"accuracy guard: moved {len(moved)} layer(s) to {report['float_type']}: {listed}; {report['metric']} "
            f"{before.value:.6g} -> {final.value:.6g} ({builds} builds); median latency {fast:.3f} -> {slow:.3f} ms "
            f"on one held-out sample ({slow / fast - 1:+.1%})")
    final.engine.plan.build["accuracy_guard"] = report
    return final.engine


def _flat(values: Any) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).reshape(-1)
    return torch.cat([_flat(v) for v in values])


def _json(x: float) -> float | str:
    """A metric for the plan's JSON: infinity and NaN as strings."""
    return x if math.isfinite(x) else str(x)


def _finite(x: float) -> float:
    """`x` with infinities as huge finite numbers and NaN (inf - inf) as 0, for sorting and JSON."""
    return 0.0 if math.isnan(x) else max(-1e300, min(1e300, x))


__all__ = ["SENSITIVITY_BUILDS", "Trial", "accuracy_budget", "added_errors", "guard", "hold_out", "label", "latency_ms",
           "macs", "movable"]
