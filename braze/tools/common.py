"""What the CLI commands share: log lines, argument types, --shapes parsing, the precision and INT8 calibration
options (trtexec's spelling), checked paths, model sources, input files and random inputs. Every check here runs
before the long work (a build, the timed runs)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..device import human_bytes  # noqa: F401  (the commands' byte formatter, shared with braze/device.py)
from ..engine import Binding, Engine, Runtime
from ..engine.format import is_engine_file
from ..errors import BrazeError, EngineFormatError
from ..ir import Node
from ..precision import Calibration, Precision, PrecisionPolicy
from ..precision.calibrate import METHODS
from ..precision.data import SUFFIXES

ZOO_PREFIX = "zoo:"


def info(msg: str) -> None:
    print(f"[I] {msg}", flush=True)


def info_to_stderr(msg: str) -> None:
    """Progress lines when stdout carries a machine-readable result."""
    print(f"[I] {msg}", file=sys.stderr, flush=True)


def error(msg: str) -> None:
    print(f"[E] {msg}", file=sys.stderr, flush=True)


def to_json(value: object) -> str:
    """`value` as standard JSON: a NaN or infinity (an output's mean, say) becomes null, as JSON has neither."""
    def clean(v: object) -> object:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), indent=2, allow_nan=False)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, 0)


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    return _number(text, float, 0)


def _number(text: str, kind: type, least: int):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not value >= least:  # NOTE: also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not allowed: it must be {least} or more")
    return value


