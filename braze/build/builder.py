"""The Builder: a Graph (or ONNX model, or Network) in, an Engine out.

    graph --bind shapes--> --infer--> --passes--> --tactics--> --memory plan--> Plan -> Engine

Every step reports progress through `BuilderConfig.progress` and raises a BrazeError that names
the node and the problem when the model cannot be built.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..device import Target
from ..engine import Engine, Plan
from ..engine.validate import arena_alignment
from ..errors import BrazeError, ShapeError
from ..ir import DType, Graph, format_shape
from ..kernels import tactics_for
from ..ops import infer_shapes
from ..ops.control_flow import invalid_branches
from ..passes.pipeline import LOWERED_PASSES, QDQ_PASSES, PassContext, optimize
from ..precision import Precision, PrecisionPolicy, lower_precision
from ..precision.budget import AccuracyBudget
from ..precision.guard import accuracy_budget, guard, hold_out, movable
from ..precision.int8 import Calibration, Int8Report, quantize
from ..progress import Progress, ProgressSetting, reporter
from ..tune import TimingCache
from .checks import check_declared, check_memory, check_quantization, declared_types
from .constants import bind_constants
from .memory import plan_memory
from .tactics import choose_tactics


@dataclass
class BuilderConfig:
    """How to build: input shapes for symbolic dims, optimization level, progress reporting."""

    shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    constants: Mapping[str, Any] = field(default_factory=dict)  # inputs fixed at build time: {"sr": 16000}
    optimization_level: int = 3  # 0: graph as parsed, heuristic tactics, no timing; higher: wider search
    # what layers may run in: a PrecisionPolicy, or "fp32", "fp16", "bf16", "fp16,int8", ... (docs/quantization.md)
    precision: PrecisionPolicy | str | Sequence[str] = "fp32"
    tf32: bool = False  # let fp32 matrix products and convolutions use TF32 (CUDA); the same as allowing tf32
    calibration: Calibration | None = None  # where INT8 scales come from (data and/or a cache), when int8 is allowed
    # "top1=0.99", "rel_l2=0.02", "cosine=0.999" [",output=NAME"]: INT8 layers go back to float until the engine
    # meets it against the FP32 engine on held-out calibration samples (docs/quantization.md, the accuracy guard)
    accuracy_budget: AccuracyBudget | str | None = None
    timing_cache: str | None = None  # a timing cache file to read and extend
    progress: ProgressSetting = None  # a callback, or True/False; None: lines on stderr where it is a terminal
    dump_dir: str | None = None  # write the graph after every pass here (also BRAZE_DEBUG=passes)


class Builder:
    def __init__(self, device: str | torch.device = "cpu"):
        self.target = Target.parse(device)

    def build(self, model: Any, config: BuilderConfig | None = None) -> Engine:
        """Build an engine from a Graph, a Network, or anything `parse_onnx` takes."""
        config = config or BuilderConfig()
        say = reporter(config.progress)
        policy = PrecisionPolicy.parse(config.precision, tf32=config.tf32)  # NOTE: checked before any long work
        budget = accuracy_budget(config.accuracy_budget, policy, config.calibration)
        level = config.optimization_level
        if not isinstance(level, int) or isinstance(level, bool) or level < 0:
            raise BrazeError(f"optimization_level {level!r}: an integer, 0 (the graph as parsed) or more")
        started = time.perf_counter()
        graph = _as_graph(model, say)
        source = graph.copy() if budget is not None else None  # NOTE: the accuracy guard rebuilds from it
        source_nodes = len(graph.nodes)
        say(f"building {graph.name!r}: {source_nodes} nodes, target {self.target}")

        bind_constants(graph, config.constants)
        bind_shapes(graph, config.shapes)
        declared = declared_types(graph)
        infer_shapes(graph)
        for line in invalid_branches(graph):
            say(f"warning: {line}")
        check_declared(graph, declared)
        check_quantization(graph)
        graph.cleanup()
        graph.verify()
        check_memory(graph, self.target)

        passes = PassContext(level=config.optimization_level, target=self.target.kind, policy=policy,
                             dump_dir=Path(config.dump_dir) if config.dump_dir else None)
        if config.optimization_level > 0:
            optimize(graph, passes)
            say(f"optimized: {source_nodes} nodes -> {len(graph.nodes)} layers "
                f"({sum(passes.fired.values())} rewrites)")

        int8, held_out = self._precision_stage(graph, policy, config, budget, passes, say)

        cache = TimingCache(self.target.signature(), config.timing_cache) if self.target.is_cuda else None
        with _tf32(policy.tf32):
            layers = choose_tactics(graph, self.target, config.optimization_level, say, cache)
        if cache is not None:
            cache.save()
        tactics = {t.name: t for t in tactics_for(self.target)}
        views = frozenset(n for n, c in layers.items() if tactics[c.tactic].moves_no_data)
        allocating = frozenset(n for n, c in layers.items() if not tactics[c.tactic].writes_output)
        memory = plan_memory(graph, alignment=arena_alignment(self.target), view_layers=views,
                             allocating_layers=allocating)
        say(f"memory plan: {memory.arena_size / 2**20:.2f} MiB of activations")
        check_memory(graph, self.target, memory.arena_size)
        plan = Plan(graph, layers, memory, self.target.signature(), build={
            "source_nodes": source_nodes,
            "layers": len(graph.nodes),
            "optimization_level": config.optimization_level,
            "precision": policy.describe(),
            "policy": policy.to_json(),
            "tf32": policy.tf32,
            **({"int8": int8.to_json()} if int8 is not None else {}),
            "rules_fired": dict(sorted(passes.fired.items())),
            "pass_seconds": {k: round(v, 4) for k, v in passes.seconds.items()},
        })
        engine = Engine(plan, self.target)
        if self.target.is_cuda:
            ctx = engine.create_execution_context()
            plan.build["cuda_graph"] = ctx.uses_cuda_graph
            plan.build["graph_pool_bytes"] = ctx.graph_pool_bytes
            if ctx.eager_reason:
                say(f"warning: contexts of this engine run layer by layer, without a CUDA graph: {ctx.eager_reason}")
        if budget is not None and int8 is not None:
            engine = self._guarded(engine, source, config, policy, int8, budget, held_out, say)
        engine.plan.build["build_seconds"] = round(time.perf_counter() - started, 3)
        say(f"built {len(engine.graph.nodes)} layers in {time.perf_counter() - started:.2f} s")
        return engine

    def _precision_stage(self, graph: Graph, policy: PrecisionPolicy, config: BuilderConfig,
                         budget: AccuracyBudget | None, passes: PassContext, say: Progress
                         ) -> tuple[Int8Report | None, list[Mapping[str, torch.Tensor]]]:
        """INT8 where allowed (calibrate, insert Q/DQ), the Q/DQ fusions, float lowering, then the passes that need
        the lowered types (docs/quantization.md). Returns the INT8 report and the samples the guard holds out."""
        int8, calibration, held_out = None, config.calibration, []
        level = config.optimization_level
        if policy.int8 and level == 0:
            say("warning: int8 needs optimization level 1 or more (its layers are fused ones): building in float")
        elif policy.int8:
            if budget is not None:
                calibration, held_out = hold_out(config.calibration, graph, self.target.device, budget)
            int8 = quantize(graph, policy, calibration, self.target.device, say)
            passes.calibrated = int8.quantized
        if level > 0:
            optimize(graph, passes, QDQ_PASSES)
        if policy.float_type is not DType.float32:
            keep = frozenset(n.name for n in graph.nodes if policy.pinned(n) == Precision.FP32)
            lower_precision(graph, policy.float_type, keep=keep)
            infer_shapes(graph)
            graph.verify()
        if level > 0:
            optimize(graph, passes, LOWERED_PASSES)
        return int8, list(held_out)

    def _guarded(self, engine: Engine, source: Graph, config: BuilderConfig, policy: PrecisionPolicy,
                 int8: Int8Report, budget: AccuracyBudget, held_out: Sequence[Mapping[str, torch.Tensor]],
                 say: Progress) -> Engine:
        """The accuracy guard (precision/guard.py) on `engine`, rebuilding `source` with the scales of `int8`."""
        rebuild = replace(config, tf32=False, calibration=Calibration(reuse=int8), accuracy_budget=None,
                          progress=False, dump_dir=None)
        return guard(budget, policy, engine, movable(int8, policy),
                     lambda p: self.build(source, replace(rebuild, precision=p)), held_out, say)


def _as_graph(model: Any, say: Progress) -> Graph:
    if isinstance(model, Graph):
        return model.copy()
    graph = getattr(model, "graph", None)  # a braze.Network
    if isinstance(graph, Graph):
        return graph.copy()
    from ..frontends.onnx import parse_onnx
    from ..frontends.onnx.opsets import reported_to

    if isinstance(model, str) and model.startswith("zoo:"):
        say(f"exporting {model} to ONNX with PyTorch's exporter")
    elif isinstance(model, (str, os.PathLike)):
        say(f"parsing {Path(model).name}")
    with reported_to(say):  # an old opset's conversion
        return parse_onnx(model)


def bind_shapes(graph: Graph, shapes: Mapping[str, Sequence[int]]) -> None:
    """Make every graph input's shape concrete from `shapes`; refuse what is left symbolic."""
    names = {t.name for t in graph.inputs}
    unknown = [n for n in shapes if n not in names]
    if unknown:
        raise ShapeError(f"shapes given for {', '.join(map(repr, unknown))}, which the model does not have as "
                         f"inputs; its inputs are {', '.join(repr(n) for n in names) or 'none'}")
    unresolved = []
    for t in graph.inputs:
        if t.is_tensor and t.shape is not None:  # NOTE: a declared -1 (Paddle's, ...) is a dynamic dim
            t.shape = tuple(None if isinstance(d, int) and d < 0 else d for d in t.shape)
        if t.name in shapes:
            given = tuple(int(d) for d in shapes[t.name])
            if t.shape is not None:
                if len(given) != len(t.shape):
                    raise ShapeError(f"input {t.name!r} has rank {len(t.shape)} {format_shape(t.shape)}, "
                                     f"the shape given, {format_shape(given)}, has rank {len(given)}")
                # NOTE: a declared 0 takes any size given (some exporters write it for a dynamic dim), and
                # stays an empty dim where none is given
                clash = [i for i, (d, g) in enumerate(zip(t.shape, given)) if isinstance(d, int) and d not in (0, g)]
                if clash:
                    raise ShapeError(f"input {t.name!r} is {format_shape(t.shape)} in the model; the shape given, "
                                     f"{format_shape(given)}, differs in dim {clash[0]}")
            if any(d < 0 for d in given):
                raise ShapeError(f"input {t.name!r}: shape {format_shape(given)} has a negative dim")
            t.shape = given
        elif not t.is_tensor:  # a sequence's tensors, or an optional's, are only known when fed
            t.shape = None if t.shape is None else tuple(d if isinstance(d, int) else None for d in t.shape)
        elif not t.is_static:
            unresolved.append(t)
        if t.dtype is None:
            raise ShapeError(f"input {t.name!r} has no element type in the model")
    if unresolved:
        listing = ", ".join(f"{t.name!r} {format_shape(t.shape)} ({_dynamic(t.shape)})" for t in unresolved)
        example = ",".join(f"{t.name}:" + "x".join(str(d) if isinstance(d, int) else "N" for d in (t.shape or ("N",)))
                           for t in unresolved)
        raise ShapeError(f"input(s) {listing} have dims that are not fixed; give their shapes, e.g. "
                         f"--shapes {example} or BuilderConfig(shapes={{...}})")


def _dynamic(shape: tuple | None) -> str:
    """Which dims of a declared shape are dynamic: symbols, unknowns, and the -1 some exporters write."""
    if shape is None:
        return "rank unknown"
    dims = [str(i) for i, d in enumerate(shape) if not isinstance(d, int)]
    return f"dynamic dim{'s' if len(dims) > 1 else ''} {', '.join(dims)}"


@contextlib.contextmanager
def _tf32(enabled: bool):
    if not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


__all__ = ["Builder", "BuilderConfig", "bind_shapes"]
