"""What braze cannot run in an ONNX model, found before any other work and reported in one error: every
offending node by name, its inputs' types where the model declares them, and, where one exists, the
opset or exporter setting that would avoid it.

    model.onnx uses 2 op type(s) braze does not support (3 node(s), opset 17):
      com.microsoft.FusedConv x2 - an onnxruntime contrib op: ...
        node 'conv1' inputs: x float32[batch,3,224,224], W float32[64,3,7,7] (initializer)
        node 'conv2' inputs: ...
      StringNormalizer x1 - it works on strings, which braze does not support: ...
        node 'norm' inputs: text string[1,3]

Types come from the graphs' inputs, outputs and value_info, initializers and Constant nodes, completed
by ONNX shape inference where it can run; an input whose type neither gives is `(undeclared)`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

import onnx
import onnx.defs
import onnx.shape_inference

from ...errors import UnsupportedError
from ...ops import REGISTRY
from .loader import all_graphs, elem_name

ONNX_DOMAINS = ("", "ai.onnx")
DETAILED_NODES = 10  # per op type, nodes listed with their inputs' types; the rest by name only

STRING_OPS = frozenset({"StringNormalizer", "StringConcat", "StringSplit", "RegexFullMatch", "Tokenizer"})
TRAINING_DOMAIN = "ai.onnx.preview.training"
ML_DOMAIN = "ai.onnx.ml"
# onnxruntime's quantized contrib ops braze does not read (it reads the others: ops/msquant.py, ops/msdynamic.py)
ORT_QUANTIZED = frozenset({"QLinearConv", "QLinearSoftmax", "QLinearWhere", "QLinearReduceMean",
                           "QEmbedLayerNormalization", "QuantizeLinear", "DequantizeLinear"})


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of `graph` and of the subgraphs in its nodes' attributes."""
    return (node for g in all_graphs(graph) for node in g.node)


def find_unsupported(model: onnx.ModelProto, opsets: dict[str, int], where: str = "the model") -> None:
    """Raise one UnsupportedError naming every node whose op braze cannot run (see the module docstring)."""
    missing: dict[tuple[str, str], list[onnx.NodeProto]] = defaultdict(list)
    for node in all_nodes(model.graph):
        domain = "" if node.domain in ONNX_DOMAINS else node.domain
        opset = opsets.get(domain)
        if opset is None or REGISTRY.resolve(node.op_type, domain, opset) is None:
            missing[(domain, node.op_type)].append(node)
    if not missing:
        return
    types = declared_types(_inferred(model))
    lines = []
    for (domain, op_type), nodes in sorted(missing.items(), key=lambda kv: -len(kv[1])):
        hint = _hint(domain, op_type, opsets, nodes, types)
        lines.append(f"  {domain + '.' if domain else ''}{op_type} x{len(nodes)}" + (f" - {hint}" if hint else ""))
        lines += [f"    {_describe(node, types)}" for node in nodes[:DETAILED_NODES]]
        if len(nodes) > DETAILED_NODES:
            rest = nodes[DETAILED_NODES:]
            lines.append(f"    and {len(rest)} more: " + ", ".join(repr(_name(n)) for n in rest))
    total = sum(len(nodes) for nodes in missing.values())
    raise UnsupportedError(f"{where} uses {len(missing)} op type(s) braze does not support ({total} node(s), "
                           f"{_opsets(opsets)}):\n" + "\n".join(lines))


def _opsets(opsets: dict[str, int]) -> str:
    """`opset 17`; for a model without the default domain, the domains it imports: `ai.onnx.ml opset 3`."""
    if "" in opsets:
        return f"opset {opsets['']}"
    return ", ".join(["no ai.onnx opset"] + [f"{d} opset {v}" for d, v in sorted(opsets.items())])


def declared_types(model: onnx.ModelProto) -> dict[str, str]:
    """`float32[batch,128]`-style types of every value the model declares, in any of its graphs."""
    types: dict[str, str] = {}

    def visit(graph: onnx.GraphProto) -> None:
        for vi in (*graph.input, *graph.output, *graph.value_info):
            if vi.type.WhichOneof("value"):
                types[vi.name] = _type(vi.type)
        for init in graph.initializer:
            types[init.name] = f"{elem_name(init.data_type)}[{','.join(map(str, init.dims))}] (initializer)"
        for node in graph.node:
            value = next((a.t for a in node.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR),
                         None)
            if node.op_type == "Constant" and value is not None and node.output:
                types[node.output[0]] = f"{elem_name(value.data_type)}[{','.join(map(str, value.dims))}] (constant)"
            for attr in node.attribute:
                for g in (attr.g,) if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                    visit(g)

    visit(model.graph)
    return types


