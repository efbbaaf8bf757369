"""The plan: everything an engine is, as plain data (JSON) plus named weight tensors.

A Plan holds the optimized graph (its nodes are the engine's layers, in execution order), the
tactic and configuration chosen for each layer, the activation memory plan and the device
signature. `to_json` / `from_json` convert it losslessly; tensors (constants, tensor-valued
attributes) travel separately as a name -> torch.Tensor dict, saved as safetensors. Nothing
in a plan is code: decoding only builds IR objects from strings, numbers and tensors.

Subgraphs are encoded inside their node's attributes, each with its own tensor table; a tensor
it reads from an enclosing graph (listed in its "outer") is bound again, by name, to that graph's
tensor when decoded. Sequences and optionals carry their "kind" (tensors leave it out).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import EngineFormatError
from ..ir import KINDS, TENSOR, DType, Graph, Node, Tensor


@dataclass
class LayerChoice:
    tactic: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class MemoryPlan:
    arena_size: int = 0
    alignment: int = 64
    offsets: dict[str, int] = field(default_factory=dict)  # activation tensor name -> byte offset
    strides: dict[str, list[int]] = field(default_factory=dict)  # element strides, where not contiguous


@dataclass
class Plan:
    graph: Graph
    layers: dict[str, LayerChoice]  # by node name
    memory: MemoryPlan
    device: dict[str, Any]
    build: dict[str, Any] = field(default_factory=dict)  # how it was built: source, counts, timings

    @property
    def device_memory_size(self) -> int:
        """Bytes of activation memory each execution context allocates: the planned arena, plus (CUDA)
        the execution graph's pool for the outputs of library kernels, as measured when the engine was built."""
        return self.memory.arena_size + int(self.build.get("graph_pool_bytes", 0))

    def to_json(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        weights: dict[str, torch.Tensor] = {}
        doc = {
            "graph": _GraphEncoder(weights).graph(self.graph),
            "layers": {name: {"tactic": c.tactic, "config": c.config} for name, c in self.layers.items()},
            "memory": {"arena_size": self.memory.arena_size, "alignment": self.memory.alignment,
                       "offsets": self.memory.offsets, "strides": self.memory.strides},
            "device": self.device,
            "build": self.build,
        }
        return doc, weights

    @staticmethod
    def from_json(doc: dict[str, Any], weights: dict[str, torch.Tensor]) -> "Plan":
        try:
            graph = _GraphDecoder(weights).graph(doc["graph"], {})
            layers = {name: LayerChoice(c["tactic"], dict(c.get("config", {}))) for name, c in doc["layers"].items()}
            mem = doc["memory"]
            memory = MemoryPlan(int(mem["arena_size"]), int(mem["alignment"]),
                                {k: int(v) for k, v in mem["offsets"].items()},
                                {k: [int(x) for x in v] for k, v in mem.get("strides", {}).items()})
            return Plan(graph, layers, memory, dict(doc["device"]), dict(doc.get("build", {})))
        except EngineFormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise EngineFormatError(f"engine plan is malformed ({type(e).__name__}: {e})") from None


class _GraphEncoder:
    def __init__(self, weights: dict[str, torch.Tensor]):
        self.weights = weights

    def weight(self, key: str, value: torch.Tensor) -> str:
        name, k = key, 1
        while name in self.weights:
            name, k = f"{key}#{k}", k + 1
        self.weights[name] = value
        return name

    def graph(self, g: Graph) -> dict[str, Any]:
        tensors: dict[str, Any] = {}

        outer = {id(t) for t in g.outer}

        def note(t: Tensor | None) -> str | None:
            if t is None:
                return None
            if t.name not in tensors:
                entry: dict[str, Any] = {"dtype": t.dtype.value if t.dtype else None,
                                         "shape": None if t.shape is None else list(t.shape)}
                if not t.is_tensor:
                    entry["kind"] = t.kind
                if t.value is not None and id(t) not in outer:  # NOTE: an outer constant is its enclosing graph's
                    entry["weight"] = self.weight(t.name, t.value)
                tensors[t.name] = entry
            return t.name

        for t in g.outer:
            note(t)
        doc = {
            "name": g.name,
            "opset": g.opset,
            "inputs": [note(t) for t in g.inputs],
            "outer": [t.name for t in g.outer],
            "nodes": [self.node(n, note) for n in g.nodes],
            "outputs": [note(t) for t in g.outputs],
        }
        doc["tensors"] = tensors
        return doc

    def node(self, n: Node, note) -> dict[str, Any]:
        return {
            "name": n.name, "op": n.op, "domain": n.domain, "version": n.version, "origin": list(n.origin),
            "inputs": [note(t) for t in n.inputs],
            "outputs": [note(t) for t in n.outputs],
            "attrs": {k: self.attr(f"{n.name}.{k}", v) for k, v in n.attrs.items()},
        }

    def attr(self, key: str, v: Any) -> Any:
        if isinstance(v, Graph):
            return {"$graph": self.graph(v)}
        if isinstance(v, torch.Tensor):
            return {"$tensor": self.weight(key, v)}
        if isinstance(v, bytes):
            return {"$bytes": base64.b64encode(v).decode()}
        if isinstance(v, (list, tuple)):
            return [self.attr(f"{key}.{i}", x) for i, x in enumerate(v)]
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise TypeError(f"attribute {key} of type {type(v).__name__} cannot go into an engine")


class _GraphDecoder:
    def __init__(self, weights: dict[str, torch.Tensor]):
        self.weights = weights

    def graph(self, doc: dict[str, Any], outer_scope: dict[str, Tensor]) -> Graph:
        scope: dict[str, Tensor] = {}
        for name, entry in doc["tensors"].items():
            if name in doc["outer"] and name in outer_scope:
                scope[name] = outer_scope[name]
                continue
            value = None
            if "weight" in entry:
                if entry["weight"] not in self.weights:
                    raise EngineFormatError(f"engine plan names weight {entry['weight']!r}, which the weights lack")
                value = self.weights[entry["weight"]]
            shape = None if entry["shape"] is None else tuple(entry["shape"])
            dtype = DType(entry["dtype"]) if entry["dtype"] else None
            kind = entry.get("kind", TENSOR)
            if kind not in KINDS:
                raise EngineFormatError(f"engine plan gives tensor {name!r} the unknown kind {kind!r}")
            scope[name] = Tensor(name, dtype, shape, value, kind)

        def get(name: str | None) -> Tensor | None:
            if name is None:
                return None
            return scope[name]

        nodes = [
            Node(n["op"], [get(x) for x in n["inputs"]], [get(x) for x in n["outputs"]],  # type: ignore[misc]
                 {k: self.attr(v, scope) for k, v in n["attrs"].items()}, n["name"], n["domain"], int(n["version"]),
                 tuple(n["origin"]))
            for n in doc["nodes"]
        ]
        return Graph(inputs=[get(x) for x in doc["inputs"]], outputs=[get(x) for x in doc["outputs"]],  # type: ignore[misc]
                     nodes=nodes, name=doc["name"], opset=int(doc["opset"]),
                     outer=[scope[x] for x in doc["outer"]])

    def attr(self, v: Any, scope: dict[str, Tensor]) -> Any:
        if isinstance(v, dict):
            if "$graph" in v:
                return self.graph(v["$graph"], scope)
            if "$tensor" in v:
                if v["$tensor"] not in self.weights:
                    raise EngineFormatError(f"engine plan names weight {v['$tensor']!r}, which the weights lack")
                return self.weights[v["$tensor"]]
            if "$bytes" in v:
                return base64.b64decode(v["$bytes"])
            raise EngineFormatError(f"engine plan has an attribute of unknown form {sorted(v)}")
        if isinstance(v, list):
            return [self.attr(x, scope) for x in v]
        return v
