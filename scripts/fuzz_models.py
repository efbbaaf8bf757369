"""Fuzz braze's ONNX import, build and run with mutated models, against onnxruntime and the ONNX checker.

    python3 scripts/fuzz_models.py --cases 1000 --seed 0

A few small valid models (conv, gemm, If and Loop, an initializer, external data in a temporary folder) are
mutated byte by byte (bit flips, truncation of the serialized proto) and structurally (attributes, dims,
dtypes, names, cycles, duplicate outputs, opsets, domains, external data locations). Each case is parsed,
built for the CPU and run on random inputs by braze, and by onnxruntime, in a worker process
(scripts/fuzz_common.py), and classified:

    ok                 braze and onnxruntime agree (same outputs, or both refuse)
    clean_error        braze refuses with a BrazeError where onnxruntime runs the model
    raw_exception      an exception that is not a BrazeError escaped from braze          (bad)
    crash              the worker process died                                          (bad)
    hang               the case ran past the time limit                                  (bad)
    wrong_answer       braze and onnxruntime both ran, and their outputs differ          (bad)
    accepted_invalid   braze ran a model that onnxruntime and onnx's full checker refuse (bad)
    braze_only         braze ran a model onnxruntime refuses but the full checker accepts (or refuses only for
                       an op's type constraints: braze runs many ops on more types than ONNX lists)

The exit status is 1 when any case falls in a bad class. tests/fuzz/test_model_fuzz.py runs a fixed-seed slice.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import random
import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import fuzz_common
from fuzz_common import CASE_SECONDS, Worker, fuzz_loop

BAD = ("raw_exception", "crash", "hang", "wrong_answer", "accepted_invalid")
MEMORY_LIMIT = 6 << 30  # bytes of address space a worker may map beyond what it had after importing braze
F = TensorProto.FLOAT


# -- seed models -------------------------------------------------------------------------------------------

def _model(nodes, inputs, outputs, inits=(), opset=17, name="seed") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _w(name: str, *shape: int, seed: int = 0) -> TensorProto:
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def seed_models() -> dict[str, onnx.ModelProto]:
    """Small valid models, each run by onnxruntime and braze alike. 'external' keeps its weight outside."""
    vi = helper.make_tensor_value_info
    conv = _model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                   helper.make_node("Relu", ["c"], ["y"], name="relu")],
                  [vi("x", F, [1, 2, 5, 5])], [vi("y", F, [1, 3, 5, 5])], [_w("w", 3, 2, 3, 3), _w("b", 3, seed=1)])
    gemm = _model([helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="gemm", transB=1),
                   helper.make_node("Sigmoid", ["g"], ["y"], name="sig")],
                  [vi("x", F, ["n", 4])], [vi("y", F, ["n", 3])], [_w("w", 3, 4), _w("b", 3, seed=2)])
    then = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"], name="then_add")], "then", [],
                             [vi("t", F, [2, 3])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="else_neg")], "else", [],
                              [vi("e", F, [2, 3])])
    body = helper.make_graph([helper.make_node("Identity", ["cond"], ["cond_out"], name="body_id"),
                              helper.make_node("Mul", ["acc", "two"], ["acc_out"], name="body_mul")], "body",
                             [vi("i", TensorProto.INT64, []), vi("cond", TensorProto.BOOL, []), vi("acc", F, [2, 3])],
                             [vi("cond_out", TensorProto.BOOL, []), vi("acc_out", F, [2, 3])])
    flow = _model([helper.make_node("If", ["c"], ["r"], name="if", then_branch=then, else_branch=other),
                   helper.make_node("Loop", ["trips", "", "r"], ["y"], name="loop", body=body)],
                  [vi("x", F, [2, 3]), vi("c", TensorProto.BOOL, [])], [vi("y", F, [2, 3])],
                  [numpy_helper.from_array(np.array(3, np.int64), "trips"),
                   numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    init = _model([helper.make_node("MatMul", ["x", "w"], ["m"], name="matmul"),
                   helper.make_node("Add", ["m", "b"], ["a"], name="add"),
                   helper.make_node("Reshape", ["a", "shape"], ["r"], name="reshape"),
                   helper.make_node("Cast", ["r"], ["y"], name="cast", to=TensorProto.DOUBLE)],
                  [vi("x", F, [2, 4])], [vi("y", TensorProto.DOUBLE, [4, 2])],
                  [_w("w", 4, 4), _w("b", 4, seed=3), numpy_helper.from_array(np.array([4, 2], np.int64), "shape")])
    external = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")],
                      [vi("x", F, [2, 8])], [vi("y", F, [2, 8])], [_w("w", 8, 8, seed=4)])
    return {"conv": conv, "gemm": gemm, "flow": flow, "init": init, "external": external}


# The shapes each seed's inputs are fed with, where a dim is symbolic.
SEED_SHAPES = {"conv": {"x": (1, 2, 5, 5)}, "gemm": {"x": (2, 4)}, "flow": {"x": (2, 3), "c": ()},
               "init": {"x": (2, 4)}, "external": {"x": (2, 8)}}


# -- mutations ---------------------------------------------------------------------------------------------

@dataclass
class Case:
    index: int
    seed: str
    mutation: str
    model: bytes  # serialized (maybe damaged); for an external-data case, the file in `folder`
    folder: str | None = None  # the case's folder, when the model reads external data


Mutation = Callable[[random.Random, onnx.ModelProto], Any]


def _nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    from braze.frontends.onnx.unsupported import all_nodes

    return list(all_nodes(model.graph))


def _values(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    g = model.graph
    return [*g.input, *g.output, *g.value_info]


def m_attr_type(rng, m):
    node = rng.choice(_nodes(m))
    if not node.attribute:
        node.attribute.append(helper.make_attribute(rng.choice(["alpha", "axis", "to", "bogus"]), 1.5))
        return
    a = rng.choice(node.attribute)
    name = a.name
    node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, rng.choice([1.5, "s", [1, 2], [1.0], -7, 10 ** 12])))


def m_attr_value(rng, m):
    node = rng.choice(_nodes(m))
    for a in node.attribute:
        if a.type == onnx.AttributeProto.INT:
            a.i = rng.choice([-1, 0, 55, 2 ** 40, -(2 ** 40), 100])
        elif a.type == onnx.AttributeProto.INTS:
            a.ints[:] = rng.choice([[], [-1] * 4, [0] * 4, [2 ** 40] * 4, [1]])
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = rng.choice([float("nan"), float("inf"), -1e30])


def m_attr_missing(rng, m):
    node = rng.choice(_nodes(m))
    if node.attribute:
        node.attribute.remove(rng.choice(node.attribute))


def _dims(m):
    return [d for v in _values(m) if v.type.HasField("tensor_type") for d in v.type.tensor_type.shape.dim]


def m_dim(rng, m):
    dims = _dims(m)
    if not dims:
        return
    d = rng.choice(dims)
    choice = rng.choice(["neg", "neg1", "zero", "huge", "symbolic", "empty"])
    if choice == "symbolic":
        d.dim_param = "sym"
    elif choice == "empty":
        d.Clear()
    else:
        d.dim_value = {"neg": -5, "neg1": -1, "zero": 0, "huge": 10 ** 10}[choice]


def m_init_dims(rng, m):
    inits = [t for g in _graphs(m) for t in g.initializer]
    if inits:
        t = rng.choice(inits)
        t.dims[:] = rng.choice([[-1], [0], [10 ** 10], list(t.dims) + [1], list(t.dims)[:-1]])


def _graphs(m):
    from braze.frontends.onnx.loader import all_graphs

    return list(all_graphs(m.graph))


def m_dtype(rng, m):
    targets = [v.type.tensor_type for v in _values(m) if v.type.HasField("tensor_type")]
    inits = [t for g in _graphs(m) for t in g.initializer]
    casts = [a for n in _nodes(m) if n.op_type == "Cast" for a in n.attribute if a.name == "to"]
    kind = rng.choice(["value", "init", "cast"])
    new = rng.choice([55, 0, -3, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.STRING,
                      TensorProto.BOOL, TensorProto.UINT4, TensorProto.COMPLEX64, 2 ** 20])
    if kind == "cast" and casts:
        rng.choice(casts).i = new
    elif kind == "init" and inits:
        rng.choice(inits).data_type = new
    elif targets:
        rng.choice(targets).elem_type = new


def m_output_dtype(rng, m):
    """A declared output whose type disagrees with what its node makes ("accepted though invalid")."""
    out = rng.choice(list(m.graph.output)).type.tensor_type
    choice = rng.choice(["dtype", "rank", "dim"])
    if choice == "dtype":
        out.elem_type = rng.choice([TensorProto.FLOAT16, TensorProto.INT64, TensorProto.DOUBLE, TensorProto.FLOAT])
    elif choice == "rank" and out.HasField("shape"):
        out.shape.dim.add().dim_value = 1
    elif out.HasField("shape") and out.shape.dim:
        rng.choice(out.shape.dim).dim_value = 7


def m_dangling(rng, m):
    node = rng.choice(_nodes(m))
    if node.input and rng.random() < 0.7:
        node.input[rng.randrange(len(node.input))] = rng.choice(["nowhere", "", "y"])
    else:
        rng.choice(list(m.graph.output)).name = "nowhere"


def m_cycle(rng, m):
    nodes = list(m.graph.node)
    if len(nodes) >= 2 and nodes[0].input:
        nodes[0].input[0] = nodes[-1].output[0]
    elif nodes and nodes[0].input:
        nodes[0].input[0] = nodes[0].output[0]


def m_duplicate(rng, m):
    nodes = _nodes(m)
    a, b = rng.choice(nodes), rng.choice(nodes)
    if rng.random() < 0.5 and len(m.graph.output):
        m.graph.output.append(copy.deepcopy(m.graph.output[0]))
    elif b.output:
        b.output[0] = a.output[0]


def m_opset(rng, m):
    choice = rng.choice(["missing", "huge", "old", "zero", "dup", "ml"])
    if choice == "missing":
        del m.opset_import[:]
    elif choice == "dup":
        m.opset_import.append(helper.make_opsetid("", 13))
    elif choice == "ml":
        m.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
        rng.choice(_nodes(m)).domain = "ai.onnx.ml"
    else:
        m.opset_import[0].version = {"huge": 10 ** 6, "old": rng.choice([1, 5, 7, 9]), "zero": 0}[choice]


def m_domain(rng, m):
    rng.choice(_nodes(m)).domain = rng.choice(["ai.onnx.ml", "com.microsoft", "custom", "ai.onnx", "\x00"])


def m_op_type(rng, m):
    node = rng.choice(_nodes(m))
    node.op_type = rng.choice(["Frobnicate", "", "relu", "Conv ", "Scan"])


def m_bad_utf8(rng, m):
    """A string field that is not valid UTF-8 (written through raw bytes: protobuf refuses it otherwise)."""
    field = rng.choice(["op_type", "name", "domain", "attr", "input", "graph", "value"])
    return ("utf8", field)


def m_ir_version(rng, m):
    m.ir_version = rng.choice([0, 1, 3, 99, -1])


def m_external(rng, m):
    """External data locations: missing, ../, absolute, symlink, directory, wrong offset or length."""
    return ("external", rng.choice(["missing", "parent", "absolute", "symlink", "directory", "offset", "length"]))


def m_init_data(rng, m):
    inits = [t for g in _graphs(m) for t in g.initializer]
    if inits:
        t = rng.choice(inits)
        t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data) + 1)] if t.raw_data else b"\x01\x02\x03"


STRUCTURAL: dict[str, Mutation] = {
    "attr_type": m_attr_type, "attr_value": m_attr_value, "attr_missing": m_attr_missing, "dim": m_dim,
    "init_dims": m_init_dims, "dtype": m_dtype, "output_decl": m_output_dtype, "dangling": m_dangling,
    "cycle": m_cycle, "duplicate": m_duplicate, "opset": m_opset, "domain": m_domain, "op_type": m_op_type,
    "bad_utf8": m_bad_utf8, "ir_version": m_ir_version, "external": m_external, "init_data": m_init_data,
}
BYTE_MUTATIONS = ("bit_flip", "truncate")


def _utf8_damage(data: bytes, m: onnx.ModelProto, field: str) -> bytes:
    """Replace one string of the serialized model with an equally long byte string that is not UTF-8."""
    g = m.graph
    node = g.node[0]
    target = {"op_type": node.op_type, "name": node.name, "domain": None, "attr": next(
        (a.name for n in _nodes(m) for a in n.attribute), None), "input": node.input[0] if node.input else None,
        "graph": g.name, "value": g.output[0].name}[field]
    if field == "domain":
        node.domain = "abc"
        data = m.SerializeToString()
        target = "abc"
    if not target:
        return data
    key = target.encode()
    bad = b"\xff" + key[1:]
    return data.replace(key, bad, 1)


def make_case(index: int, rng: random.Random, seeds: dict[str, onnx.ModelProto], root: Path,
              byte_share: float = 0.25) -> Case:
    seed = rng.choice(sorted(seeds))
    model = copy.deepcopy(seeds[seed])
    folder = None
    if rng.random() < byte_share:
        mutation = rng.choice(BYTE_MUTATIONS)
        data = bytearray(model.SerializeToString())
        if mutation == "bit_flip":
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
        else:
            data = data[: rng.randrange(1, len(data))]
        data = bytes(data)
    else:
        mutation = rng.choice(sorted(STRUCTURAL))
        if seed != "external" and mutation == "external":
            seed, model = "external", copy.deepcopy(seeds["external"])
        result = STRUCTURAL[mutation](rng, model)
        data = model.SerializeToString()
        if isinstance(result, tuple) and result[0] == "utf8":
            data = _utf8_damage(data, model, result[1])
            mutation = f"bad_utf8:{result[1]}"
        if isinstance(result, tuple) and result[0] == "external":
            mutation = f"external:{result[1]}"
    if seed == "external":
        folder = str(_external_folder(index, root, data, mutation.removeprefix("external:")))
    return Case(index, seed, mutation, data, folder)


def _external_folder(index: int, root: Path, data: bytes, how: str) -> Path:
    """Write the model with its weight in `weights.bin` beside it, damaged as `how` says."""
    folder = root / f"case{index}"
    folder.mkdir(parents=True)
    (folder / "sub").mkdir()
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
        ok = model.graph.initializer
    except Exception:  # noqa: BLE001 -- a damaged model is written as it is
        ok = False
    if ok:
        from onnx.external_data_helper import set_external_data

        t = model.graph.initializer[0]
        payload = t.raw_data or numpy_helper.from_array(numpy_helper.to_array(t)).raw_data
        (folder / "weights.bin").write_bytes(payload)
        location, offset, length = "weights.bin", None, None
        if how == "missing":
            location = "nothere.bin"
        elif how == "parent":
            (root / f"outside{index}.bin").write_bytes(payload)
            location = f"../outside{index}.bin"
        elif how == "absolute":
            (root / f"outside{index}.bin").write_bytes(payload)
            location = str(root / f"outside{index}.bin")
        elif how == "symlink":
            (root / f"outside{index}.bin").write_bytes(payload)
            os.symlink(root / f"outside{index}.bin", folder / "link.bin")
            location = "link.bin"
        elif how == "directory":
            location = "sub"
        elif how == "offset":
            offset = 10 ** 6
        elif how == "length":
            length = len(payload) + 64
        t.raw_data = payload
        del t.float_data[:]
        set_external_data(t, location, offset, length)
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        data = model.SerializeToString()
    (folder / "model.onnx").write_bytes(data)
    return folder


# -- running one case ----------------------------------------------------------------------------------------

def _feeds(model_bytes: bytes, seed: str) -> dict[str, np.ndarray] | None:
    """Random inputs for the model's declared inputs; None where a declaration cannot be fed."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(model_bytes)
    except Exception:  # noqa: BLE001
        return None
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        if not vi.type.HasField("tensor_type"):
            return None
        tt = vi.type.tensor_type
        try:
            dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        except Exception:  # noqa: BLE001
            return None
        given = SEED_SHAPES[seed].get(vi.name)
        dims = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                dims.append(d.dim_value)
            elif given is not None and i < len(given):
                dims.append(given[i])
            else:
                dims.append(1)
        if any(d < 0 for d in dims) or int(np.prod(dims, dtype=np.float64)) > 1 << 24:
            return None
        if dtype == np.bool_:
            feeds[vi.name] = np.asarray(rng.random(dims) < 0.5)
        elif np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.standard_normal(dims).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            feeds[vi.name] = rng.integers(0, 3, dims).astype(dtype)
        else:
            return None
    return feeds


