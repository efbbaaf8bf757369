"""Validation of an engine file as untrusted input, before anything is allocated or compiled.

The checksum guards against damage, not forgery: a plan edited and re-summed must still be refused
unless it is one braze could run correctly. Three stages, each an EngineFormatError naming the field:

  check_header     the binary header's JSON: its fields and their types;
  check_document   the plan's JSON before it is decoded: every field of the right JSON type, every
                   tensor name in its graph's table, dtypes braze knows, dims that are not negative;
  validate_plan    the decoded plan: layer order is a schedule (each input produced before it is read),
                   weights agree with their declared types, every type agrees with the ops' shape rules,
                   each layer's tactic exists and supports it, and the memory plan keeps every tensor
                   inside the arena, aligned, with strides of its rank, clear of every tensor live with it.
"""

from __future__ import annotations

from typing import Any

import torch

from ..device import Target
from ..errors import BrazeError, EngineFormatError
from ..ir import KINDS, TENSOR, DType, Graph, Node, Tensor, contiguous_strides, format_shape, subgraphs
from ..kernels import Tactic, tactic_by_name
from ..ops.kinds import Kind
from .plan import Plan

_DTYPES = frozenset(d.value for d in DType)


def arena_alignment(target: Target) -> int:
    """The alignment the memory planner gives arena tensors on `target` (bytes)."""
    return 256 if target.is_cuda else 64


def _invalid(msg: str) -> EngineFormatError:
    return EngineFormatError(f"engine plan is invalid: {msg}")


# -- the header ----------------------------------------------------------------------------------------

def check_header(header: Any) -> None:
    if not isinstance(header, dict):
        raise EngineFormatError(f"engine header is malformed: a JSON {_kind(header)}, not an object")
    for key in ("plan_size", "weights_size"):
        if not _is_int(header.get(key)) or header[key] < 0:
            raise EngineFormatError(f"engine header field {key!r} is {header.get(key)!r}, not a byte count")
    if not isinstance(header.get("braze"), str):
        raise EngineFormatError(f"engine header field 'braze' (the version that built it) is {header.get('braze')!r}")
    device = header.get("device")
    if not isinstance(device, dict) or not isinstance(device.get("kind"), str):
        raise EngineFormatError(f"engine header field 'device' is {device!r}, not a device signature "
                                "(an object with a 'kind')")


# -- the plan's JSON -----------------------------------------------------------------------------------

def check_document(doc: Any) -> None:
    """Every field the decoder reads is there and of the right JSON type; names resolve within their graph."""
    _obj(doc, "plan", ("graph", "layers", "memory", "device"))
    _graph_doc(doc["graph"], "plan.graph", frozenset())
    _obj(doc["layers"], "plan.layers")
    for name, layer in doc["layers"].items():
        path = f"plan.layers[{name!r}]"
        _obj(layer, path, ("tactic",))
        _typed(layer["tactic"], str, f"{path}.tactic")
        if "config" in layer:
            _obj(layer["config"], f"{path}.config")
    memory = doc["memory"]
    _obj(memory, "plan.memory", ("arena_size", "alignment", "offsets"))
    for key in ("arena_size", "alignment"):
        if not _is_int(memory[key]) or memory[key] < 0:
            raise _invalid(f"plan.memory.{key} is {memory[key]!r}, not a non-negative integer")
    if memory["alignment"] and memory["arena_size"] % memory["alignment"]:
        raise _invalid(f"plan.memory.arena_size is {memory['arena_size']}, not a multiple of its alignment "
                       f"({memory['alignment']})")
    _obj(memory["offsets"], "plan.memory.offsets")
    for name, offset in memory["offsets"].items():
        if not _is_int(offset):
            raise _invalid(f"plan.memory.offsets[{name!r}] is {offset!r}, not an integer")
    _obj(memory.get("strides", {}), "plan.memory.strides")
    for name, strides in memory.get("strides", {}).items():
        if not isinstance(strides, list) or not all(_is_int(s) for s in strides):
            raise _invalid(f"plan.memory.strides[{name!r}] is {strides!r}, not a list of integers")
    _obj(doc["device"], "plan.device", ("kind",))
    build = doc.get("build", {})
    _obj(build, "plan.build")
    if "graph_pool_bytes" in build and (not _is_int(build["graph_pool_bytes"]) or build["graph_pool_bytes"] < 0):
        raise _invalid(f"plan.build.graph_pool_bytes is {build['graph_pool_bytes']!r}, not a byte count")