def parse_shapes(items: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    """`input:1x3x224x224` or `input:1,3,224,224` (several separated by spaces or commas) -> {"input": (1, 3, 224,
    224)}. A name may hold ':' (`input:0:1x3`): the dims follow the last one."""
    shapes: dict[str, tuple[int, ...]] = {}
    example = "write NAME:DIMS, e.g. input:1x3x224x224 or input:1,3,224,224"
    for item in items or ():
        for spec in _shape_specs(item, example):
            name, _, dims = spec.rpartition(":")
            if not name:
                raise BrazeError(f"--shapes {item!r}: {spec!r} has no input name; {example}")
            parts = dims.replace(",", "x").split("x") if dims else []
            bad = [d for d in parts if not d.strip().isdigit()]
            if bad:
                raise BrazeError(f"--shapes {item!r}: dim {bad[0]!r} of {name!r} is not a non-negative integer; "
                                 f"{example}")
            if name in shapes:
                raise BrazeError(f"--shapes {item!r}: input {name!r} is given twice")
            shapes[name] = tuple(int(d) for d in parts)
    return shapes


def _shape_specs(item: str, example: str) -> list[str]:
    """`a:1x3,b:2,4` -> [`a:1x3`, `b:2,4`]: a comma starts a new spec only where a name (a ':') follows."""
    specs: list[str] = []
    for piece in item.split(","):
        if ":" in piece or not specs:
            if ":" not in piece:
                raise BrazeError(f"--shapes {item!r}: expected NAME:DIMS; {example}")
            specs.append(piece)
        else:
            specs[-1] += "," + piece
    return [s for s in specs if s]


PRECISION_FLAGS = ("fp16", "bf16", "int8", "tf32")
_DEFAULT_CALIBRATION = Calibration()
_CALIBRATION_FLAGS = (("--calib", "calib"), ("--calibrator", "calibrator"), ("--percentile", "percentile"),
                      ("--calib-cache", "calib_cache"), ("--calib-samples", "calib_samples"))


def add_precision_options(p: argparse.ArgumentParser) -> None:
    """The precision and INT8 options of every command that builds (build, run, bench, compare), as trtexec spells
    them; `precision_from_args` turns them into a policy and a calibration."""
    g = p.add_argument_group("precision (several allowed: the builder chooses per layer, e.g. --fp16 --int8)")
    floats = g.add_mutually_exclusive_group()
    floats.add_argument("--fp16", action="store_true", help="allow FP16 (the engine stores its floats in float16)")
    floats.add_argument("--bf16", action="store_true", help="allow BF16 (the engine stores its floats in bfloat16)")
    g.add_argument("--int8", action="store_true", help="allow INT8 for convolutions and matrix products (needs "
                   "--calib or --calib-cache, unless the model has its own Q/DQ nodes)")
    g.add_argument("--tf32", action="store_true", help="let FP32 matrix products and convolutions use TF32")
    g.add_argument("--precision", type=_precision_list, default=[], metavar="P[,P]",
                   help="the precisions allowed, as one list: e.g. fp16,int8 (the same as --fp16 --int8)")
    g.add_argument("--layer-precision", action="append", type=_pins("--layer-precision"), default=[],
                   metavar="NAME:P[,NAME:P]", help="pin layers (ONNX node names) to fp32, fp16, bf16 or int8, "
                   "e.g. conv1:fp32; may be repeated")
    g.add_argument("--op-precision", action="append", type=_pins("--op-precision"), default=[],
                   metavar="OP:P[,OP:P]", help="pin every layer of an op type, e.g. Softmax:fp32; may be repeated")
    c = p.add_argument_group("INT8 calibration (with --int8)")
    c.add_argument("--calib", metavar="DIR", help="calibration samples: a folder of .npy (one input) or .npz "
                   "(named inputs) files")
    c.add_argument("--calibrator", choices=METHODS, default=None, help="how to choose each tensor's range "
                   f"(default {_DEFAULT_CALIBRATION.calibrator})")
    c.add_argument("--percentile", type=_percentile, default=None, metavar="P",
                   help=f"with --calibrator percentile: the percentile of |x| kept (default "
                        f"{_DEFAULT_CALIBRATION.percentile:g})")
    c.add_argument("--calib-cache", metavar="FILE", help="calibration cache: written when calibrating with --calib, "
                   "read (and no data needed) otherwise")
    c.add_argument("--calib-samples", type=positive_int, default=None, metavar="N",
                   help="calibrate on at most N samples")
    c.add_argument("--accuracy-budget", metavar="METRIC=BOUND", default=None,
                   help="check the INT8 engine against FP32 on held-out calibration samples (needs --calib) and move "
                        "the most sensitive layers back to float until it holds: top1=0.99, rel_l2=0.02 or "
                        "cosine=0.999 [,output=NAME]")


def precision_from_args(args: argparse.Namespace) -> tuple[PrecisionPolicy, Calibration | None]:
    """The policy (allowed precisions and pins) and the INT8 calibration the options ask for; every error names
    the option that caused it."""
    named = [f"--{flag}" for flag in PRECISION_FLAGS if getattr(args, flag)]
    allowed = {Precision(flag) for flag in PRECISION_FLAGS if getattr(args, flag)} | set(args.precision)
    try:
        policy = PrecisionPolicy(frozenset(allowed))
    except BrazeError as e:
        given = named + ([f"--precision {','.join(p.value for p in args.precision)}"] if args.precision else [])
        raise BrazeError(f"{' with '.join(given)}: {e}") from None
    layers = _checked_pins(args.layer_precision, "--layer-precision", "layer", policy)
    op_types = _checked_pins(args.op_precision, "--op-precision", "op type", policy)
    policy = PrecisionPolicy(policy.allowed, layers, op_types)
    return policy, _calibration(args, policy)


def _calibration(args: argparse.Namespace, policy: PrecisionPolicy) -> Calibration | None:
    given = [flag for flag, attr in _CALIBRATION_FLAGS if getattr(args, attr) is not None]
    if not policy.int8:
        if given:
            raise BrazeError(f"{given[0]} is for INT8 calibration, which this build does not allow: add --int8 "
                             f"(--fp16 --int8 lets each layer choose)")
        return None
    calibrator = args.calibrator or _DEFAULT_CALIBRATION.calibrator
    if args.percentile is not None and calibrator != "percentile":
        raise BrazeError(f"--percentile {args.percentile:g} applies to --calibrator percentile (the calibrator is "
                         f"{calibrator}): add --calibrator percentile, or leave --percentile out")
    if args.calib is not None:
        _check_samples_folder(args.calib)
    if args.calib_cache is not None:
        if args.calib is not None:
            writable_file(args.calib_cache, "--calib-cache")
        elif not Path(args.calib_cache).is_file():
            raise BrazeError(f"--calib-cache {args.calib_cache}: no such file; calibrate first with --calib DIR "
                             f"--calib-cache {args.calib_cache} (the cache is written then, and read by later builds)")
    if args.calib is None and args.calib_cache is None:
        return None  # NOTE: a model with its own Q/DQ nodes needs none; the builder says what to pass otherwise
    return Calibration(data=args.calib, cache=args.calib_cache, calibrator=calibrator,
                       percentile=_DEFAULT_CALIBRATION.percentile if args.percentile is None else args.percentile,
                       limit=args.calib_samples)


def precision_options_given(args: argparse.Namespace) -> list[str]:
    """The precision and calibration options given (for a warning where they do nothing: an engine is run)."""
    flags = [f"--{flag}" for flag in PRECISION_FLAGS if getattr(args, flag, False)]
    flags += [flag for flag, attr in (("--precision", "precision"), ("--layer-precision", "layer_precision"),
                                      ("--op-precision", "op_precision")) if getattr(args, attr, None)]
    return flags + [flag for flag, attr in (*_CALIBRATION_FLAGS, ("--accuracy-budget", "accuracy_budget"))
                    if getattr(args, attr, None) is not None]


def unmatched_pins(policy: PrecisionPolicy, nodes: Iterable[Node]) -> list[str]:
    """The pins, as the options spell them, that pin no layer of a built engine (a misspelt name or op type)."""
    nodes = list(nodes)
    unmatched = []
    for option, field, pins in (("--layer-precision", "layers", policy.layers),
                                ("--op-precision", "op_types", policy.op_types)):
        for name, precision in pins.items():
            alone = PrecisionPolicy(policy.allowed, **{field: {name: precision}})
            if not any(alone.pinned(n) is not None for n in nodes):
                unmatched.append(f"{option} {name}:{precision}")
    return unmatched


def _check_samples_folder(path: str) -> None:
    folder = Path(path)
    if folder.is_file():
        if folder.suffix not in SUFFIXES:
            raise BrazeError(f"--calib {path}: not a .npy or .npz file; give a folder of .npy/.npz samples")
        return
    if not folder.is_dir():
        raise BrazeError(f"--calib {path}: no such folder; give a folder of .npy (one input) or .npz (named inputs) "
                         f"samples")
    if not any(f.suffix in SUFFIXES and not f.name.startswith(".") for f in folder.iterdir()):
        raise BrazeError(f"--calib {path}: the folder holds no .npy or .npz files; save samples with numpy.save "
                         f"(one input) or numpy.savez (inputs by name)")


def _precision_list(text: str) -> list[Precision]:
    """argparse type of --precision: `fp16,int8` -> [FP16, INT8]."""
    names = [n.strip() for n in text.replace("+", ",").split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: give precisions, e.g. fp16 or fp16,int8")
    return [_precision_name(n, text) for n in names]


def _precision_name(name: str, item: str) -> Precision:
    try:
        return Precision(name.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{item!r}: {name.strip()!r} is not a precision; choose from "
                                         f"{', '.join(p.value for p in Precision)}") from None


def _pins(option: str):
    """argparse type of --layer-precision/--op-precision: `a:fp32,b:fp16` -> [("a", FP32, "a:fp32"), ...]."""
    example = "conv1:fp32" if option == "--layer-precision" else "Softmax:fp32"

    def parse(text: str) -> list[tuple[str, Precision, str]]:
        pins = []
        for item in (i.strip() for i in text.split(",")):
            name, sep, precision = item.rpartition(":")  # NOTE: a node name may hold ':'; the last one splits
            if not sep or not name.strip() or not precision.strip():
                raise argparse.ArgumentTypeError(f"{item!r}: write NAME:PRECISION (several separated by commas), "
                                                 f"e.g. {example}")
            pins.append((name.strip(), _precision_name(precision, item), item))
        return pins
    return parse


def _checked_pins(given: list[list[tuple[str, Precision, str]]], option: str, what: str,
                  policy: PrecisionPolicy) -> dict[str, Precision]:
    pins: dict[str, Precision] = {}
    for name, precision, item in (pin for group in given for pin in group):
        if pins.get(name, precision) is not precision:
            raise BrazeError(f"{option} {item}: {what} {name!r} is pinned twice, to {pins[name]} and {precision}")
        try:  # NOTE: the policy's own checks (a pin to a precision the build allows), one pin at a time
            PrecisionPolicy(policy.allowed, **{"layers" if what == "layer" else "op_types": {name: precision}})
        except BrazeError as e:
            raise BrazeError(f"{option} {item}: {e}") from None
        pins[name] = precision
    return pins


def _percentile(text: str) -> float:
    """argparse type of --percentile: a number above 0 and at most 100."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 100:  # NOTE: also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r}: a percentile above 0 and at most 100, e.g. 99.99")
    return value


def writable_file(path: str, option: str) -> Path:
    """A file path the command will write: its folder exists and takes a new file (checked by making one)."""
    target = Path(path)
    if target.is_dir():
        raise BrazeError(f"{option} {path}: is a directory; give a file name, e.g. {target / 'model.engine'}")
    folder = target.parent
    if not folder.is_dir():
        raise BrazeError(f"{option} {path}: the folder {folder} does not exist; create it first")
    try:
        _probe(folder)
    except OSError as e:
        raise BrazeError(f"{option} {path}: cannot write in {folder}: {e.strerror or e}") from None
    return target


def output_dir(path: str, option: str) -> Path:
    """A folder the command will write into, created now (before the work) if it does not exist."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise BrazeError(f"{option} {path}: is a file, not a folder; give a folder to write the outputs into")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _probe(folder)
    except OSError as e:
        raise BrazeError(f"{option} {path}: cannot write there: {e.strerror or e}") from None
    return folder


def _probe(folder: Path) -> None:
    """Raise OSError unless a new file can be made in `folder` (made and removed at once)."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".braze-", suffix=".tmp"):
        pass


ENGINE_SUFFIXES = (".engine", ".plan")


def is_engine_source(model: str) -> bool:
    """Whether `model` names an engine file: by its magic, or by its suffix (then a file that lacks the
    magic, or is missing, is reported as not an engine rather than as not an ONNX model)."""
    return is_engine_file(model) or Path(model).suffix.lower() in ENGINE_SUFFIXES


def load_engine(path: str | os.PathLike) -> Engine:
    try:
        return Runtime().load(path)
    except EngineFormatError as e:
        hint = "" if is_engine_file(path) else f"; make one with `braze build MODEL.onnx -o {path}`"
        raise EngineFormatError(f"{path}: {e}{hint}") from None


def load_array(name: str, file: str) -> np.ndarray:
    """The array in a .npy file, or the one named `name` (or the only one) in a .npz file."""
    where = f"--input {name}={file}"
    try:
        with open(file, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise BrazeError(f"{where}: cannot read {file}: {e.strerror or e}") from None
    if head[:4] != b"PK\x03\x04" and head != b"\x93NUMPY":
        raise BrazeError(f"{where}: {file} is not a .npy or .npz array file (it starts with {head!r}); write the "
                         f"array with numpy.save(path, array)")
    try:
        loaded = np.load(file, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            names = list(loaded.files)
            if name in names or len(names) == 1:
                return loaded[name if name in names else names[0]]
    except ValueError as e:
        if "pickle" in str(e):
            raise BrazeError(f"{where}: {file} holds Python objects, which braze does not load (it never "
                             f"unpickles); save a numeric array") from None
        raise BrazeError(f"{where}: {file} is not a readable array file: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise BrazeError(f"{where}: {file} is not a readable array file: {e}") from None
    raise BrazeError(f"{where}: {file} holds {len(names)} arrays ({', '.join(names[:8])}) and none named {name!r}")


def default_shapes(model: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """For a zoo model, its batch-1 shapes unless given."""
    if not model.startswith(ZOO_PREFIX) or shapes:
        return shapes
    from .. import zoo

    return dict(zoo.default_shapes(model[len(ZOO_PREFIX):]))


def model_label(model: str) -> str:
    return model if model.startswith(ZOO_PREFIX) else Path(model).name


def random_inputs(bindings: Sequence[Binding], seed: int = 0) -> dict[str, np.ndarray]:
    """Random (never all-zero) inputs: normal floats, integers in [0, 2), random booleans."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for b in bindings:
        shape = tuple(int(d) for d in b.shape)  # type: ignore[arg-type]
        if b.dtype.is_floating:
            feeds[b.name] = rng.standard_normal(shape).astype(np.float32).astype(b.dtype.numpy)
        elif b.dtype.value == "bool":
            feeds[b.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[b.name] = rng.integers(0, 2, shape).astype(b.dtype.numpy)
    return feeds