def run_braze(case: Case) -> tuple[str, Any]:
    """('ok', outputs) | ('error', 'ModelError: ...') | ('raw', traceback)."""
    from braze import Builder, BuilderConfig, BrazeError, parse_onnx

    source = str(Path(case.folder) / "model.onnx") if case.folder else case.model
    try:
        graph = parse_onnx(source)
        feeds = _feeds(case.model, case.seed) or {}
        shapes = {t.name: feeds[t.name].shape for t in graph.inputs if t.name in feeds and not t.is_static}
        engine = Builder("cpu").build(graph, BuilderConfig(shapes=shapes))
        ctx = engine.create_execution_context()
        missing = [b.name for b in engine.inputs if b.name not in feeds]
        if missing:
            return "error", f"(fuzzer) cannot make inputs for {missing}"
        outputs = ctx.infer({b.name: feeds[b.name] for b in engine.inputs})
        return "ok", {k: np.asarray(v) for k, v in outputs.items()}
    except BrazeError as e:
        return "error", f"{type(e).__name__}: {str(e)[:300]}"
    except BaseException as e:  # noqa: BLE001 -- the point is to catch what escapes
        if isinstance(e, KeyboardInterrupt):
            raise
        return "raw", "".join(traceback.format_exception(e)[-4:])[-1500:]