def _graph_doc(g: Any, path: str, enclosing: frozenset[str]) -> None:
    """`enclosing`: the tensor names of the graph around this one, the only ones its "outer" may name."""
    _obj(g, path, ("name", "opset", "inputs", "outer", "nodes", "outputs", "tensors"))
    _typed(g["name"], str, f"{path}.name")
    if not _is_int(g["opset"]):
        raise _invalid(f"{path}.opset is {g['opset']!r}, not an integer")
    tensors = g["tensors"]
    _obj(tensors, f"{path}.tensors")
    for name, entry in tensors.items():
        _tensor_doc(entry, f"{path}.tensors[{name!r}]")

    def names(value: Any, where: str, nullable: bool = False) -> None:
        if not isinstance(value, list):
            raise _invalid(f"{where} is a JSON {_kind(value)}, not a list of tensor names")
        for i, name in enumerate(value):
            if name is None and nullable:
                continue
            if not isinstance(name, str):
                raise _invalid(f"{where}[{i}] is {name!r}, not a tensor name")
            if name not in tensors:
                raise _invalid(f"{where}[{i}] names tensor {name!r}, which {path}.tensors lacks")

    names(g["inputs"], f"{path}.inputs")
    names(g["outer"], f"{path}.outer")
    for name in g["outer"]:
        if name not in enclosing:
            raise _invalid(f"{path}.outer names {name!r}, which no enclosing graph has")
    names(g["outputs"], f"{path}.outputs")
    if not isinstance(g["nodes"], list):
        raise _invalid(f"{path}.nodes is a JSON {_kind(g['nodes'])}, not a list")
    for i, n in enumerate(g["nodes"]):
        where = f"{path}.nodes[{i}]"
        _obj(n, where, ("name", "op", "domain", "version", "inputs", "outputs", "attrs"))
        for key in ("name", "op", "domain"):
            _typed(n[key], str, f"{where}.{key}")
        if not _is_int(n["version"]):
            raise _invalid(f"{where}.version is {n['version']!r}, not an integer")
        if not isinstance(n.get("origin", []), list) or not all(isinstance(o, str) for o in n.get("origin", [])):
            raise _invalid(f"{where}.origin is {n.get('origin')!r}, not a list of node names")
        names(n["inputs"], f"{where}.inputs", nullable=True)
        names(n["outputs"], f"{where}.outputs")
        _obj(n["attrs"], f"{where}.attrs")
        for key, value in n["attrs"].items():
            _attr_doc(value, f"{where}.attrs.{key}", frozenset(tensors))


def _tensor_doc(entry: Any, path: str) -> None:
    _obj(entry, path, ("dtype", "shape"))
    if entry["dtype"] is not None and (not isinstance(entry["dtype"], str) or entry["dtype"] not in _DTYPES):
        raise _invalid(f"{path}.dtype is {entry['dtype']!r}, not a dtype braze knows")
    shape = entry["shape"]
    if shape is not None:
        if not isinstance(shape, list):
            raise _invalid(f"{path}.shape is a JSON {_kind(shape)}, not a list of dims")
        for i, d in enumerate(shape):
            if not (d is None or isinstance(d, str) or (_is_int(d) and d >= 0)):
                raise _invalid(f"{path}.shape[{i}] is {d!r}, not a dim (a non-negative integer, a name or null)")
    if entry.get("kind", TENSOR) not in KINDS:
        raise _invalid(f"{path}.kind is {entry.get('kind')!r}, not one of {', '.join(KINDS)}")
    if "weight" in entry:
        _typed(entry["weight"], str, f"{path}.weight")


def _attr_doc(value: Any, path: str, scope: frozenset[str]) -> None:
    if isinstance(value, list):
        for i, x in enumerate(value):
            _attr_doc(x, f"{path}[{i}]", scope)
    elif isinstance(value, dict):
        if len(value) != 1 or not {"$graph", "$tensor", "$bytes"} & set(value):
            raise _invalid(f"{path} is an attribute of unknown form {sorted(value)}")
        if "$graph" in value:
            _graph_doc(value["$graph"], f"{path}.$graph", scope)
        else:
            _typed(next(iter(value.values())), str, f"{path}.{next(iter(value))}")