def _inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with ONNX shape inference's value_info added, or as it is where inference fails (a model
    over 2 GB, a node inference rejects): the error must be raised either way."""
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 -- any failure only means fewer types in the message
        return model


def _type(tp: onnx.TypeProto) -> str:
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        tt = tp.tensor_type
        if not tt.HasField("shape"):
            return elem_name(tt.elem_type)
        dims = [str(d.dim_value) if d.HasField("dim_value") else _dim_param(d.dim_param) for d in tt.shape.dim]
        return f"{elem_name(tt.elem_type)}[{','.join(dims)}]"
    if which == "sequence_type":
        return f"sequence of {_type(tp.sequence_type.elem_type)}"
    if which == "optional_type":
        return f"optional {_type(tp.optional_type.elem_type)}"
    return (which or "?").removesuffix("_type")


def _dim_param(name: str) -> str:
    """A symbolic dim by its name; `?` for none, or for the `unk__N` names shape inference makes up."""
    return "?" if not name or name.startswith("unk__") else name


def _name(node: onnx.NodeProto) -> str:
    return node.name or f"<unnamed, output {node.output[0] if node.output else '?'}>"


def _describe(node: onnx.NodeProto, types: dict[str, str]) -> str:
    inputs = [f"{name} {types.get(name, '(undeclared)')}" for name in node.input if name]
    aten = next((a.s.decode() for a in node.attribute if a.name == "operator"), "") if node.op_type == "ATen" else ""
    return (f"node {_name(node)!r}" + (f" (aten::{aten})" if aten else "") + " "
            + (f"inputs: {', '.join(inputs)}" if inputs else "(no inputs)"))


def _hint(domain: str, op_type: str, opsets: dict[str, int], nodes: list[onnx.NodeProto],
          types: dict[str, str]) -> str:
    """Why braze lacks it and what would avoid it, as far as the op's domain and name tell; "" if nothing does."""
    if domain and domain not in opsets:
        return f"domain {domain!r} is not imported by the model (opset_import)"
    values = {name for node in nodes for name in (*node.input, *node.output)}
    if op_type in STRING_OPS or any(types.get(v, "").startswith("string") for v in values):
        return ("it works on strings, which braze does not support: tokenize or encode outside the model "
                "and feed it numbers")
    if domain == TRAINING_DOMAIN:
        return ("a training op: export the model for inference (model.eval(), "
                "torch.onnx.export(..., training=torch.onnx.TrainingMode.EVAL)), without optimizer or gradients")
    if domain.startswith("com.microsoft"):
        if op_type in ORT_QUANTIZED:
            return ("written by onnxruntime's quantization tools in their QOperator format: quantize in the QDQ "
                    "format instead (quant_format=QuantFormat.QDQ), whose QuantizeLinear/DequantizeLinear braze reads")
        return ("an onnxruntime contrib op, written by onnxruntime's graph optimizers (onnxruntime.transformers."
                "optimizer, optimum's ORTOptimizer, a session's optimized_model_filepath), not by torch.onnx.export: "
                "give braze the model as exported, before onnxruntime optimized it" + _standard(op_type))
    if op_type == "ATen" or domain.startswith("org.pytorch"):
        return ("a PyTorch op the TorchScript exporter had no ONNX translation for, kept as ATen "
                "(operator_export_type=ONNX_ATEN_FALLBACK): export with dynamo=True, which translates more ops, or "
                "replace the op in the model before exporting")
    if domain == ML_DOMAIN:
        return (f"an op of ONNX's ML domain ({ML_DOMAIN}, opset {opsets[domain]}): classical machine learning "
                "(trees, linear models, encoders, ...), which braze does not implement; run this part of the model "
                "with onnxruntime")
    if domain:
        return f"custom domain {domain!r}: export with standard ONNX ops instead" + _standard(op_type)
    opset = opsets.get("", 0)
    versions = REGISTRY.versions(op_type)
    if versions and versions[0].since > opset:
        return (f"braze implements it from opset {versions[0].since}: re-export with opset >= {versions[0].since} "
                f"(torch.onnx.export(..., opset_version={versions[0].since}))")
    if not onnx.defs.has(op_type):
        return (f"not an ONNX op (onnx {onnx.__version__} defines no {op_type} in any opset): a custom op exported "
                "into the default domain")
    return "an ONNX op braze does not implement"


def _standard(op_type: str) -> str:
    """`; standard ONNX has X from opset N, which braze implements`, where braze has an ONNX op of that name."""
    versions = REGISTRY.versions(op_type)
    if not versions:
        return ""
    return (f"; standard ONNX has {op_type} from opset {versions[0].since}, which braze implements: "
            f"export with opset >= {versions[0].since}")
