"""Triton kernels generated from a Pointwise layer's body: one pass over the output, each input read
once through its (broadcast) strides and the output written through its strides (channels-last regions),
every intermediate kept in registers, computed in float32.

The source is produced from a fixed table of op templates: op names select templates, numbers are
formatted as numbers, and nothing else from the engine file reaches the generated code. Bodies with
an op outside the table are not supported (the layer falls back to torch).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ...ir import DType, Graph, Node, Tensor
from ...ops.kinds import DOMAIN, Kind

# NOTE: every max/min propagates NaN (Triton's default returns the other operand), as the references do.
_MAX = "tl.maximum({0}, {1}, propagate_nan=tl.PropagateNan.ALL)"
_MIN = "tl.minimum({0}, {1}, propagate_nan=tl.PropagateNan.ALL)"
_BINARY = {"Add": "({0} + {1})", "Sub": "({0} - {1})", "Mul": "({0} * {1})", "Div": "({0} / {1})",
           "Max": _MAX, "Min": _MIN,
           "Less": "({0} < {1})", "LessOrEqual": "({0} <= {1})", "Greater": "({0} > {1})",
           "GreaterOrEqual": "({0} >= {1})", "Equal": "({0} == {1})", "And": "({0} & {1})", "Or": "({0} | {1})"}
_UNARY = {"Neg": "(-{0})", "Abs": "tl.abs({0})", "Exp": "tl.exp({0})", "Log": "tl.log({0})", "Sqrt": "tl.sqrt({0})",
          "Reciprocal": "(1.0 / {0})", "Erf": "tl.erf({0})", "Relu": _MAX.format("{0}", "0.0"),
          "Sigmoid": "(1.0 / (1.0 + tl.exp(-{0})))", "Tanh": "(2.0 / (1.0 + tl.exp(-2.0 * {0})) - 1.0)",
          Kind.SILU: "({0} / (1.0 + tl.exp(-{0})))", "Floor": "tl.floor({0})", "Ceil": "tl.ceil({0})",
          "Not": "({0} == 0)", "Softsign": "({0} / (1.0 + tl.abs({0})))",
          "HardSwish": "({0} * " + _MIN.format(_MAX.format("{0} * 0.16666666666666666 + 0.5", "0.0"), "1.0") + ")",
          "Softplus": "tl.where({0} > 20.0, {0}, tl.log(1.0 + tl.exp({0})))"}
_FLOATS = (DType.float32, DType.float16, DType.bfloat16)
# Inputs are read as float32 (integers exactly up to 2**24) or as booleans.
_LOADABLE = (*_FLOATS, DType.bool, DType.int64, DType.int32, DType.int8, DType.uint8)


def _num(x: float) -> str:
    x = float(x)
    if math.isinf(x):
        return "float('inf')" if x > 0 else "float('-inf')"
    return repr(x)


def _scalar(t: Tensor | None) -> float | None:
    if t is None or t.value is None or t.value.numel() != 1:
        return None
    return float(t.value.reshape(-1)[0])


def _expr(node: Node, args: list[str]) -> str | None:
    op, a = node.op, node.attrs
    if node.domain not in ("", DOMAIN):
        return None
    if op in _BINARY and len(args) == 2:
        return _BINARY[op].format(*args)
    if op in ("Max", "Min", "Sum") and len(args) > 2:
        out = args[0]
        for x in args[1:]:
            out = _BINARY[op].format(out, x) if op != "Sum" else f"({out} + {x})"
        return out
    if op == "Sum" and len(args) == 2:
        return f"({args[0]} + {args[1]})"
    if op in _UNARY and len(args) == 1:
        return _UNARY[op].format(*args)
    if op == "LeakyRelu":
        return f"tl.where({args[0]} < 0.0, {args[0]} * {_num(a.get('alpha', 0.01))}, {args[0]})"
    if op == "Elu":
        return f"tl.where({args[0]} < 0.0, {_num(a.get('alpha', 1.0))} * (tl.exp({args[0]}) - 1.0), {args[0]})"
    if op == "HardSigmoid":
        return _MIN.format(_MAX.format(f"{args[0]} * {_num(a.get('alpha', 0.2))} + {_num(a.get('beta', 0.5))}", "0.0"),
                           "1.0")
    if op == "Gelu":
        x = args[0]
        if a.get("approximate", "none") == "tanh":
            inner = f"(0.7978845608028654 * ({x} + 0.044715 * {x} * {x} * {x}))"
            return f"(0.5 * {x} * (2.0 / (1.0 + tl.exp(-2.0 * {inner}))))"
        return f"(0.5 * {x} * (1.0 + tl.erf({x} * 0.7071067811865476)))"
    if op == "Where" and len(args) == 3:
        return f"tl.where({args[0]}, {args[1]}, {args[2]})"
    if op == "Cast":
        return args[0]
    if op == "Clip":
        x = args[0]
        if node.version < 11:
            lo, hi = a.get("min", -math.inf), a.get("max", math.inf)
        else:
            lo = _scalar(node.input(1)) if node.input(1) is not None else -math.inf
            hi = _scalar(node.input(2)) if node.input(2) is not None else math.inf
            if lo is None or hi is None:
                return None
        return _MIN.format(_MAX.format(x, _num(lo)), _num(hi))
    if op == "Pow":
        e = _scalar(node.input(1))
        forms = {2.0: "({0} * {0})", 3.0: "({0} * {0} * {0})", 0.5: "tl.sqrt({0})", 1.0: "{0}", -1.0: "(1.0 / {0})"}
        return forms[e].format(args[0]) if e in forms else None
    return None


@dataclass
class PointwiseKernel:
    """A compiled kernel and what it needs: the non-scalar constants it reads, in argument order."""

    launch: Callable[..., None]
    constants: list[torch.Tensor]


def generate(body: Graph) -> tuple[str, list[Tensor]] | None:
    """Triton source for `body` and the constant tensors it reads as extra inputs; None if unsupported."""
    out = body.outputs[0]
    if out.dtype not in _FLOATS or not out.is_static or len(body.outputs) != 1:
        return None
    rank = len(out.shape)  # type: ignore[arg-type]
    names: dict[int, str] = {id(t): f"x{i}" for i, t in enumerate(body.inputs)}
    loads: list[Tensor] = list(body.inputs)
    lines: list[str] = []
    for node in body.nodes:
        args = []
        for t in node.inputs:
            if t is None:
                continue
            if id(t) not in names:
                value = _scalar(t)
                if value is not None and t.dtype in (*_FLOATS, DType.float64):
                    names[id(t)] = _num(value)
                elif t.is_constant and t.dtype in (*_FLOATS, DType.bool) and t.is_static:
                    names[id(t)] = f"x{len(loads)}"
                    loads.append(t)
                else:
                    return None
            args.append(names[id(t)])
        if node.op == "Clip":
            args = args[:1]
        if node.op == "Pow":
            args = args[:1]
        expr = _expr(node, args)
        if expr is None or len(node.outputs) != 1:
            return None
        names[id(node.outputs[0])] = f"v{len(lines)}"
        lines.append(f"    v{len(lines)} = {expr}")
    if any(t.dtype not in _LOADABLE or t.rank is None or t.rank > rank for t in loads):
        return None
    params = ", ".join(f"p{i}" for i in range(len(loads)))
    strides = ", ".join([f"s{i}_{d}" for i in range(len(loads)) for d in range(rank)] + [f"so_{d}" for d in range(rank)])
    src = ["import triton", "import triton.language as tl", "", "", "@triton.jit",
           f"def kernel({params}, out_ptr, n, {strides + ', ' if strides else ''}"
           + ", ".join(f"d{d}" for d in range(rank)) + (", " if rank else "") + "BLOCK: tl.constexpr):",
           "    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)",
           "    mask = offs < n",
           "    rest = offs"]
    for d in reversed(range(rank)):
        src.append(f"    i{d} = rest % d{d}")
        src.append(f"    rest = rest // d{d}")
    for i, t in enumerate(loads):
        offset = " + ".join(f"i{d} * s{i}_{d}" for d in range(rank)) or "0"
        cast = " != 0" if t.dtype == DType.bool else ".to(tl.float32)"
        src.append(f"    x{i} = tl.load(p{i} + {offset}, mask=mask){cast}")
    src.extend(lines)
    result = names[id(out)]
    out_offset = " + ".join(f"i{d} * so_{d}" for d in range(rank)) or "0"
    src.append(f"    tl.store(out_ptr + {out_offset}, ({result}).to(out_ptr.dtype.element_ty), mask=mask)")
    return "\n".join(src) + "\n", loads[len(body.inputs):]


def _broadcast_strides(t: torch.Tensor, shape: tuple[int, ...]) -> list[int]:
    """Element strides that read `t` as if broadcast to `shape` (0 along broadcast dims)."""
    pad = len(shape) - t.dim()
    strides = [0] * pad + list(t.stride())
    sizes = [1] * pad + list(t.shape)
    return [0 if size == 1 and full != 1 else s for s, size, full in zip(strides, sizes, shape)]


def compile_pointwise(body: Graph, device: torch.device, block: int = 1024) -> PointwiseKernel | None:
    """Generate, load and wrap the kernel for `body`; None where the body is not supported."""
    generated = generate(body)
    if generated is None:
        return None
    source, extra = generated
    kernel = _load(source)
    constants = [t.value.to(device) for t in extra]  # type: ignore[union-attr]
    shape = tuple(body.outputs[0].shape)  # type: ignore[arg-type]
    n = math.prod(shape)
    grid = (max(1, -(-n // block)),)

    def launch(inputs: list[torch.Tensor], out: torch.Tensor) -> None:
        tensors = list(inputs) + constants
        strides = [s for t in [*tensors, out] for s in _broadcast_strides(t, shape)]
        kernel[grid](*tensors, out, n, *strides, *shape, BLOCK=block)

    return PointwiseKernel(launch, constants)


def _load(source: str):
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    folder = Path(os.environ.get("BRAZE_KERNEL_DIR", Path(tempfile.gettempdir()) / f"braze_kernels_{os.getuid()}"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"pointwise_{digest}.py"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        tmp.replace(path)
    spec = importlib.util.spec_from_file_location(f"braze_pointwise_{digest}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.kernel
