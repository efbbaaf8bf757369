"""`braze inspect`: what an engine (or an ONNX model) holds, as text in the style of trtexec and
polygraphy, or as JSON.

For an engine: header (versions, device, size, the precision policy and the INT8 calibration), bindings, every
layer with the source nodes it stands for (`conv1 + bn1 + relu1`), its op, its precision (from its types; a
pinned layer says so), tactic, input and output types, and the memory it needs; then the INT8 layers with their
scales, the layers INT8 was allowed for that the recipe or a pin kept in float (and why), the Q/DQ layers left
unfused, and a count of layers per precision. For an ONNX model: its inputs, outputs and op counts as parsed.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ..device import describe
from ..engine import Engine
from ..errors import BrazeError
from ..ir import Graph, Node, Tensor
from ..ops.kinds import Kind, is_kind
from ..precision import PrecisionPolicy
from .common import human_bytes

_FLOAT_PRECISIONS = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
_QDQ = ("QuantizeLinear", "DequantizeLinear")


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
    nodes = [step.node for step in engine.steps]
    policy = _policy(plan.build)
    int8 = plan.build.get("int8") or {}
    kept = _match_kept(int8.get("kept_in_float") or {}, nodes)
    why_kept = {at: int8["kept_in_float"][name] for name, at in kept.items() if at is not None}
    layers = []
    for i, (step, node) in enumerate(zip(engine.steps, nodes)):
        layer = {
            "index": i,
            "name": layer_label(node.origin, node.name),
            "op": node.op if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op}",
            "precision": layer_precision(node),
            "pinned": _pinned(policy, node),
            "tactic": step.tactic,
            "config": plan.layers[node.name].config,
            "inputs": [_tensor(t) for t in node.inputs],
            "outputs": [_tensor(t) for t in node.outputs],
            "weights_bytes": sum(t.value.nbytes for t in node.inputs if t is not None and t.value is not None),
        }
        if layer["precision"] == "int8":
            layer["quantization"] = _quantization(node)
        if i in why_kept:
            layer["kept_in_float"] = why_kept[i]
        layers.append(layer)
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
        "precision": plan.build.get("precision", "fp32"),
        "calibration": {k: int8.get(k) for k in ("source", "data_digest", "graph_digest")} if int8 else None,
        "layers": layers,
        "precision_counts": dict(Counter(layer["precision"] for layer in layers).most_common()),
        "kept_in_float": [{"name": name, "layer": kept[name], "reason": reason}
                          for name, reason in (int8.get("kept_in_float") or {}).items()],
        "unfused_qdq": _unfused_qdq(nodes),
        "memory": {
            "activation_bytes": engine.device_memory_size,
            "weights_bytes": engine.graph.weight_bytes(),
            "weight_tensors": len(engine.graph.constants()),
        },
        "op_counts": dict(Counter(layer["op"] for layer in layers).most_common()),
        "tactic_counts": dict(Counter(layer["tactic"] for layer in layers).most_common()),
    }


def layer_precision(node: Node) -> str:
    """What a layer computes in, from its types: int8 for the INT8 kinds and Q/DQ, else its float output's (or
    input's) type, else its first output's type (an integer or shape layer)."""
    if is_kind(node, Kind.QCONV, Kind.QGEMM):
        return "int8"
    if node.op in _QDQ and node.domain in ("", "ai.onnx"):
        quantized = node.outputs[0] if node.op == "QuantizeLinear" else node.inputs[0]
        dtype = str(quantized.dtype) if quantized is not None else "int8"
        return "int8" if dtype in ("int8", "uint8") else dtype
    for t in (*node.outputs, *node.inputs):
        if t is not None and str(t.dtype) in _FLOAT_PRECISIONS:
            return _FLOAT_PRECISIONS[str(t.dtype)]
    first = next((t for t in node.outputs if t is not None), None)
    return str(first.dtype) if first is not None and first.dtype is not None else "-"


def _policy(build: dict[str, Any]) -> PrecisionPolicy | None:
    """The policy the engine was built with (None for an engine built before policies were recorded)."""
    doc = build.get("policy")
    if not isinstance(doc, dict):
        return None
    try:
        return PrecisionPolicy(frozenset(doc.get("allowed") or ()), doc.get("layers") or {}, doc.get("op_types") or {})
    except (BrazeError, TypeError, AttributeError):
        return None  # NOTE: inspect shows what it can of an engine; the precision column still comes from the types


def _pinned(policy: PrecisionPolicy | None, node: Node) -> str | None:
    pin = policy.pinned(node) if policy is not None else None
    return None if pin is None else pin.value


def _match_kept(kept: dict[str, str], nodes: list[Node]) -> dict[str, int | None]:
    """Each layer name the INT8 step kept in float -> the index of the plan's layer it became (None if none): the
    layer of that name, else the one whose origin holds it, else one renamed from it (`name_1`); INT8 layers are
    never candidates."""
    candidates = [(i, n) for i, n in enumerate(nodes) if layer_precision(n) != "int8"]
    found: dict[str, int | None] = {}
    for name in kept:
        renamed = re.compile(re.escape(name) + r"(_\d+)+")
        ranked = [(0 if n.name == name else 1 if name in n.origin else 2, i) for i, n in candidates
                  if n.name == name or name in n.origin or renamed.fullmatch(n.name)]
        found[name] = min(ranked)[1] if ranked else None
    return found


def _quantization(node: Node) -> dict[str, Any]:
    """An INT8 layer's scales: input scale and zero point, the range of the weight scales over the output
    channels, the output's scale and zero point (requantized) or float type; a Q/DQ layer's scale and zero point."""
    if node.op in _QDQ:
        return {"scale": _constant(node.inputs[1] if len(node.inputs) > 1 else None),
                "zero_point": _constant(node.inputs[2] if len(node.inputs) > 2 else None) or 0}
    a = node.attrs
    w_scale = _constant(node.inputs[2] if len(node.inputs) > 2 else None)
    desc: dict[str, Any] = {
        "input_scale": a.get("x_scale"), "input_zero_point": a.get("x_zero_point", 0),
        "weight_scale": w_scale if isinstance(w_scale, dict) or w_scale is None else
        {"min": w_scale, "max": w_scale, "channels": 1}}
    if a.get("residual_scale", 0.0) > 0:
        desc.update(residual_scale=a["residual_scale"], residual_zero_point=a.get("residual_zero_point", 0))
    if a.get("out_scale", 0.0) > 0:
        desc.update(output_scale=a["out_scale"], output_zero_point=a.get("out_zero_point", 0))
    out = node.outputs[0]
    desc["output_dtype"] = str(out.dtype) if out is not None else None
    return desc


def _constant(t: Tensor | None) -> int | float | dict[str, Any] | None:
    """A constant in brief: its value when it has one element, else its range {min, max, channels}; None when it
    is not a constant."""
    if t is None or t.value is None or t.value.numel() == 0:
        return None
    v = t.value.detach()
    kind = float if v.is_floating_point() else int
    if v.numel() == 1:
        return kind(v.reshape(()).item())
    return {"min": kind(v.min().item()), "max": kind(v.max().item()), "channels": int(v.numel())}


def _unfused_qdq(nodes: list[Node]) -> list[dict[str, Any]]:
    """The Q/DQ layers no rule fused (each runs in float with the rounding kept), a Quantize and the Dequantize it
    feeds as one pair. A QuantizeLinear that only feeds INT8 layers is their input's quantization, not listed."""
    index = {id(n): i for i, n in enumerate(nodes)}
    consumers: dict[str, list[Node]] = {}
    for n in nodes:
        for t in n.inputs:
            if t is not None:
                consumers.setdefault(t.name, []).append(n)
    listed: set[int] = set()
    pairs = []
    for n in nodes:
        if n.op not in _QDQ or n.domain not in ("", "ai.onnx") or id(n) in listed:
            continue
        users = consumers.get(n.outputs[0].name, [])
        if n.op == "QuantizeLinear" and users and all(is_kind(u, Kind.QCONV, Kind.QGEMM) for u in users):
            continue
        group = [n] + ([u for u in users if u.op == "DequantizeLinear"] if n.op == "QuantizeLinear" else [])
        listed.update(id(g) for g in group)
        pairs.append({"layers": [index[id(g)] for g in group], "names": [g.name for g in group],
                      "tensor": n.inputs[0].name if n.inputs and n.inputs[0] is not None else None})
    return pairs


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
    lines.append(f"    precision: {desc['precision']}")
    calibration = desc.get("calibration")
    if calibration:
        digests = ", ".join(f"{what} digest {calibration[key][:16]}" for what, key in
                            (("data", "data_digest"), ("graph", "graph_digest")) if calibration.get(key))
        lines.append(f"    calibration: {calibration.get('source') or 'none'}" + (f", {digests}" if digests else ""))
    lines += ["", f"---- {len(desc['inputs'])} Input(s) ----"] + [_binding(t) for t in desc["inputs"]]
    lines += ["", f"---- {len(desc['outputs'])} Output(s) ----"] + [_binding(t) for t in desc["outputs"]]
    lines += ["", f"---- {len(desc['layers'])} Layer(s) ----"]
    width = min(48, max([len("Layer")] + [len(layer["name"]) for layer in desc["layers"]]))
    lines.append(f"  {'#':>4}  {'Layer':<{width}}  {'Op':<20} {'Precision':<14} {'Tactic':<12} Inputs -> Outputs")
    for layer in desc["layers"]:
        name = layer["name"] if len(layer["name"]) <= width else layer["name"][: width - 3] + "..."
        ins = ", ".join(_short(t) for t in layer["inputs"])
        outs = ", ".join(_short(t) for t in layer["outputs"])
        pin = layer["pinned"]
        precision = layer["precision"] + ("" if pin is None else " (pinned)" if pin == layer["precision"] else
                                          f" (pinned {pin})")
        lines.append(f"  {layer['index']:>4}  {name:<{width}}  {layer['op']:<20} {precision:<14} "
                     f"{layer['tactic']:<12} {ins} -> {outs}")
    lines += _format_precision(desc)
    lines += ["", "---- Op counts ----"]
    lines += [f"  {op:<24} {n}" for op, n in desc["op_counts"].items()]
    return "\n".join(lines)


