"""Fuzz braze's engine loading and running with damaged and forged engine files.

    python3 scripts/fuzz_engines.py --cases 1000 --seed 0

A few small engines are built for the CPU (conv + relu, gemm, a chain of views, a concat placed in
place, a model with weights and a fused pointwise body). Each case damages one: byte-level (truncation,
bit flips, inserted bytes: the checksum must catch them) or structurally, editing the header, the plan's
JSON or the weights and recomputing the checksum (a forgery): layers swapped, offsets negative, huge,
misaligned or overlapping, arena sizes, strides, ops, tactics, weight shapes and dtypes, deleted keys,
values of the wrong JSON type, null outputs, the header's device. Each case is loaded, given an execution
context and run on random inputs in a worker process (scripts/fuzz_common.py), and classified:

    refused        a BrazeError, at load, context creation or run
    same           it ran and gave the unmodified engine's outputs (a harmless edit)
    consistent     it ran and gave what the edited plan's graph computes by the ops' reference
                   implementations (a forged but self-consistent engine: the runtime did what it says)
    raw_exception  an exception that is not a BrazeError escaped                          (bad)
    crash          the worker process died                                               (bad)
    hang           the case ran past the time limit                                      (bad)
    wrong_answer   it ran, and its outputs are neither the original's nor its own graph's (bad)

The exit status is 1 when any case falls in a bad class. tests/fuzz/test_engine_fuzz.py runs a fixed-seed slice.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import fuzz_common
from fuzz_common import CASE_SECONDS, Worker, fuzz_loop

BAD = ("raw_exception", "crash", "hang", "wrong_answer")
CLASSES = ("refused", "same", "consistent", *BAD)
MEMORY_LIMIT = 4 << 30  # bytes of address space a worker may map beyond what it had after importing braze
PREFIX = 48  # magic, version, sha256, header length


# -- seed engines ------------------------------------------------------------------------------------------

def seed_models() -> dict[str, Any]:
    """Small ONNX models whose CPU engines cover the plan's features: weights, fused layers, views, concats."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    F = TensorProto.FLOAT
    vi = helper.make_tensor_value_info

    def w(name: str, *shape: int, seed: int = 0):
        return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)

    def model(nodes, inputs, outputs, inits=()):
        m = helper.make_model(helper.make_graph(nodes, "seed", inputs, outputs, initializer=list(inits)),
                              opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return m

    conv = model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", ["c"], ["r"], name="relu"),
                  helper.make_node("Conv", ["r", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
                  helper.make_node("Add", ["c2", "r"], ["y"], name="add")],
                 [vi("x", F, [1, 2, 6, 6])], [vi("y", F, [1, 4, 6, 6])],
                 [w("w", 4, 2, 3, 3), w("b", 4, seed=1), w("w2", 4, 4, 3, 3, seed=5)])
    gemm = model([helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="gemm", transB=1),
                  helper.make_node("Sigmoid", ["g"], ["s"], name="sig"),
                  helper.make_node("MatMul", ["s", "w2"], ["y"], name="mm")],
                 [vi("x", F, [3, 4])], [vi("y", F, [3, 2])], [w("w", 5, 4), w("b", 5, seed=2), w("w2", 5, 2, seed=6)])
    views = model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                   helper.make_node("Reshape", ["r", "shape"], ["v"], name="reshape"),
                   helper.make_node("Transpose", ["v"], ["t"], name="transpose", perm=[1, 0]),
                   helper.make_node("Flatten", ["t"], ["f"], name="flatten", axis=0),
                   helper.make_node("Sigmoid", ["f"], ["y"], name="sig")],
                  [vi("x", F, [2, 3, 4])], [vi("y", F, [1, 24])],
                  [numpy_helper.from_array(np.array([6, 4], np.int64), "shape")])
    concat = model([helper.make_node("Conv", ["x", "w"], ["a"], name="conv_a"),
                    helper.make_node("Conv", ["x", "w2"], ["b"], name="conv_b"),
                    helper.make_node("Concat", ["a", "b"], ["c"], name="concat", axis=1),
                    helper.make_node("Relu", ["c"], ["y"], name="relu")],
                   [vi("x", F, [1, 3, 5, 5])], [vi("y", F, [1, 6, 5, 5])],
                   [w("w", 2, 3, 1, 1, seed=3), w("w2", 4, 3, 1, 1, seed=4)])
    act = model([helper.make_node("PRelu", ["x", "slope"], ["p"], name="prelu"),
                 helper.make_node("Sigmoid", ["p"], ["s"], name="sigmoid"),
                 helper.make_node("Clip", ["s", "lo", "hi"], ["c"], name="clip"),
                 helper.make_node("Tanh", ["c"], ["y"], name="tanh")],
                [vi("x", F, [2, 3, 4])], [vi("y", F, [2, 3, 4])],
                [numpy_helper.from_array(np.full((3, 4), 0.2, np.float32), "slope"),
                 numpy_helper.from_array(np.array(0.3, np.float32), "lo"),
                 numpy_helper.from_array(np.array(0.7, np.float32), "hi")])
    for m in (conv, gemm, views, concat, act):
        onnx.checker.check_model(m)
    return {"conv": conv, "gemm": gemm, "views": views, "concat": concat, "act": act}


