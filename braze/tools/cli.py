"""The `braze` command: build, run, inspect, bench, compare, demo and conformance.

    braze build model.onnx -o model.engine [--shapes input:1x3x224x224]
    braze build model.onnx -o model.engine --fp16 --int8 --calib DIR [--calib-cache FILE]
    braze run model.engine [--input input=x.npy] [--save-outputs DIR]
    braze inspect model.engine [--json]
    braze bench model.engine [--profile] [--json]
    braze compare model.onnx [--fp16] [--per-layer] [--json report.json]
    braze demo [--model resnet50]

Errors braze reports (BrazeError) print as one `[E]` line and exit with status 1; a bad argument is
argparse's usage line and status 2. Paths the command will write, and input files, are checked
before the long work. `run` and `demo` show a live count of their timed runs on stderr where it is a
terminal (--progress, --no-progress override). The precision and INT8 options are one set, shared by every
command that builds (common.add_precision_options).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import __version__
from ..build import Builder, BuilderConfig
from ..engine import Engine
from ..engine.format import is_engine_file
from ..errors import BrazeError
from ..precision import Calibration, PrecisionPolicy
from ..progress import Counter
from . import bench, conformance, demo
from .common import (add_precision_options, default_shapes, error, human_bytes, info, info_to_stderr,
                     is_engine_source, load_array, load_engine, model_label, non_negative_int, output_dir, parse_shapes,
                     positive_int, precision_from_args, precision_options_given, random_inputs, to_json, unmatched_pins,
                     writable_file)
from .inspect import describe_engine, describe_graph, format_engine, format_graph_summary
from .timing import measure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="braze", description="braze: deep-learning inference optimizer and runtime")
    parser.add_argument("--version", action="version", version=f"braze {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _register_build(sub)
    _register_run(sub)
    _register_inspect(sub)
    _register_compare(sub)
    bench.register(sub, _add_build_options, load_or_build)
    demo.register(sub)
    conformance.register(sub)
    args = parser.parse_args(argv)
    if getattr(args, "model", None) == "":
        parser.error(f"{args.command}: the model argument is empty; give an engine file, an ONNX file or zoo:NAME")
    try:
        return int(args.func(args) or 0)
    except BrazeError as e:
        error(str(e))
        return 1
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except BrokenPipeError:  # NOTE: stdout closed early (`braze inspect x.engine | head`): stop quietly, as tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


# -- build ---------------------------------------------------------------------------------------

def _add_build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shapes", nargs="+", metavar="NAME:DIMS",
                   help="input shapes, e.g. input:1x3x224x224 (or input:1,3,224,224)")
    p.add_argument("--constant", action="append", default=[], metavar="NAME=VALUE",
                   help="fix an input at build time, e.g. sr=16000 (an If on it folds away); a list as 1,2,3")
    p.add_argument("--device", default="cpu", help="target device: cpu or cuda[:N] (default cpu)")
    p.add_argument("--opt-level", type=non_negative_int, default=3, metavar="N",
                   help="optimization level, 0 = none (default 3)")
    p.add_argument("--no-optimize", action="store_true", help="keep the graph as parsed (same as --opt-level 0)")
    p.add_argument("--timing-cache", metavar="FILE", help="timing cache to read and extend")
    add_precision_options(p)


def _register_build(sub) -> None:
    p = sub.add_parser("build", help="build an engine from an ONNX model (or zoo:NAME)")
    p.add_argument("model", help="ONNX file or zoo:NAME")
    p.add_argument("-o", "--output", required=True, help="engine file to write")
    _add_build_options(p)
    p.set_defaults(func=_build)


def build_engine(model: str, args: argparse.Namespace, log=info) -> Engine:
    if is_engine_file(model):
        raise BrazeError(f"{model} is a braze engine already; building takes an ONNX model (or zoo:NAME): "
                         f"run, bench or inspect the engine instead")
    builder = Builder(device=args.device)
    shapes = default_shapes(model, parse_shapes(args.shapes))
    if args.timing_cache:
        writable_file(args.timing_cache, "--timing-cache")
    policy, calibration = precision_from_args(args)
    level = 0 if args.no_optimize else args.opt_level
    log(f"building {model_label(model)} for {args.device} ({policy.describe()})"
        + (f" with shapes {shapes}" if shapes else ""))
    config = BuilderConfig(shapes=shapes, constants=parse_constants(args.constant),
                           optimization_level=level, precision=policy, calibration=calibration,
                           accuracy_budget=args.accuracy_budget, timing_cache=args.timing_cache,
                           progress=lambda m: log(f"  {m}"))
    engine = builder.build(model, config)
    for pin in unmatched_pins(policy, (step.node for step in engine.steps)):
        log(f"  warning: {pin} pins no layer of this engine; `braze inspect` lists its layers, their ops and "
            f"the source nodes each stands for")
    return engine


def parse_constants(items: Sequence[str]) -> dict[str, object]:
    """`--constant sr=16000` -> {"sr": 16000}; `--constant scales=1,1,2,2` -> a list; true/false for booleans."""
    constants: dict[str, object] = {}
    for item in items:
        name, _, text = item.partition("=")
        example = "write NAME=VALUE, e.g. sr=16000 (a list as 1,2,3)"
        if not name or not text:
            raise BrazeError(f"--constant {item!r}: {example}")
        try:
            values = [_number(v) for v in text.split(",")]
        except ValueError:
            raise BrazeError(f"--constant {item!r}: {text!r} is not a number or a list of numbers; {example}") from None
        if name in constants:
            raise BrazeError(f"--constant {item!r}: input {name!r} is given twice")
        constants[name] = values[0] if len(values) == 1 else values
    return constants


def _number(text: str) -> int | float | bool:
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return int(text) if text.lstrip("+-").isdigit() else float(text)


def _build(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    output = writable_file(args.output, "-o")
    engine = build_engine(args.model, args)
    data = engine.serialize()
    try:
        output.write_bytes(data)
    except OSError as e:
        raise BrazeError(f"-o {args.output}: cannot write the engine: {e.strerror or e}") from None
    info(f"wrote {args.output} ({human_bytes(len(data))}) in {time.perf_counter() - started:.2f} s: "
         f"{engine.num_layers} layers, {human_bytes(engine.device_memory_size)} of activations per context")
    return 0


# -- run -----------------------------------------------------------------------------------------

def _register_run(sub) -> None:
    p = sub.add_parser("run", help="run an engine (or build and run an ONNX model) on given or random inputs")
    p.add_argument("model", help="engine file, ONNX file or zoo:NAME")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input from a .npy file")
    p.add_argument("--save-outputs", metavar="DIR", help="write each output to DIR/NAME.npy")
    p.add_argument("--iterations", type=positive_int, default=10, help="timed runs (default 10)")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random inputs")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a live count of the timed runs on stderr (default: where stderr is a terminal)")
    _add_build_options(p)
    p.set_defaults(func=_run)


def load_or_build(model: str, args: argparse.Namespace, log=info) -> Engine:
    if is_engine_source(model):
        ignored = precision_options_given(args)
        if ignored:
            log(f"warning: {', '.join(ignored)} ignored: {model} is an engine, built already")
        return load_engine(model)
    return build_engine(model, args, log)


def _run(args: argparse.Namespace) -> int:
    given = {}
    for item in args.input:
        name, sep, file = item.partition("=")
        if not sep or not name:
            raise BrazeError(f"--input {item!r}: expected NAME=FILE.npy")
        if name in given:
            raise BrazeError(f"--input {item!r}: input {name!r} is given twice")
        given[name] = load_array(name, file)
    out_dir = output_dir(args.save_outputs, "--save-outputs") if args.save_outputs else None
    log = info_to_stderr if args.json else info
    engine = load_or_build(args.model, args, log=log)
    feeds = {**random_inputs(engine.inputs, args.seed), **given}
    ctx = engine.create_execution_context()
    outputs = ctx.infer(feeds)
    log(f"timing {args.iterations} runs after {args.warmup} warm-up runs")
    counter = Counter("timed runs", args.iterations, args.progress, prefix="[I] ")
    stats = measure(lambda: ctx.infer(feeds), warmup=args.warmup, iterations=args.iterations, on_run=counter)
    if out_dir is not None:
        for name, value in outputs.items():
            try:
                np.save(out_dir / f"{_file_name(name)}.npy", value)
            except OSError as e:
                raise BrazeError(f"--save-outputs {args.save_outputs}: cannot write {name!r}: {e.strerror or e}"
                                 ) from None
    summary = {name: _stats(value) for name, value in outputs.items()}
    if args.json:
        print(to_json({"latency_ms": stats.as_dict(), "outputs": summary}))
        return 0
    info(f"inference on {engine.target}: {stats.summary()}")
    for name, s in summary.items():
        info(f"output {name} [dtype={s['dtype']}, shape={tuple(s['shape'])}] | "
             + ", ".join(f"{k}={v:.5g}" for k, v in s.items() if k not in ("dtype", "shape")))
    if args.save_outputs:
        info(f"outputs saved to {args.save_outputs}/")
    return 0


def _stats(value: np.ndarray) -> dict:
    a = np.asarray(value)
    base: dict = {"dtype": str(a.dtype), "shape": list(a.shape)}
    if a.size and a.dtype.kind in "fiub":
        f = a.astype(np.float64)
        base.update(mean=float(f.mean()), std=float(f.std()), min=float(f.min()), max=float(f.max()))
    return base


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


# -- inspect -------------------------------------------------------------------------------------

def _register_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="show an engine's layers, tactics, shapes and memory (or an ONNX model's graph)")
    p.add_argument("model", help="engine file, ONNX file or zoo:NAME")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    path = Path(args.model)
    if is_engine_source(args.model):
        desc = describe_engine(load_engine(path), size_bytes=path.stat().st_size)
        print(to_json(desc) if args.json else format_engine(desc, f"Engine: {path.name}"))
        return 0
    from ..frontends.onnx import parse_onnx

    desc = describe_graph(parse_onnx(args.model))
    print(to_json(desc) if args.json else format_graph_summary(desc, model_label(args.model)))
    return 0


# -- compare -------------------------------------------------------------------------------------

def _register_compare(sub) -> None:
    p = sub.add_parser("compare", help="run a braze engine, onnxruntime and braze's reference on the same inputs and "
                                      "compare every output (exit status 1 if one is out of tolerance)")
    p.add_argument("model", help="ONNX file or zoo:NAME")
    p.add_argument("--device", default="cpu", help="target device of the engine: cpu or cuda[:N] (default cpu)")
    p.add_argument("--shapes", nargs="+", metavar="NAME:DIMS", help="input shapes, e.g. input:1x3x224x224")
    p.add_argument("--opt-level", type=non_negative_int, default=3, metavar="N",
                   help="optimization level of the engine, 0 = none (default 3)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                      help="an input from a .npy file (the other inputs random)")
    data.add_argument("--data", metavar="DIR", help="a folder of samples: .npz of named inputs, or .npy (one input)")
    p.add_argument("--int-range", type=_range(int), default=(0, 1), metavar="LO,HI",
                   help="random integer inputs in [LO, HI] (default 0,1)")
    p.add_argument("--float-range", type=_range(float), default=(-1.0, 1.0), metavar="LO,HI",
                   help="random float inputs uniform in [LO, HI] (default -1,1; a negative LO after '=': "
                        "--float-range=-2,2)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--samples", type=positive_int, default=1, metavar="N", help="random samples to run (default 1)")
    p.add_argument("--per-layer", action="store_true",
                   help="also compare every layer's outputs with onnxruntime's and name the first whose error jumps")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="top-k agreement to report (default 5)")
    p.add_argument("--against", type=_runners, default=None, metavar="R[,R]",
                   help="references: onnxruntime, reference, or both (default both)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON to FILE")
    add_precision_options(p)
    p.set_defaults(func=_compare)


def _range(kind: type):
    def parse(text: str) -> tuple:
        parts = text.split(",")
        try:
            lo, hi = (kind(x) for x in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            lo = None
        if lo is None or not lo <= hi:  # NOTE: also refuses nan
            raise argparse.ArgumentTypeError(f"{text!r}: write LO,HI with LO <= HI, e.g. "
                                             f"{'0,10' if kind is int else '-1,1'}")
        return lo, hi
    return parse


def _runners(text: str) -> list[str]:
    from .compare import RUNNERS

    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in RUNNERS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(RUNNERS)} (comma-separated)")
    return names


def _compare(args: argparse.Namespace) -> int:
    from .compare import compare_model

    if is_engine_source(args.model):
        raise BrazeError(f"{args.model} is a braze engine; compare takes the ONNX model (or zoo:NAME) and builds it")
    report_file = writable_file(args.json, "--json") if args.json else None
    files: dict[str, str] = {}
    for item in args.input:
        name, sep, file = item.partition("=")
        if not sep or not name:
            raise BrazeError(f"--input {item!r}: expected NAME=FILE.npy")
        if name in files:
            raise BrazeError(f"--input {item!r}: input {name!r} is given twice")
        files[name] = file
    policy, calibration = precision_from_args(args)
    shapes = default_shapes(args.model, parse_shapes(args.shapes))
    info(f"building {model_label(args.model)} for {args.device} ({policy.describe()})")
    engine = None
    if calibration is not None or args.accuracy_budget is not None:
        engine = _calibrated_engine(args, policy, calibration, shapes, files)
    report = compare_model(args.model, device=args.device, precision=policy, shapes=shapes, feeds=args.data,
                           input_files=files, int_range=args.int_range, float_range=args.float_range, seed=args.seed,
                           samples=args.samples, per_layer=args.per_layer, top_k=args.top_k, against=args.against,
                           optimization_level=args.opt_level, engine=engine, progress=lambda m: info(f"  {m}"))
    print(report.format(), flush=True)
    if report_file is not None:
        try:
            report_file.write_text(to_json(report.to_dict()) + "\n")
        except OSError as e:
            raise BrazeError(f"--json {args.json}: cannot write the report: {e.strerror or e}") from None
        info(f"report written to {args.json}")
    return 0 if report.passed else 1


def _calibrated_engine(args: argparse.Namespace, policy: PrecisionPolicy, calibration: Calibration | None,
                       shapes: dict[str, tuple[int, ...]], files: dict[str, str]) -> Engine:
    """The INT8 engine compare checks, built here as compare_model would build it, with the calibration and the
    accuracy budget (compare_model takes neither)."""
    from ..frontends.onnx import parse_onnx
    from .compare_inputs import read_samples, static_shapes

    graph = parse_onnx(args.model)
    config = BuilderConfig(shapes=static_shapes(graph, shapes, read_samples(args.data, files)), precision=policy,
                           calibration=calibration, accuracy_budget=args.accuracy_budget,
                           optimization_level=args.opt_level, progress=lambda m: info(f"  {m}"))
    return Builder(args.device).build(graph, config)


if __name__ == "__main__":
    sys.exit(main())
