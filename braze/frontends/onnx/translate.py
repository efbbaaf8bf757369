"""ONNX GraphProto -> braze Graph: one Node per ONNX node, one Tensor per ONNX value.

Translation only: no rewriting happens here. Each node is bound to the OpDef its model's opset
means, and its attributes are checked against that definition. Every unsupported op in the model
(subgraphs included) is reported at once, before any other work.

Subgraph attributes become Graph values; the tensors of enclosing graphs they read are recorded in
their `outer` and appended to their node's inputs (braze/ops/subgraph.py). Values may be tensors,
sequences of tensors or optionals (Tensor.kind); maps, sparse tensors and strings are unsupported.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import onnx
import onnx.numpy_helper
import torch

from ...errors import BrazeError, ModelError, UnsupportedError
from ...ir import OPTIONAL_SEQUENCE, OPTIONAL_TENSOR, SEQUENCE, TENSOR, DType, Graph, Node, Tensor, to_torch
from ...ops import REGISTRY, infer_shapes
from ...ops.subgraph import graph_attrs, outer_reads
from .loader import elem_name
from .unsupported import ONNX_DOMAINS, all_nodes, find_unsupported


def model_opsets(model: onnx.ModelProto, where: str) -> dict[str, int]:
    opsets: dict[str, int] = {}
    for entry in model.opset_import:
        opsets["" if entry.domain in ONNX_DOMAINS else entry.domain] = entry.version
    if "" not in opsets and any(node.domain in ONNX_DOMAINS for node in all_nodes(model.graph)):
        raise ModelError(f"{where} does not import the default ONNX opset")
    return opsets


class _Scope:
    """Names visible while translating one (sub)graph; reads of enclosing scopes are recorded."""

    def __init__(self, parent: "_Scope | None" = None):
        self.parent = parent
        self.tensors: dict[str, Tensor] = {}
        self.outer: dict[str, Tensor] = {}

    def lookup(self, name: str) -> Tensor | None:
        if name in self.tensors:
            return self.tensors[name]
        if self.parent is None:
            return None
        found = self.parent.lookup(name)
        if found is not None:
            self.outer[name] = found
        return found


class Translator:
    def __init__(self, opsets: dict[str, int], where: str):
        self.opsets = opsets
        self.where = where
        self.node_names: Counter[str] = Counter()

    def graph(self, gp: onnx.GraphProto, parent: _Scope | None = None) -> Graph:
        scope = _Scope(parent)
        for init in gp.initializer:
            value, dtype = self._array(init, f"initializer {init.name!r}")
            scope.tensors[init.name] = Tensor(init.name, dtype, tuple(value.shape), value)
        inputs = []
        for vi in gp.input:
            if vi.name in scope.tensors:  # an initializer listed as input (old exporters): a constant
                continue
            # NOTE: a subgraph's inputs may go untyped: shape inference types them from the node's inputs
            kind, dtype, shape = self._value_type(vi, f"input {vi.name!r}", strict=parent is None)
            t = Tensor(vi.name, dtype, shape, kind=kind)
            scope.tensors[vi.name] = t
            inputs.append(t)
        declared = {vi.name: vi for vi in list(gp.value_info) + list(gp.output)}
        nodes = [self.node(np_, scope, declared) for np_ in gp.node]
        outputs = []
        for vi in gp.output:
            t = scope.lookup(vi.name)
            if t is None:
                raise ModelError(f"{self.where}: graph output {vi.name!r} is not produced by any node")
            outputs.append(t)
        graph = Graph(inputs=inputs, outputs=outputs, nodes=nodes, name=gp.name or "main",
                      opset=self.opsets.get("", 0))
        graph.outer = list(scope.outer.values())
        return graph

    def node(self, np_: onnx.NodeProto, scope: _Scope, declared: dict[str, onnx.ValueInfoProto]) -> Node:
        domain = "" if np_.domain in ONNX_DOMAINS else np_.domain
        opdef = REGISTRY.resolve(np_.op_type, domain, self.opsets.get(domain, 0))
        assert opdef is not None, "find_unsupported runs first"
        name = self._node_name(np_)
        where = f"node {name!r} ({np_.op_type})"
        inputs: list[Tensor | None] = []
        for i, iname in enumerate(np_.input):
            if not iname:
                inputs.append(None)
                continue
            t = scope.lookup(iname)
            if t is None:
                raise ModelError(f"{self.where}: {where} reads {iname!r} (input {i}), which nothing produces")
            inputs.append(t)
        opdef.check_arity(len(inputs), where)
        raw = {a.name: self._attr(a, where, scope) for a in np_.attribute}
        attrs = opdef.parse_attrs(raw, where)
        if opdef.outer_inputs:
            inputs += outer_reads(graph_attrs(attrs))
        else:  # NOTE: other ops run their subgraphs alone: they may read constants of enclosing graphs only
            for sub in graph_attrs(attrs):
                sub.outer = [t for t in sub.outer if not t.is_constant]
                if sub.outer:
                    raise UnsupportedError(f"{self.where}: {where}: its subgraph reads {sub.outer[0].name!r} of an "
                                           "enclosing graph, which braze supports for control-flow ops only")
        outputs = []
        for i, oname in enumerate(np_.output):
            t = Tensor(oname or f"{name}:unused{i}")
            if oname in declared:
                t.kind, t.dtype, t.shape = self._value_type(declared[oname], f"{where} output {oname!r}", strict=False)
            if oname:
                if oname in scope.tensors:
                    raise ModelError(f"{self.where}: {where} writes {oname!r}, which is already defined")
                scope.tensors[oname] = t
            outputs.append(t)
        return Node(opdef.name, inputs, outputs, attrs, name=name, domain=domain, version=opdef.since)

    def _node_name(self, np_: onnx.NodeProto) -> str:
        base = np_.name or f"{np_.op_type}_{sum(self.node_names.values())}"
        self.node_names[base] += 1
        return base if self.node_names[base] == 1 else f"{base}_{self.node_names[base] - 1}"

    def _attr(self, a: onnx.AttributeProto, where: str, scope: _Scope) -> Any:
        A = onnx.AttributeProto
        if a.ref_attr_name:
            raise UnsupportedError(f"{where}: attribute {a.name!r} refers to a function attribute")
        if a.type == A.GRAPH:
            return self.graph(a.g, scope)
        if a.type == A.GRAPHS:
            return [self.graph(g, scope) for g in a.graphs]
        if a.type == A.TENSOR:
            return self._attr_array(a.t, f"{where} attribute {a.name!r}")
        if a.type == A.TENSORS:
            return [self._attr_array(t, f"{where} attribute {a.name!r}") for t in a.tensors]
        if a.type == A.TYPE_PROTO:
            kind, dtype, _ = self._type(a.tp, f"{where} attribute {a.name!r}", strict=True)
            return f"{kind}:{dtype}"  # e.g. "sequence:float32"
        if a.type in (A.SPARSE_TENSOR, A.SPARSE_TENSORS, A.TYPE_PROTOS):
            raise UnsupportedError(f"{where}: attribute {a.name!r} is of a kind braze does not support "
                                   f"({A.AttributeType.Name(a.type)})")
        return onnx.helper.get_attribute_value(a)

    def _attr_array(self, tp: onnx.TensorProto, what: str) -> torch.Tensor:
        """A tensor attribute's value. NOTE: an attribute keeps no DType, and an emulated type's tensor would
        pass for its storage dtype: those are refused (initializers carry them)."""
        value, dtype = self._array(tp, what)
        if dtype.emulated:
            raise UnsupportedError(f"{self.where}: {what} is a tensor of {dtype}, which braze takes as an "
                                   "initializer but not as an attribute")
        return value

    def _array(self, tp: onnx.TensorProto, what: str) -> tuple[torch.Tensor, DType]:
        """The tensor's value (an emulated type's in its storage dtype) and its DType."""
        if tp.data_location == onnx.TensorProto.EXTERNAL and not tp.raw_data:
            location = next((e.value for e in tp.external_data if e.key == "location"), "?")
            raise ModelError(f"{self.where}: {what} keeps its data in external file {location!r}; "
                             "parse the model from its file path, or pass base_dir")
        try:
            array = onnx.numpy_helper.to_array(tp)
        except Exception as e:
            raise ModelError(f"{self.where}: {what} cannot be read: {e}") from None
        try:
            return to_torch(array), DType.from_numpy(array.dtype)
        except TypeError:
            raise UnsupportedError(f"{self.where}: {what} has element type "
                                   f"{onnx.TensorProto.DataType.Name(tp.data_type)}, which braze does not support") from None

    def _value_type(self, vi: onnx.ValueInfoProto, what: str, strict: bool = True):
        """(kind, dtype, shape) of a declared value; with strict=False a type braze cannot read is left unknown."""
        if not vi.type.WhichOneof("value") and not strict:
            return TENSOR, None, None
        return self._type(vi.type, what, strict)

    def _type(self, tp: onnx.TypeProto, what: str, strict: bool):
        which = tp.WhichOneof("value")
        if which == "tensor_type":
            return (TENSOR, *self._tensor_type(tp.tensor_type, what, strict))
        inner = tp.sequence_type.elem_type if which == "sequence_type" else tp.optional_type.elem_type
        inner_kind = inner.WhichOneof("value")
        if which == "sequence_type" and inner_kind == "tensor_type":
            return (SEQUENCE, *self._tensor_type(inner.tensor_type, what, strict))
        if which == "optional_type" and inner_kind in ("tensor_type", "sequence_type"):
            kind, dtype, shape = self._type(inner, what, strict)
            if kind in (TENSOR, SEQUENCE):
                return (OPTIONAL_TENSOR if kind == TENSOR else OPTIONAL_SEQUENCE), dtype, shape
        if not strict:
            return TENSOR, None, None
        described = which or "value of no type"
        if which in ("sequence_type", "optional_type"):
            described = f"{which.removesuffix('_type')} of {inner_kind or 'nothing'}"
        raise UnsupportedError(f"{self.where}: {what} is a {described}; braze supports tensors, sequences of "
                               "tensors and optionals of those")

    def _tensor_type(self, tt: onnx.TypeProto.Tensor, what: str, strict: bool):
        elem = tt.elem_type
        dtype = None
        if elem != onnx.TensorProto.UNDEFINED:
            dtype = onnx_dtype(elem)
            if dtype is None and strict:
                raise UnsupportedError(f"{self.where}: {what} has element type "
                                       f"{onnx.TensorProto.DataType.Name(elem)}, which braze does not support")
        if not tt.HasField("shape"):
            return dtype, None
        dims: list[int | str | None] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                # NOTE: -1 is some exporters' dynamic dim; an input's other negatives are refused on load, and a
                # computed value's are a claim its op's inference settles
                dims.append(None if d.dim_value < 0 else int(d.dim_value))
            elif d.HasField("dim_param"):
                dims.append(d.dim_param)
            else:
                dims.append(None)
        return dtype, tuple(dims)


def onnx_dtype(elem_type: int) -> DType | None:
    try:
        return DType.from_numpy(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (TypeError, KeyError, ValueError):
        return None


def translate(model: onnx.ModelProto, where: str) -> Graph:
    opsets = model_opsets(model, where)
    find_unsupported(model, opsets, where)
    graph = Translator(opsets, where).graph(model.graph)
    graph.verify()
    _refuse_lacking_outputs(model, graph, where)
    return graph


def _refuse_lacking_outputs(model: onnx.ModelProto, graph: Graph, where: str) -> None:
    """A graph output declared of an element type braze lacks (complex64, string) while its op makes another: the
    declaration is contradicted (as onnxruntime and the full checker say), and braze cannot keep it. Where the op
    cannot be inferred, or does make that type, its own error comes at build time, saying more."""
    lacking = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.output
               if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type
               and onnx_dtype(vi.type.tensor_type.elem_type) is None}
    if not lacking:
        return
    probe = graph.copy()
    try:
        infer_shapes(probe)
    except BrazeError:
        return
    for t in probe.outputs:
        if t.name in lacking and t.dtype is not None:
            raise ModelError(f"{where}: graph output {t.name!r} is declared {elem_name(lacking[t.name])} in the model, "
                             f"but its op makes {t.dtype}; braze does not support {elem_name(lacking[t.name])}")