def _obj(value: Any, path: str, required: tuple[str, ...] = ()) -> None:
    if not isinstance(value, dict):
        raise _invalid(f"{path} is a JSON {_kind(value)}, not an object")
    missing = [k for k in required if k not in value]
    if missing:
        raise _invalid(f"{path} lacks field(s) {', '.join(map(repr, missing))}")


def _typed(value: Any, kind: type, path: str) -> None:
    if not isinstance(value, kind):
        raise _invalid(f"{path} is {value!r}, not a {'string' if kind is str else kind.__name__}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


# -- the decoded plan ----------------------------------------------------------------------------------

def validate_plan(plan: Plan, target: Target) -> None:
    """Refuse a plan braze could not run as written: see the module's docstring for what is checked."""
    graph = plan.graph
    try:
        _check_schedule(graph)
        _check_weights(graph)
        _check_types(graph)
        tactics = _check_tactics(plan, target)
        _check_memory_plan(plan, tactics, target)
    except EngineFormatError:
        raise
    except Exception as e:  # NOTE: a plan odd in a way no check foresaw is still refused, never a raw exception
        raise _invalid(f"checking it failed ({type(e).__name__}: {e})") from e


def _layer(i: int, node: Node) -> str:
    return f"plan.graph.nodes[{i}] {node.name!r} ({node.op})"


def _check_schedule(graph: Graph) -> None:
    producer: dict[int, int] = {}
    for i, node in enumerate(graph.nodes):
        for t in node.outputs:
            producer.setdefault(id(t), i)
    available = {id(t) for t in graph.inputs}
    names: set[str] = set()
    for t in graph.inputs:
        if t.is_constant:
            raise _invalid(f"graph input {t.name!r} is also a weight")
        if t.dtype is None or (t.is_tensor and not t.is_static):
            raise _invalid(f"graph input {t.name!r} has no concrete type: {t.type_str()}")
    for i, node in enumerate(graph.nodes):
        if not node.name or node.name in names:
            raise _invalid(f"{_layer(i, node)}: layer names must be unique and not empty")
        names.add(node.name)
        for t in node.inputs:
            if t is None or t.is_constant or id(t) in available:
                continue
            if id(t) in producer:
                raise _invalid(f"{_layer(i, node)} input {t.name!r}: produced by layer {producer[id(t)]}, "
                               "after its use")
            raise _invalid(f"{_layer(i, node)} input {t.name!r}: no layer produces it")
        for t in node.outputs:
            if t.is_constant or id(t) in available:
                raise _invalid(f"{_layer(i, node)} output {t.name!r}: it is already "
                               f"{'a weight' if t.is_constant else 'an input or produced by an earlier layer'}")
            available.add(id(t))
        for sub in subgraphs(node):
            stray = [t.name for t in sub.outer if not any(t is x for x in node.inputs)]
            if stray:
                raise _invalid(f"{_layer(i, node)}: its subgraph {sub.name!r} reads {stray} from outside, "
                               "which the layer does not list as inputs")
            try:
                sub.verify()
            except BrazeError as e:
                raise _invalid(f"{_layer(i, node)} subgraph {sub.name!r}: {e}") from None
    for t in graph.outputs:
        if not t.is_constant and id(t) not in available:
            raise _invalid(f"graph output {t.name!r} is never produced")


def _check_weights(graph: Graph) -> None:
    for t in {id(t): t for g in graph.walk() for t in g.constants()}.values():
        value: torch.Tensor = t.value  # type: ignore[assignment]
        if t.dtype is None or value.dtype != t.dtype.torch or tuple(value.shape) != t.shape:
            held = f"{str(value.dtype).removeprefix('torch.')}{format_shape(tuple(value.shape))}"
            raise _invalid(f"weight {t.name!r} is declared {t.type_str()} in the plan, but the weights hold {held}")


def _check_types(graph: Graph) -> None:
    """Run shape inference again: every layer's outputs must be what its op gives for its inputs."""
    from ..ops import REGISTRY
    from ..ops.infer import infer_graph

    declared = {id(t): (t.dtype, t.shape, t.kind) for n in graph.nodes for t in n.outputs}
    try:
        infer_graph(graph, REGISTRY.for_node)
    except BrazeError as e:
        raise _invalid(f"its graph does not type-check: {e}") from None
    except Exception as e:  # NOTE: shape rules wrap what torch raises; anything else is the plan's doing too
        raise _invalid(f"its graph does not type-check: {type(e).__name__}: {e}") from None
    for i, node in enumerate(graph.nodes):
        for t in node.outputs:
            dtype, shape, kind = declared[id(t)]
            if (dtype, shape, kind) != (t.dtype, t.shape, t.kind):
                was = Tensor(t.name, dtype, shape, kind=kind).type_str()
                raise _invalid(f"{_layer(i, node)} output {t.name!r} is declared {was}, but the op gives "
                               f"{t.type_str()}")


def _check_tactics(plan: Plan, target: Target) -> list[Tactic]:
    names = {n.name for n in plan.graph.nodes}
    extra = sorted(set(plan.layers) - names)
    if extra:
        raise _invalid(f"plan.layers has tactics for {extra[:5]}, which are not layers of the graph")
    tactics = []
    for i, node in enumerate(plan.graph.nodes):
        choice = plan.layers.get(node.name)
        if choice is None:
            raise _invalid(f"{_layer(i, node)}: plan.layers has no tactic for it")
        tactic = tactic_by_name(target, choice.tactic)
        if tactic is None:
            raise _invalid(f"plan.layers[{node.name!r}].tactic {choice.tactic!r}: this braze has no such tactic "
                           f"for {target.kind}")
        try:
            supported = tactic.supports(node, target)
        except Exception:
            supported = False
        if not supported:
            raise _invalid(f"plan.layers[{node.name!r}].tactic {choice.tactic!r} does not run {_layer(i, node)}")
        tactics.append(tactic)
    return tactics


def _check_memory_plan(plan: Plan, tactics: list[Tactic], target: Target) -> None:
    memory, graph = plan.memory, plan.graph
    align = arena_alignment(target)
    if memory.alignment != align:
        raise _invalid(f"plan.memory.alignment is {memory.alignment}; braze aligns {target.kind} arenas to {align}")
    writers: dict[str, tuple[int, Node, Tactic]] = {}
    for i, (node, tactic) in enumerate(zip(graph.nodes, tactics)):
        for t in node.outputs:
            writers[t.name] = (i, node, tactic)
    strides: dict[str, list[int]] = {}
    extent: dict[str, tuple[int, int]] = {}  # name -> (first byte, end byte)
    unplaced = sorted(set(memory.strides) - set(memory.offsets))
    if unplaced:
        raise _invalid(f"plan.memory.strides[{unplaced[0]!r}] is given for a tensor without an arena offset")
    for name, offset in memory.offsets.items():
        field = f"plan.memory.offsets[{name!r}]"
        if name not in writers:
            raise _invalid(f"{field}: no layer writes {name!r}, so it has no place in the arena")
        i, node, tactic = writers[name]
        t = next(x for x in node.outputs if x.name == name)
        if not t.is_static or t.dtype is None:
            raise _invalid(f"{field}: {name!r} is {t.type_str()}, whose size is only known at run time")
        if not tactic.writes_output:
            raise _invalid(f"{field}: {name!r} is returned by tactic {tactic.name!r} of {_layer(i, node)}, "
                           "which does not write into the arena")
        shape: tuple[int, ...] = t.shape  # type: ignore[assignment]
        st = memory.strides.get(name) or contiguous_strides(shape)
        if len(st) != len(shape) or any(s < 0 for s in st):
            raise _invalid(f"plan.memory.strides[{name!r}] is {st}: {name!r} of shape {format_shape(shape)} needs "
                           f"{len(shape)} non-negative strides")
        if not _dense(shape, st):
            raise _invalid(f"plan.memory.strides[{name!r}] is {st}: elements of {name!r} {format_shape(shape)} "
                           "would share memory")
        size = 0 if t.numel == 0 else (sum((d - 1) * s for d, s in zip(shape, st)) + 1) * t.dtype.itemsize
        if offset < 0 or offset % t.dtype.itemsize or offset + size > memory.arena_size:
            raise _invalid(f"{field} is {offset}: {name!r} ({size} bytes) must lie inside the arena of "
                           f"{memory.arena_size} bytes (plan.memory.arena_size), at a multiple of its "
                           f"{t.dtype.itemsize}-byte elements")
        strides[name], extent[name] = list(st), (offset, offset + size)
    placed = _check_concats(graph, memory.offsets, strides)
    for name, (offset, _) in extent.items():
        if name not in placed and offset % align:
            raise _invalid(f"plan.memory.offsets[{name!r}] is {offset}, not a multiple of the arena's "
                           f"{align}-byte alignment")
    _check_lifetimes(graph, tactics, extent, placed)


def _dense(shape: tuple[int, ...], strides: list[int]) -> bool:
    """Whether no two elements of a tensor with these strides share memory."""
    if any(d == 0 for d in shape):
        return True
    span = 1
    for d, s in sorted(((d, s) for d, s in zip(shape, strides) if d > 1), key=lambda x: x[1]):
        if s < span:
            return False
        span = s * d
    return True


def _check_concats(graph: Graph, offsets: dict[str, int], strides: dict[str, list[int]]) -> dict[str, str]:
    """ConcatInPlace inputs written straight into their slice of the output: all of a layer's, or none.
    NOTE: the kernel copies only when its first input is not at the output's address, so a layer with some
    inputs placed and others not would leave slices unwritten. Returns placed input -> concat output."""
    placed: dict[str, str] = {}
    for i, node in enumerate(graph.nodes):
        out = node.outputs[0] if node.op == Kind.CONCAT_IN_PLACE and node.outputs else None
        if out is None or out.name not in offsets or any(t is None or not t.is_static for t in node.inputs):
            continue
        axis = int(node.attrs.get("axis", 0)) % max(len(out.shape), 1)  # type: ignore[arg-type]
        st, start, at = strides[out.name], 0, []
        for t in node.inputs:
            expected = offsets[out.name] + start * st[axis] * out.dtype.itemsize  # type: ignore[union-attr]
            at.append(offsets.get(t.name) == expected and strides.get(t.name) == st)  # type: ignore[union-attr]
            start += t.shape[axis]  # type: ignore[index,union-attr]
        if any(at) and not all(at):
            missing = [t.name for t, ok in zip(node.inputs, at) if not ok]  # type: ignore[union-attr]
            raise _invalid(f"{_layer(i, node)}: inputs {missing} are not at their slices of {out.name!r} in the "
                           "arena (plan.memory.offsets and strides), while its other inputs are")
        if all(at):
            placed.update((t.name, out.name) for t in node.inputs)  # type: ignore[union-attr]
    return placed


def _check_lifetimes(graph: Graph, tactics: list[Tactic], extent: dict[str, tuple[int, int]],
                     placed: dict[str, str]) -> None:
    """No two arena tensors that are live at the same layer share a byte. A view layer's outputs and a
    placed concat input live in their source's memory: that memory lives as long as any of them is read."""
    alias: dict[str, str] = dict(placed)
    for node, tactic in zip(graph.nodes, tactics):
        if tactic.moves_no_data and node.inputs and node.inputs[0] is not None:
            for t in node.outputs:
                alias[t.name] = node.inputs[0].name

    def root(name: str) -> str:
        for _ in range(len(alias) + 1):
            if name not in alias:
                break
            name = alias[name]
        return name

    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for step, node in enumerate(graph.nodes):
        for t in node.outputs:
            r = root(t.name)
            if r in extent:
                first[r] = min(first.get(r, step), step)
                last[r] = max(last.get(r, step), step)
        for t in node.inputs:
            r = root(t.name) if t is not None else None
            if r in extent and r in last:
                last[r] = max(last[r], step)  # type: ignore[index]
    for t in graph.outputs:
        if root(t.name) in last:
            last[root(t.name)] = len(graph.nodes)
    spans = sorted((extent[r][0], extent[r][1], r) for r in last if extent[r][1] > extent[r][0])
    for k, (start, end, a) in enumerate(spans):
        for start2, _, b in spans[k + 1:]:
            if start2 >= end:
                break
            if first[a] <= last[b] and first[b] <= last[a]:
                raise _invalid(f"plan.memory.offsets[{b!r}] puts {b!r} on bytes of {a!r} while both are live "
                               f"(layers {max(first[a], first[b])} to {min(last[a], last[b])})")