def _format_precision(desc: dict[str, Any]) -> list[str]:
    """The INT8 layers' scales, the layers kept in float and why, the unfused Q/DQ, the count per precision."""
    quantized = [layer for layer in desc["layers"] if "quantization" in layer]
    lines = []
    if quantized:
        lines += ["", f"---- {len(quantized)} INT8 Layer(s) ----"]
        lines += [f"  {layer['index']:>4}  {layer['name']}: {_scales(layer['quantization'])}" for layer in quantized]
    if desc["kept_in_float"]:
        lines += ["", f"---- {len(desc['kept_in_float'])} Layer(s) kept in float ----"]
        for kept in desc["kept_in_float"]:
            at = kept["layer"]
            where = f"{at:>4}  {desc['layers'][at]['name']}" if at is not None else f"{'-':>4}  {kept['name']}"
            lines.append(f"  {where}: {kept['reason']}")
    if desc["unfused_qdq"]:
        lines += ["", f"---- {len(desc['unfused_qdq'])} unfused Q/DQ pair(s) (run in float with rounding kept) ----"]
        lines += [f"  {q['layers'][0]:>4}  {' + '.join(q['names'])} (tensor {q['tensor']}; layer"
                  f"{'s' if len(q['layers']) > 1 else ''} {', '.join(map(str, q['layers']))})" for q in desc["unfused_qdq"]]
    lines += ["", "---- Layers per precision ----"]
    lines += [f"  {precision:<24} {n}" for precision, n in desc["precision_counts"].items()]
    return lines


def _scales(q: dict[str, Any]) -> str:
    if "scale" in q:  # a QuantizeLinear or DequantizeLinear
        return f"scale {_range(q['scale'])}, zero point {_range(q['zero_point'])}"
    parts = [f"input scale {q['input_scale']:.6g} zero point {q['input_zero_point']}",
             f"weight scale {_range(q['weight_scale'])}"]
    if "residual_scale" in q:
        parts.append(f"residual scale {q['residual_scale']:.6g} zero point {q['residual_zero_point']}")
    if "output_scale" in q:
        parts.append(f"output {q['output_dtype']} scale {q['output_scale']:.6g} zero point {q['output_zero_point']}")
    else:
        parts.append(f"output {q['output_dtype']}")
    return ", ".join(parts)


def _range(v: int | float | dict[str, Any] | None) -> str:
    if v is None:
        return "?"
    if not isinstance(v, dict):
        return f"{v:.6g}"
    if v["min"] == v["max"]:
        return f"{v['min']:.6g} (all {v['channels']} channels)"
    return f"{v['min']:.6g}..{v['max']:.6g} over {v['channels']} channels"


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