@dataclass
class Seed:
    name: str
    data: bytes  # the engine file
    feeds: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


def build_seeds() -> list[Seed]:
    import braze

    seeds = []
    models = seed_models()
    every_layer_int8 = braze.PrecisionPolicy({"int8"}, op_types={"Conv": "int8", "Gemm": "int8", "MatMul": "int8"})
    builds = [(name, model, None) for name, model in models.items()] + [("conv_int8", models["conv"], every_layer_int8)]
    for name, model, policy in builds:
        graph = braze.parse_onnx(model)
        rng = np.random.default_rng(len(seeds))
        feeds = {t.name: rng.standard_normal(t.shape).astype(t.dtype.numpy) for t in graph.inputs}
        config = braze.BuilderConfig() if policy is None else braze.BuilderConfig(
            precision=policy, calibration=braze.Calibration(data=[feeds]))
        engine = braze.Builder("cpu").build(graph, config)
        outputs = engine.create_execution_context().infer(feeds)
        seeds.append(Seed(name, engine.serialize(), feeds, outputs))
    return seeds


# -- the engine file, taken apart and put together again with its checksum recomputed -----------------------

@dataclass
class Parts:
    header: dict[str, Any]
    plan: dict[str, Any]
    weights: bytes


def split(data: bytes) -> Parts:
    header_len = struct.unpack_from("<I", data, 44)[0]
    header = json.loads(data[PREFIX:PREFIX + header_len])
    start = PREFIX + header_len
    plan = json.loads(data[start:start + header["plan_size"]])
    return Parts(header, plan, data[start + header["plan_size"]:])


def pack(parts: Parts, keep_sizes: bool = False, plan_bytes: bytes | None = None) -> bytes:
    """The engine file of `parts`, with a valid checksum (a forgery); sizes in the header follow the contents
    unless `keep_sizes` (a header edit)."""
    plan = plan_bytes if plan_bytes is not None else json.dumps(parts.plan, separators=(",", ":")).encode()
    header = dict(parts.header)
    if not keep_sizes:
        header["plan_size"], header["weights_size"] = len(plan), len(parts.weights)
    head = json.dumps(header, separators=(",", ":")).encode()
    body = struct.pack("<I", len(head)) + head + plan + parts.weights
    return b"BRAZENG\0" + struct.pack("<I", 1) + hashlib.sha256(body).digest() + body


# -- mutations: each takes (rng, data) and returns the damaged bytes -----------------------------------------

Mutation = Callable[[random.Random, bytes], bytes]


def m_truncate(rng, data):
    return data[:rng.randrange(len(data))]


def m_bit_flip(rng, data):
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 8])):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def m_insert(rng, data):
    i = rng.randrange(len(data) + 1)
    return data[:i] + bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 64]))) + data[i:]


def m_plan_bit_flip(rng, data):
    """A bit flip inside the plan's JSON, with the checksum recomputed."""
    parts = split(data)
    plan = bytearray(json.dumps(parts.plan, separators=(",", ":")).encode())
    i = rng.randrange(len(plan))
    plan[i] ^= 1 << rng.randrange(7)
    return pack(parts, plan_bytes=bytes(plan))


def _edit(fn: Callable[[random.Random, Parts], Any], keep_sizes: bool = False) -> Mutation:
    def mutation(rng, data):
        parts = split(data)
        fn(rng, parts)
        return pack(parts, keep_sizes)

    mutation.__name__ = fn.__name__
    return mutation


def _nodes(p: Parts) -> list[dict[str, Any]]:
    return p.plan["graph"]["nodes"]