def run_reference(case: Case) -> tuple[str, Any, bool]:
    """onnxruntime's ('ok', outputs) or ('refused', why), and whether onnx's full checker accepts the model (or
    refuses it only for an op's type constraints, which braze widens)."""
    import onnxruntime as ort

    path = str(Path(case.folder) / "model.onnx") if case.folder else None
    try:
        onnx.checker.check_model(path or onnx.load_from_string(case.model), full_check=True)
        checker_ok = True
    except Exception as e:  # noqa: BLE001
        # NOTE: braze runs many ops on more types than ONNX's constraints allow (Celu on float16), by design
        checker_ok = "has unsupported type" in str(e)
    feeds = _feeds(case.model, case.seed)
    if feeds is None:
        return "refused", "inputs cannot be made", checker_ok
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        options.intra_op_num_threads = 1
        with contextlib.redirect_stdout(io.StringIO()):  # its fallback notice on a failed load
            session = ort.InferenceSession(path or case.model, options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        outputs = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
        return "ok", dict(zip(names, outputs)), checker_ok
    except Exception as e:  # noqa: BLE001
        return "refused", str(e)[:200], checker_ok


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> str | None:
    """None when the outputs agree; else what differs."""
    if list(a) != list(b):
        return f"outputs {list(a)} vs {list(b)}"
    for name in a:
        x, y = a[name], b[name]
        if x.dtype != y.dtype or x.shape != y.shape:
            return f"{name}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"
        if x.dtype.kind in "fc":
            if not np.allclose(x, y, rtol=1e-3, atol=1e-4, equal_nan=True):
                return f"{name}: max difference {np.nanmax(np.abs(x.astype(np.float64) - y)):.3g}"
        elif not np.array_equal(x, y):
            return f"{name}: values differ"
    return None


def classify(braze: tuple[str, Any], ref: tuple[str, Any, bool]) -> tuple[str, str]:
    status, detail = braze
    ref_status, ref_detail, checker_ok = ref
    if status == "raw":
        return "raw_exception", detail
    if status == "error":
        return ("ok" if ref_status == "refused" else "clean_error"), detail
    if ref_status == "ok":
        diff = _same(detail, ref_detail)
        return ("wrong_answer", diff) if diff else ("ok", "")
    if not checker_ok:
        return "accepted_invalid", f"onnxruntime: {ref_detail}"
    return "braze_only", f"onnxruntime: {ref_detail}"


def run_job(job: tuple[str, Case]) -> tuple[Any, ...]:
    """In the worker: `run_braze` or `run_reference` ("braze" or "reference") on a case."""
    runner, case = job
    return run_braze(case) if runner == "braze" else run_reference(case)


def judge(worker: Worker, case: Case, timeout: float) -> tuple[str, str]:
    """The case's class and why, braze's result being compared with onnxruntime's."""
    result = worker.run(("braze", case), timeout)
    if result[0] in ("hang", "crash"):
        return result
    reference = worker.run(("reference", case), timeout)
    if reference[0] in ("hang", "crash"):  # a model onnxruntime cannot finish counts as refused
        reference = ("refused", f"onnxruntime: {reference[1]}", True)
    return classify(result, reference)


def fuzz(cases: int, seed: int, say: Callable[[str], None] = print, timeout: float = CASE_SECONDS
         ) -> dict[str, Any]:
    """Run `cases` mutated models; returns totals per class, per mutation and the bad cases."""
    rng = random.Random(seed)
    seeds = seed_models()
    root = Path(tempfile.mkdtemp(prefix="braze-fuzz-"))
    try:
        return fuzz_loop(cases, lambda index: make_case(index, rng, seeds, root),
                         lambda worker, case: judge(worker, case, timeout), Worker(run_job, MEMORY_LIMIT), BAD, say)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(result: dict[str, Any], say: Callable[[str], None] = print) -> None:
    fuzz_common.report(result, ["ok", "clean_error", "braze_only", *BAD], (14, 17), say)


def main(argv: list[str] | None = None) -> int:
    return fuzz_common.main(argv, __doc__.splitlines()[0], fuzz, report, BAD)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
