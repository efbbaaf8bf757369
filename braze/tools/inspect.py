"""`braze inspect`: what an engine (or an ONNX model) holds, as text in the style of trtexec and
polygraphy, or as JSON.

For an engine: header (versions, device, size), bindings, every layer with the source nodes it
stands for (`conv1 + bn1 + relu1`), its op, tactic, input and output types, and the memory it
needs. For an ONNX model: its inputs, outputs and op counts as parsed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..device import describe
from ..engine import Engine
from ..ir import Graph, Tensor
from .common import human_bytes


def layer_label(origin: tuple[str, ...], name: str) -> str:
    """TensorRT-style layer name: the source nodes it came from, joined with ' + '."""
    return " + ".join(origin) if origin else name


def _tensor(t: Tensor | None) -> dict[str, Any] | None:
    if t is None:
        return None
    desc = {"name": t.name, "dtype": str(t.dtype), "shape": None if t.shape is None else list(t.shape)}
    if not t.is_tensor:
        desc["kind"] = t.kind  # a sequence or optional: dtype and shape are its tensors'
    return desc


def describe_engine(engine: Engine, size_bytes: int | None = None) -> dict[str, Any]:
    plan = engine.plan
    layers = []
    for i, step in enumerate(engine.steps):
        node = step.node
        layers.append({
            "index": i,
            "name": layer_label(node.origin, node.name),
            "op": node.op if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op}",
            "tactic": step.tactic,
            "config": plan.layers[node.name].config,
            "inputs": [_tensor(t) for t in node.inputs],
            "outputs": [_tensor(t) for t in node.outputs],
            "weights_bytes": sum(t.value.nbytes for t in node.inputs if t is not None and t.value is not None),
        })
    from .. import __version__
    from ..engine import FORMAT_VERSION

    return {
        "braze": plan.device.get("braze", __version__),
        "format_version": FORMAT_VERSION,
        "size_bytes": size_bytes,
        "device": plan.device,
        "build": plan.build,
        "inputs": [_tensor(t) for t in engine.graph.inputs],
        "outputs": [_tensor(t) for t in engine.graph.outputs],
        "layers": layers,
        "memory": {
            "activation_bytes": engine.device_memory_size,
            "weights_bytes": engine.graph.weight_bytes(),
            "weight_tensors": len(engine.graph.constants()),
        },
        "op_counts": dict(Counter(layer["op"] for layer in layers).most_common()),
        "tactic_counts": dict(Counter(layer["tactic"] for layer in layers).most_common()),
    }


def format_engine(desc: dict[str, Any], title: str = "Engine") -> str:
    mem, build = desc["memory"], desc["build"]
    lines = [f"[I] ==== {title} ====",
             f"    braze {desc['braze']}, engine format version {desc['format_version']}"
             + (f", {human_bytes(desc['size_bytes'])}" if desc.get("size_bytes") else ""),
             f"    device: {describe(desc['device'])}, built with torch {desc['device'].get('torch')}"]
    if build:
        lines.append(f"    built from {build.get('source_nodes', '?')} nodes into {build.get('layers', '?')} layers "
                     f"(optimization level {build.get('optimization_level', '?')}) in {build.get('build_seconds', '?')} s")
        fired = build.get("rules_fired") or {}
        if fired:
            lines.append("    rules fired: " + ", ".join(f"{rule} x{n}" for rule, n in fired.items() if n))
    lines.append(f"    memory: {human_bytes(mem['activation_bytes'])} of activations per context, "
                 f"{human_bytes(mem['weights_bytes'])} of weights in {mem['weight_tensors']} tensors")
    lines += ["", f"---- {len(desc['inputs'])} Input(s) ----"] + [_binding(t) for t in desc["inputs"]]
    lines += ["", f"---- {len(desc['outputs'])} Output(s) ----"] + [_binding(t) for t in desc["outputs"]]
    lines += ["", f"---- {len(desc['layers'])} Layer(s) ----"]
    width = min(48, max((len(layer["name"]) for layer in desc["layers"]), default=5))
    lines.append(f"  {'#':>4}  {'Layer':<{width}}  {'Op':<20} {'Tactic':<12} Inputs -> Outputs")
    for layer in desc["layers"]:
        name = layer["name"] if len(layer["name"]) <= width else layer["name"][: width - 3] + "..."
        ins = ", ".join(_short(t) for t in layer["inputs"])
        outs = ", ".join(_short(t) for t in layer["outputs"])
        lines.append(f"  {layer['index']:>4}  {name:<{width}}  {layer['op']:<20} {layer['tactic']:<12} {ins} -> {outs}")
    lines += ["", "---- Op counts ----"]
    lines += [f"  {op:<24} {n}" for op, n in desc["op_counts"].items()]
    return "\n".join(lines)


def describe_graph(graph: Graph) -> dict[str, Any]:
    return {
        "name": graph.name,
        "opset": graph.opset,
        "nodes": len(graph.nodes),
        "inputs": [_tensor(t) for t in graph.inputs],
        "outputs": [_tensor(t) for t in graph.outputs],
        "op_counts": dict(Counter(n.op for n in graph.nodes).most_common()),
        "weights_bytes": graph.weight_bytes(),
    }


def format_graph_summary(desc: dict[str, Any], title: str) -> str:
    lines = [f"[I] ==== ONNX model: {title} ====",
             f"    graph {desc['name']!r}, opset {desc['opset']}, {desc['nodes']} nodes, "
             f"{human_bytes(desc['weights_bytes'])} of weights"]
    lines += ["", f"---- {len(desc['inputs'])} Input(s) ----"] + [_binding(t) for t in desc["inputs"]]
    lines += ["", f"---- {len(desc['outputs'])} Output(s) ----"] + [_binding(t) for t in desc["outputs"]]
    lines += ["", "---- Op counts ----"] + [f"  {op:<24} {n}" for op, n in desc["op_counts"].items()]
    return "\n".join(lines)


def _binding(t: dict[str, Any]) -> str:
    shape = "?" if t["shape"] is None else "(" + ", ".join("?" if d is None else str(d) for d in t["shape"]) + ")"
    kind = f", kind={t['kind']}" if "kind" in t else ""
    return f"{{{t['name']} [dtype={t['dtype']}, shape={shape}{kind}]}}"


def _short(t: dict[str, Any] | None) -> str:
    if t is None:
        return "_"
    shape = "?" if t["shape"] is None else "x".join("?" if d is None else str(d) for d in t["shape"]) or "scalar"
    return f"{t['kind']} of {t['dtype']}[{shape}]" if "kind" in t else f"{t['dtype']}[{shape}]"