def _tensors(p: Parts) -> dict[str, Any]:
    return p.plan["graph"]["tensors"]


def _offsets(p: Parts) -> dict[str, int]:
    return p.plan["memory"]["offsets"]


def _activation(rng, p: Parts) -> str | None:
    offsets = _offsets(p)
    return rng.choice(sorted(offsets)) if offsets else None


def swap_layers(rng, p):
    nodes = _nodes(p)
    if len(nodes) > 1:
        i, j = rng.sample(range(len(nodes)), 2)
        nodes[i], nodes[j] = nodes[j], nodes[i]


def offset_bad(rng, p):
    name = _activation(rng, p)
    if name is None:
        return
    arena, align = p.plan["memory"]["arena_size"], p.plan["memory"]["alignment"]
    _offsets(p)[name] = rng.choice([-align, -1, -arena, arena, arena - align, 1 << 40, 1 << 70,
                                    _offsets(p)[name] + rng.choice([1, 4, 8, align // 2])])


def offset_overlap(rng, p):
    """Move one activation onto another's memory."""
    offsets = _offsets(p)
    if len(offsets) > 1:
        a, b = rng.sample(sorted(offsets), 2)
        offsets[a] = offsets[b]


def offset_move(rng, p):
    """Move one activation to another aligned place inside the arena (maybe onto a live tensor), or swap two."""
    offsets, memory = _offsets(p), p.plan["memory"]
    name = _activation(rng, p)
    if name is None:
        return
    if rng.random() < 0.3 and len(offsets) > 1:
        other = rng.choice(sorted(offsets))
        offsets[name], offsets[other] = offsets[other], offsets[name]
        return
    if rng.random() < 0.3:
        memory["arena_size"] *= 2
    slots = max(memory["arena_size"] // memory["alignment"], 1)
    offsets[name] = rng.randrange(slots) * memory["alignment"]


def offset_drop(rng, p):
    name = _activation(rng, p)
    if name is not None:
        del _offsets(p)[name]


def offset_add(rng, p):
    """Give arena memory to a tensor the plan keeps out of it (a view's output, an input, a weight)."""
    outside = [n for n in _tensors(p) if n not in _offsets(p)]
    if outside:
        _offsets(p)[rng.choice(outside)] = rng.choice([0, p.plan["memory"]["alignment"]])


def arena_size(rng, p):
    size = p.plan["memory"]["arena_size"]
    p.plan["memory"]["arena_size"] = rng.choice([-1, -size, 0, size // 2, size - 1, size * 2, 1 << 44, 1 << 80])


def alignment(rng, p):
    p.plan["memory"]["alignment"] = rng.choice([0, -64, 1, 3, 32, 128, 256, 1 << 40])


def strides(rng, p):
    name = _activation(rng, p)
    if name is None:
        return
    shape = _tensors(p)[name]["shape"] or []
    rank = len(shape)
    strides_ = p.plan["memory"].setdefault("strides", {})
    contiguous = [int(np.prod(shape[i + 1:])) for i in range(rank)]
    strides_[name] = rng.choice([
        contiguous[:-1], contiguous + [1], [-s for s in contiguous], [0] * rank, list(reversed(contiguous)),
        [s * 1000 for s in contiguous], [1 << 50] * rank, contiguous])


def op_change(rng, p):
    node = rng.choice(_nodes(p))
    node["op"] = rng.choice(["Relu", "Sigmoid", "Tanh", "Add", "Mul", "Conv", "Gemm", "Reshape", "Identity",
                             "Softmax", "Pointwise", "FusedConv", "ConcatInPlace", "NoSuchOp", ""])
    if rng.random() < 0.3:
        node["domain"] = rng.choice(["", "braze", "com.evil"])


def tactic_change(rng, p):
    name = rng.choice(sorted(p.plan["layers"]))
    p.plan["layers"][name]["tactic"] = rng.choice(["view", "concat_in_place", "onednn_conv", "onednn_gemm",
                                                   "reference", "cudnn_conv", "nonsense", ""])


def config_change(rng, p):
    name = rng.choice(sorted(p.plan["layers"]))
    p.plan["layers"][name]["config"] = rng.choice([{"block": 7}, {"x": [1, 2]}, [], "fast", None])


def _tables(doc: Any) -> list[dict[str, Any]]:
    """Every graph's tensor table in a plan: the main graph's and its layers' subgraphs' (Pointwise bodies)."""
    found = []
    if isinstance(doc, dict):
        if isinstance(doc.get("tensors"), dict) and "nodes" in doc:
            found.append(doc["tensors"])
        for v in doc.values():
            found += _tables(v)
    elif isinstance(doc, list):
        for v in doc:
            found += _tables(v)
    return found


def _weight_entries(p) -> list[dict[str, Any]]:
    return [e for table in _tables(p.plan["graph"]) for e in table.values() if isinstance(e, dict) and "weight" in e]


def weight_type(rng, p):
    """Declare a weight with another shape or dtype than the safetensors hold."""
    entries = _weight_entries(p)
    if not entries:
        return
    entry = rng.choice(entries)
    if rng.random() < 0.5 and entry["shape"]:
        shape = list(entry["shape"])
        i = rng.randrange(len(shape))
        shape[i] = rng.choice([0, 1, shape[i] + 1, shape[i] * 2, -1])
        entry["shape"] = rng.choice([shape, shape[:-1], shape + [1], []])
    else:
        entry["dtype"] = rng.choice(["float16", "float64", "int64", "int8", "bool", "float8_e4m3fn", "nonsense"])


def weight_rename(rng, p):
    """Point a tensor at another weight of the file, or at one it lacks."""
    entries = _weight_entries(p)
    if entries:
        entry = rng.choice(entries)
        entry["weight"] = rng.choice([e["weight"] for e in entries if e["weight"] != entry["weight"]] + ["missing"])


def tensor_type(rng, p):
    """Declare an activation (or input, or output) with another shape or dtype."""
    entry = _tensors(p)[rng.choice(sorted(_tensors(p)))]
    if rng.random() < 0.6 and entry["shape"]:
        shape = list(entry["shape"])
        i = rng.randrange(len(shape))
        shape[i] = rng.choice([0, 1, shape[i] + 1, shape[i] * 3, -2, 1 << 40, None, "n"])
        entry["shape"] = rng.choice([shape, shape[:-1], shape + [2]])
    else:
        entry["dtype"] = rng.choice(["float16", "float64", "int32", "bool", "nonsense", None])


def attr_change(rng, p):
    nodes = [n for n in _nodes(p) if n["attrs"]]
    if not nodes:
        return
    node = rng.choice(nodes)
    key = rng.choice(sorted(node["attrs"]))
    node["attrs"][key] = rng.choice([0, 1, -1, 2.5, [0, 0], [1, 1, 1, 1], "x", None, {"$tensor": "nope"}, 1 << 62])


def rewire(rng, p):
    """Read an unknown or later tensor, produce a tensor twice, or lose a graph output."""
    nodes = _nodes(p)
    node = rng.choice(nodes)
    names = sorted(_tensors(p))
    how = rng.choice(["input", "output", "graph_output", "name"])
    if how == "input" and node["inputs"]:
        node["inputs"][rng.randrange(len(node["inputs"]))] = rng.choice(names + ["ghost"])
    elif how == "output":
        node["outputs"][rng.randrange(len(node["outputs"]))] = rng.choice(names + ["ghost"])
    elif how == "graph_output":
        p.plan["graph"]["outputs"] = [rng.choice(names + ["ghost"])]
    else:
        node["name"] = rng.choice(nodes)["name"]


def null_value(rng, p):
    node = rng.choice(_nodes(p))
    field = rng.choice(["outputs", "inputs"])
    if node[field]:
        node[field][rng.randrange(len(node[field]))] = None
    else:
        node[field] = None


def _paths(doc: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += _paths(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += _paths(v, path + (i,))
    return found


def _parent(doc: Any, path: tuple) -> Any:
    for k in path[:-1]:
        doc = doc[k]
    return doc


def delete_key(rng, p):
    paths = [q for q in _paths(p.plan) if q and isinstance(q[-1], str)]
    path = rng.choice(paths)
    del _parent(p.plan, path)[path[-1]]


def wrong_type(rng, p):
    paths = [q for q in _paths(p.plan) if q]
    path = rng.choice(paths)
    _parent(p.plan, path)[path[-1]] = rng.choice(["x", "", 7, -3, 2.5, True, None, [], [1, "a"], {}, {"a": 1}])


def header_edit(rng, p):
    how = rng.choice(["no_device", "device_type", "size_type", "size_negative", "no_braze"])
    if how == "no_device":
        del p.header["device"]
    elif how == "device_type":
        p.header["device"] = rng.choice(["cpu", None, [], 1, {"kind": 3}, {}])
    elif how == "size_type":
        p.header[rng.choice(["plan_size", "weights_size"])] = rng.choice(["10", None, 1.5, [1]])
    elif how == "size_negative":
        key = rng.choice(["plan_size", "weights_size"])
        other = "weights_size" if key == "plan_size" else "plan_size"
        p.header[key], p.header[other] = -p.header[other], p.header[key] + 2 * p.header[other]
    else:
        del p.header["braze"]


def weights_swap(rng, p):
    """Replace the safetensors with other tensors under the same names (shapes or dtypes changed)."""
    import torch
    from safetensors.torch import load, save

    if not p.weights:
        return
    tensors = load(p.weights)
    name = rng.choice(sorted(tensors))
    t = tensors[name]
    tensors[name] = rng.choice([t.to(torch.float64), t.reshape(-1), torch.zeros(t.numel() + 1, dtype=t.dtype),
                                t.to(torch.int32), torch.zeros(0)])
    p.weights = save(tensors)


def weights_garbage(rng, p):
    p.weights = rng.choice([b"", b"{}", b"\xff" * 16, p.weights[: len(p.weights) // 2]])


MUTATIONS: dict[str, Mutation] = {
    "truncate": m_truncate, "bit_flip": m_bit_flip, "insert": m_insert, "plan_bit_flip": m_plan_bit_flip,
    **{f.__name__: _edit(f) for f in (
        swap_layers, offset_bad, offset_overlap, offset_move, offset_drop, offset_add, arena_size, alignment, strides,
        op_change, tactic_change, config_change, weight_type, weight_rename, tensor_type, attr_change, rewire,
        null_value, delete_key, wrong_type, weights_swap, weights_garbage)},
    "header_edit": _edit(header_edit, keep_sizes=True),
}


@dataclass
class Case:
    index: int
    seed: str
    mutation: str
    data: bytes
    feeds: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


def make_case(index: int, rng: random.Random, seeds: list[Seed]) -> Case:
    """One damaged or forged engine; a mutation that found nothing to change on its seed is drawn again."""
    while True:
        seed = rng.choice(seeds)
        name = rng.choice(sorted(MUTATIONS))
        data = MUTATIONS[name](rng, seed.data)
        if data != seed.data and data != pack(split(seed.data)):
            return Case(index, seed.name, name, data, seed.feeds, seed.outputs)


# -- running one case (in the worker) --------------------------------------------------------------------

def _close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if set(a) != set(b):
        return False
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if x.dtype.kind in "fc":
            if not np.allclose(x, y, rtol=1e-4, atol=1e-5, equal_nan=True):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


def run_case(case: Case) -> tuple[str, str]:
    import torch

    import braze
    from braze.ir import to_numpy
    from braze.ops.evaluate import run_graph

    try:
        engine = braze.Runtime().load(case.data)
        got = engine.create_execution_context().infer(case.feeds)
    except braze.BrazeError as e:
        return "refused", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    except Exception:
        return "raw_exception", traceback.format_exc()
    if _close(got, case.outputs):
        return "same", ""
    try:  # the edited plan's own meaning, by the reference implementations
        inputs = [torch.from_numpy(np.ascontiguousarray(case.feeds[t.name])) for t in engine.graph.inputs]
        ref = run_graph(engine.graph, inputs)
        expected = {t.name: to_numpy(v, t.dtype) for t, v in zip(engine.graph.outputs, ref)}
    except Exception as e:
        return "wrong_answer", f"ran, differs from the original, and its graph does not evaluate: {e!r}"
    if _close(got, expected):
        return "consistent", ""
    return "wrong_answer", "ran, and differs from both the original and its own graph's reference evaluation"


def fuzz(cases: int, seed: int, say: Callable[[str], None] = print, timeout: float = CASE_SECONDS) -> dict[str, Any]:
    """Run `cases` damaged or forged engines; returns totals per class, per mutation and the bad cases."""
    rng = random.Random(seed)
    seeds = build_seeds()
    return fuzz_loop(cases, lambda index: make_case(index, rng, seeds), lambda worker, case: worker.run(case, timeout),
                     Worker(run_case, MEMORY_LIMIT), BAD, say)


def report(result: dict[str, Any], say: Callable[[str], None] = print) -> None:
    fuzz_common.report(result, CLASSES, (16, 14), say)


def main(argv: list[str] | None = None) -> int:
    return fuzz_common.main(argv, __doc__.splitlines()[0], fuzz, report, BAD)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
