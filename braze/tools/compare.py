"""`braze compare`: a braze engine against onnxruntime and braze's float32 reference, on the same inputs.

    report = compare_model("model.onnx", device="cuda", precision="fp16", per_layer=True)
    print(report.format()); report.passed; report.to_dict()

The CLI and the tests call these same functions (Polygraphy's `run --onnxrt --trt` is the model). Each output of
the engine is compared with each reference (`against`): **onnxruntime** (CPUExecutionProvider), the anchor, and
braze's **reference**: the parsed graph run with the ops' reference implementations (`braze.ops.evaluate.
run_graph`) in float32 on the CPU. The reference shares nothing with the engine but the frontend (no pass, no
precision lowering, no tactic, no memory plan), so an output that fails against both while the reference matches
onnxruntime points at the build, and one that fails against onnxruntime only points at an op's semantics. An
optimization-level-0 engine would share the tactics and the memory plan with what is being checked.

Metrics and pass/fail: `compare_metrics`; per-layer comparison and the first layer whose error jumps:
`compare_layers`; inputs: `compare_inputs`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from ..build import Builder, BuilderConfig
from ..build.builder import bind_shapes
from ..engine import Engine
from ..errors import BrazeError, first_line
from ..ir import Graph, Tensor, to_numpy, to_torch
from ..ops import infer_shapes
from ..ops.evaluate import run_graph
from ..progress import ProgressSetting, reporter
from ..testing import Tolerance
from .compare_inputs import FeedSource, check_samples, random_feed, read_samples, static_shapes
from .compare_layers import (LayerRecorder, LayerResult, first_jump, first_out_of_tolerance, onnx_tensor_names,
                             wanted_names, with_outputs)
from .compare_metrics import Diff, diff, engine_tolerance, merge
from .compare_report import format_report

RUNNERS = ("onnxruntime", "reference")


@dataclass
class OutputResult:
    name: str
    dtype: str
    shape: list[int]
    diffs: dict[str, Diff] = field(default_factory=dict)  # by reference: "onnxruntime", "reference"
    note: str | None = None  # why it was not compared, if it was not

    @property
    def passed(self) -> bool:
        return all(d.passed for d in self.diffs.values())


@dataclass
class CompareReport:
    model: str
    device: str
    precision: str
    tolerance_of: str  # the type the tolerance is that of (the engine's least precise float type)
    tolerance: Tolerance
    against: list[str]
    inputs: list[dict[str, Any]]  # name, dtype, shape, source
    samples: list[str]
    outputs: list[OutputResult]
    layers: list[LayerResult] | None = None  # with per_layer

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def first_jump(self) -> LayerResult | None:
        """The first layer whose error jumps (compare_layers says how), with per_layer; else None."""
        return first_jump(self.layers or [])

    @property
    def first_out_of_tolerance(self) -> LayerResult | None:
        return first_out_of_tolerance(self.layers or [])

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["passed"] = self.passed
        for key, layer in (("first_jump", self.first_jump), ("first_out_of_tolerance", self.first_out_of_tolerance)):
            doc[key] = None if layer is None else {"index": layer.index, "layer": layer.layer, "label": layer.label}
        return doc

    def format(self) -> str:
        return "\n".join(format_report(self))


def compare_model(model: Any, *, device: str = "cpu", precision: Any = "fp32",
                  shapes: Mapping[str, Sequence[int]] | None = None, feeds: FeedSource = None,
                  input_files: Mapping[str, str] | None = None, int_range: tuple[int, int] = (0, 1),
                  float_range: tuple[float, float] = (-1.0, 1.0), seed: int = 0, samples: int = 1,
                  per_layer: bool = False, top_k: int = 5,
                  tolerances: Tolerance | Mapping[str, Tolerance] | None = None, against: Sequence[str] | None = None,
                  optimization_level: int = 3, engine: Engine | None = None,
                  progress: ProgressSetting = False) -> CompareReport:
    """Build `model` (an ONNX path, bytes or ModelProto, zoo:NAME, or a braze Graph) for `device` and `precision`,
    or take the built `engine`, run it and each of `against` (default: onnxruntime, where the model is ONNX, and
    braze's reference) on the same inputs, and compare every output.

    Inputs: `feeds` (a folder of .npy/.npz samples, a feed dict or an iterable of them) or `input_files` (input
    name -> .npy file; other inputs random), else `samples` random feeds: floats uniform in `float_range`, integers
    in `int_range` (ends included), booleans 0/1, from `seed`. `shapes` fixes symbolic dims (a sample's shape does
    too). `tolerances`: one Tolerance, or one per output name; default: the engine's (`engine_tolerance`).
    `per_layer`: also compare every layer's outputs with onnxruntime's on the first sample."""
    _check_options(int_range, float_range, samples, top_k)
    say = reporter(progress)
    proto, graph, label = _load(model)
    against = list(against) if against is not None else [r for r in RUNNERS if proto is not None or r != "onnxruntime"]
    unknown = [r for r in against if r not in RUNNERS]
    if unknown or not against:
        raise BrazeError(f"compare against {', '.join(map(repr, unknown)) or 'nothing'}: choose from "
                         f"{', '.join(RUNNERS)}")
    if proto is None and ("onnxruntime" in against or per_layer):
        raise BrazeError(f"{label} is not an ONNX model: onnxruntime cannot run it; compare against the reference "
                         f"only, without per-layer comparison")
    if per_layer and "onnxruntime" not in against:
        raise BrazeError("per-layer comparison is with onnxruntime's values of the ONNX tensors: compare against "
                         "onnxruntime too")
    given = read_samples(feeds, input_files)
    if engine is None:
        config = BuilderConfig(shapes=static_shapes(graph, shapes or {}, given), precision=precision,
                               optimization_level=optimization_level, progress=progress)
        engine = Builder(device).build(graph, config)
    labels, feed_list, sources = _feeds(engine, given, bool(input_files), seed, samples, float_range, int_range)
    tol_of, default_tol = engine_tolerance(engine)
    outputs = [OutputResult(b.name, str(b.dtype), [int(d) for d in b.shape or ()]) for b in engine.outputs]
    ctx = engine.create_execution_context()
    session = _session(proto, wanted_names(engine, proto) if per_layer else []) if "onnxruntime" in against else None
    ref_graph = _reference_graph(graph, engine) if "reference" in against else None
    layers = None
    per_sample: dict[tuple[str, str], list[Diff]] = {}
    for i, feed in enumerate(feed_list):
        say(f"running sample {i + 1} of {len(feed_list)}")
        expected: dict[str, dict[str, Any]] = {}
        if session is not None:
            expected["onnxruntime"] = _run_onnxruntime(session, feed, label)
        if ref_graph is not None:
            expected["reference"] = _run_reference(ref_graph, feed)
        if per_layer and i == 0:
            known = set.union(*onnx_tensor_names(proto))
            recorder = LayerRecorder(engine, {**feed, **expected["onnxruntime"]}, known, default_tol)
            actual = ctx.run_layers(feed, recorder)
            layers = recorder.layers
        else:
            actual = ctx.infer(feed)
        for out in outputs:
            tol = _tolerance_for(out.name, tolerances, default_tol)
            for runner, values in expected.items():
                got, want = actual.get(out.name), values.get(out.name)
                if not _is_array(got) or not _is_array(want):
                    out.note = f"not a tensor in braze and in the {runner}: not compared"
                    continue
                per_sample.setdefault((out.name, runner), []).append(diff(got, want, tol, top_k, sample=i))
    for out in outputs:
        out.diffs = {r: merge(per_sample[(out.name, r)]) for r in against if (out.name, r) in per_sample}
    inputs = [{"name": b.name, "dtype": str(b.dtype), "shape": list(b.shape or ()), "source": sources[b.name]}
              for b in engine.inputs]
    return CompareReport(label, str(engine.target), str(engine.plan.build.get("precision", precision)), tol_of,
                         default_tol if tolerances is None or not isinstance(tolerances, Tolerance) else tolerances,
                         against, inputs, labels, outputs, layers)


def _check_options(int_range: tuple[int, int], float_range: tuple[float, float], samples: int, top_k: int) -> None:
    for what, (lo, hi) in (("int range", int_range), ("float range", float_range)):
        if not lo <= hi:
            raise BrazeError(f"{what} {lo},{hi}: LO must not exceed HI")
    if not all(np.isfinite(float_range)):
        raise BrazeError(f"float range {float_range[0]},{float_range[1]}: give finite numbers")
    if samples < 1:
        raise BrazeError(f"samples {samples}: 1 or more")
    if top_k < 1:
        raise BrazeError(f"top-k {top_k}: 1 or more")


def _load(model: Any) -> tuple[onnx.ModelProto | None, Graph, str]:
    """The ONNX model (None for a braze Graph or Network), its parsed graph, and a label for the report."""
    graph = model if isinstance(model, Graph) else getattr(model, "graph", None)
    if isinstance(graph, Graph):
        return None, graph, f"graph {graph.name!r}"
    from ..frontends.onnx import parse_onnx
    from ..frontends.onnx.loader import load_model

    proto, where = load_model(model)
    label = os.path.basename(where) if isinstance(model, (str, os.PathLike)) and not str(model).startswith("zoo:") \
        else where
    return proto, parse_onnx(proto), label


def _feeds(engine: Engine, given: list, partial: bool, seed: int, samples: int, float_range: tuple[float, float],
           int_range: tuple[int, int]) -> tuple[list[str], list[dict[str, np.ndarray]], dict[str, str]]:
    """Every feed to run and its label: the given samples (checked; with `partial`, missing inputs random), else
    random ones; and where each input's values come from."""
    checked = check_samples(given, engine.inputs, fill=partial)
    sources = {b.name: "given" if checked and b.name in checked[0][1] else _random_kind(b.dtype, float_range, int_range)
               for b in engine.inputs}
    if checked:
        feeds = [random_feed(engine.inputs, np.random.default_rng(seed), float_range, int_range, arrays)
                 for _, arrays in checked]
        return [label for label, _ in checked], feeds, sources
    feeds = [random_feed(engine.inputs, np.random.default_rng(seed + i), float_range, int_range)
             for i in range(samples)]
    return [f"random (seed {seed + i})" for i in range(samples)], feeds, sources


def _random_kind(dtype, float_range: tuple[float, float], int_range: tuple[int, int]) -> str:
    if dtype.is_floating:
        return f"random uniform in [{float_range[0]:g}, {float_range[1]:g}]"
    return "random 0/1" if dtype.value == "bool" else f"random integers in [{int_range[0]}, {int_range[1]}]"


def _session(proto: onnx.ModelProto | None, extra: list[str]):
    """An onnxruntime session on the CPU for `proto`, outputting `extra` tensors too."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise BrazeError("onnxruntime is not installed (pip install onnxruntime); compare against the reference "
                         "only (--against reference)") from None
    model = with_outputs(proto, extra) if extra else proto
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), options,  # type: ignore[union-attr]
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # NOTE: onnxruntime raises its own exception types
        raise BrazeError(f"onnxruntime cannot load the model: {first_line(e, 300)}; compare against the reference "
                         f"only (--against reference)") from None


def _run_onnxruntime(session, feed: Mapping[str, np.ndarray], label: str) -> dict[str, Any]:
    names = [o.name for o in session.get_outputs()]
    inputs = {i.name: feed[i.name] for i in session.get_inputs() if i.name in feed}
    try:
        return dict(zip(names, session.run(names, inputs)))
    except Exception as e:
        raise BrazeError(f"onnxruntime failed to run {label}: {first_line(e, 300)}") from None


def _reference_graph(graph: Graph, engine: Engine) -> Graph:
    ref = graph.copy()
    shapes = {b.name: tuple(b.shape) for b in engine.inputs
              if b.shape is not None and all(isinstance(d, int) for d in b.shape)}
    bind_shapes(ref, shapes)  # type: ignore[arg-type]
    infer_shapes(ref)
    return ref


def _run_reference(graph: Graph, feed: Mapping[str, np.ndarray]) -> dict[str, Any]:
    try:
        values = run_graph(graph, [to_torch(feed[t.name]) for t in graph.inputs])
    except BrazeError as e:
        raise BrazeError(f"braze's reference failed: {e}") from None
    return {t.name: _host(v, t) for t, v in zip(graph.outputs, values)}


def _host(value: Any, t: Tensor) -> Any:
    """A reference value on the host: numpy arrays (a list for a sequence, None for an absent optional)."""
    if isinstance(value, list):
        return [to_numpy(v) for v in value]
    emulated = t.dtype is not None and t.dtype.emulated  # NOTE: only an emulated type needs naming (int8 storage)
    return None if value is None else to_numpy(value, t.dtype if emulated else None)


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, np.generic))


def _tolerance_for(name: str, tolerances: Tolerance | Mapping[str, Tolerance] | None, default: Tolerance) -> Tolerance:
    if tolerances is None:
        return default
    if isinstance(tolerances, Tolerance):
        return tolerances
    return tolerances.get(name, default)
