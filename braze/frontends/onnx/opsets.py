"""Models of old opsets (the classic model zoo's 7 to 9, and older) brought to an opset braze implements.

braze implements each op from some version on (`since` in braze/ops). A model whose default-domain opset
is below TARGET and uses an op version braze lacks (Dropout-7, Slice-1, Max-6, Add-6 with its legacy
broadcast, ...) is converted to opset TARGET with onnx.version_converter. Where the converter is wrong or
refuses, braze helps per op (each found by converting single-op models and comparing with onnxruntime):

- legacy broadcast (opset < 7: `broadcast=1` with `axis`): the converter only takes numpy-style suffix
  broadcasting, so B first gets the trailing ones that align it at `axis` (an Unsqueeze-1);
- ops it has no adapter for (the comparisons and logical ops of opset 1, Cast-1 with its type by name, Pad-1,
  the recurrent ops before opset 7, which only lose `output_sequence` there)
  or fails on (Dropout with its mask output; the arithmetic of opset 1, whose adapters need every input's
  shape) are set aside in a private domain while it runs and put back as the target opset's op, which means
  the same once broadcasting is explicit (Dropout is the identity at inference, as in onnxruntime).

The converter is not asked past opset 10: going on to 11 it rewrites Upsample's linear mode into a Resize
with other coordinates (a wrong answer). Models that braze runs at their own opset are left as they are.
What was converted is logged (logger `braze.frontends.onnx.opsets`, level INFO) and, in a build, is one of
the Builder's progress lines (`braze build` prints it).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Callable, Iterator

import onnx
from onnx import helper, version_converter

from ...errors import ModelError, UnsupportedError, first_line
from ...ops import REGISTRY
from .loader import all_graphs
from .unsupported import ONNX_DOMAINS

TARGET = 10
_HOLD = "braze.legacy"  # the private domain that keeps nodes out of the converter's way
_HELD_OPS = {"Equal", "Greater", "Less", "And", "Or", "Xor", "Dropout", "Add", "Sub", "Mul", "Div", "Pow", "Cast",
             "Pad", "LSTM", "GRU", "RNN"}
# attributes the target's op still has, the others' dropped (consumed_inputs, is_test, broadcast made explicit)
_KEEP_ATTRS = {"Dropout": {"ratio"}, "Cast": {"to"}, "Pad": {"pads", "mode", "value"}}
_DROP_ATTRS = {op: {"output_sequence"} for op in ("LSTM", "GRU", "RNN")}  # ops that keep all but these
_LEGACY_BROADCAST = {"Add", "Sub", "Mul", "Div", "Pow", "Equal", "Greater", "Less", "And", "Or", "Xor"}

log = logging.getLogger(__name__)


class _Forward(logging.Handler):
    def __init__(self, say: Callable[[str], None]):
        super().__init__(logging.INFO)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        self.say(record.getMessage())


@contextlib.contextmanager
def reported_to(say: Callable[[str], None]) -> Iterator[None]:
    """Hand what conversion logs to `say` (the Builder's progress lines) while a model is parsed."""
    handler, level = _Forward(say), log.level
    log.addHandler(handler)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def default_opset(model: onnx.ModelProto) -> int | None:
    return next((e.version for e in model.opset_import if e.domain in ONNX_DOMAINS), None)


def lacking(model: onnx.ModelProto, opset: int) -> Counter[str]:
    """The default-domain ops of `model` (subgraphs included) that braze lacks at `opset`, as `Op-version`."""
    found: Counter[str] = Counter()
    for graph in all_graphs(model.graph):
        for node in graph.node:
            if node.domain in ONNX_DOMAINS and REGISTRY.resolve(node.op_type, "", opset) is None:
                try:
                    since = onnx.defs.get_schema(node.op_type, opset, "").since_version
                except onnx.defs.SchemaError:
                    continue  # not an ONNX op at this opset: find_unsupported reports it
                found[f"{node.op_type}-{since}"] += 1
    return found


def upgrade(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """`model` converted to opset TARGET when it uses op versions braze lacks, else `model` itself."""
    opset = default_opset(model)
    if opset is None or opset >= TARGET:
        return model
    old = lacking(model, opset)
    if not any(REGISTRY.resolve(op.rsplit("-", 1)[0], "", TARGET) is not None for op in old):
        return model  # nothing conversion would give braze: find_unsupported reports the ops
    listing = ", ".join(f"{op} x{n}" for op, n in sorted(old.items()))
    work = onnx.ModelProto()
    work.CopyFrom(model)
    if opset < 7:
        _explicit_broadcast(work, where)
    types = _elem_types(work)
    held = _hold(work)
    work = _with_shapes(work)  # NOTE: the broadcasting ops' adapters need their inputs' shapes
    try:
        converted = version_converter.convert_version(work, TARGET)
    except Exception as e:  # the converter raises bare RuntimeErrors and assertion texts
        raise UnsupportedError(f"{where}: opset {opset} model with op versions braze lacks ({listing}); "
                               f"onnx.version_converter could not bring it to opset {TARGET}: "
                               f"{first_line(e)}") from None
    _release(converted, held, types)
    log.info("%s: converted from opset %d to %d for the op versions braze lacks (%s)", where, opset, TARGET, listing)
    return converted


def _hold(model: onnx.ModelProto) -> int:
    """Move the nodes the converter cannot take into the private domain; returns how many."""
    n = 0
    for graph in all_graphs(model.graph):
        for node in graph.node:
            if node.domain in ONNX_DOMAINS and node.op_type in _HELD_OPS:
                node.domain = _HOLD
                n += 1
                for a in node.attribute:
                    if node.op_type == "Pad" and a.name == "paddings":  # Pad-1's name for Pad-2's pads
                        a.name = "pads"
                    if node.op_type == "Cast" and a.name == "to" and a.type == onnx.AttributeProto.STRING:
                        a.CopyFrom(helper.make_attribute("to", _type_named(node, a.s)))
    if n:
        model.opset_import.append(helper.make_opsetid(_HOLD, 1))
    return n


def _type_named(node: onnx.NodeProto, name: bytes) -> int:
    """Cast-1's `to`, a TensorProto.DataType by name ("FLOAT"), as its number."""
    try:
        return onnx.TensorProto.DataType.Value(name.decode())
    except (ValueError, UnicodeDecodeError):
        known = ", ".join(n for n in onnx.TensorProto.DataType.keys() if n != "UNDEFINED")
        raise ModelError(f"node {node.name!r} (Cast, opset 1): attribute 'to' is {name!r}, not the name of an "
                         f"ONNX tensor type ({known})") from None


def _release(model: onnx.ModelProto, held: int, types: dict[str, int]) -> None:
    """Put the held nodes back as the target opset's ops, without the attributes it no longer has. A Dropout's
    mask had its input's type before opset 10, and is bool from then on: a Cast gives it the old type."""
    if not held:
        return
    for graph in all_graphs(model.graph):
        nodes = []
        for node in graph.node:
            nodes.append(node)
            if node.domain != _HOLD:
                continue
            node.domain = ""
            if node.op_type in _DROP_ATTRS:
                attrs = [a for a in node.attribute if a.name not in _DROP_ATTRS[node.op_type]]
            else:
                attrs = [a for a in node.attribute if a.name in _KEEP_ATTRS.get(node.op_type, set())]
            del node.attribute[:]
            node.attribute.extend(attrs)
            if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
                if node.input[0] not in types:
                    raise UnsupportedError(f"Dropout node {node.name!r}: the type of its input {node.input[0]!r} "
                                           "is not known, so braze cannot give its mask the type of opset < 10")
                mask = node.output[1]
                node.output[1] = f"{mask}__bool"
                nodes.append(helper.make_node("Cast", [node.output[1]], [mask], to=types[node.input[0]]))
        del graph.node[:]
        graph.node.extend(nodes)
    imports = [e for e in model.opset_import if e.domain != _HOLD]
    del model.opset_import[:]
    model.opset_import.extend(imports)


def _explicit_broadcast(model: onnx.ModelProto, where: str) -> None:
    """Opset < 7 broadcasting (`broadcast=1`, B aligned at `axis` of A) made numpy-style: B gets the trailing
    ones that put its dims at `axis` of A, so that suffix alignment means the same."""
    for sub in list(all_graphs(model.graph))[1:]:  # no ranks are known there
        for n in sub.node:
            if n.op_type in _LEGACY_BROADCAST and any(a.name == "axis" for a in n.attribute):
                raise UnsupportedError(f"{where}: node {n.name or n.op_type!r} ({n.op_type}, opset < 7) in a "
                                       "subgraph broadcasts at an axis: braze cannot convert it")
    ranks = _ranks(model, where)
    graph = model.graph
    nodes = []
    made: set[str] = set()
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        legacy = node.op_type in _LEGACY_BROADCAST and "axis" in attrs and attrs.get("broadcast", 0)
        if node.domain in ONNX_DOMAINS and legacy:
            a, b = node.input[0], node.input[1]
            if a not in ranks or b not in ranks:
                raise UnsupportedError(f"{where}: node {node.name or node.op_type!r} ({node.op_type}, opset < 7) "
                                       f"broadcasts {b!r} at axis {attrs['axis']} of {a!r}, whose ranks are "
                                       "not known: braze cannot convert it")
            axis = attrs["axis"] % ranks[a] if ranks[a] else 0
            trailing = ranks[a] - axis - ranks[b]
            if trailing > 0:
                aligned = f"{b}__at_axis_{axis}_of_{a}"
                if aligned not in made:
                    axes = list(range(ranks[b], ranks[b] + trailing))
                    nodes.append(helper.make_node("Unsqueeze", [b], [aligned], axes=axes))
                    made.add(aligned)
                node.input[1] = aligned
            kept = [x for x in node.attribute if x.name != "axis"]
            del node.attribute[:]
            node.attribute.extend(kept)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _ranks(model: onnx.ModelProto, where: str) -> dict[str, int]:
    """The ranks ONNX shape inference finds for the main graph's values."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as e:
        raise ModelError(f"{where}: ONNX shape inference fails on it: {e}") from None
    g = inferred.graph
    ranks = {t.name: len(t.dims) for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.tensor_type.HasField("shape"):
            ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    return ranks


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """The element types ONNX shape inference finds for the values of every graph."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return {}
    types = {}
    for graph in all_graphs(inferred.graph):
        types.update({t.name: t.data_type for t in graph.initializer})
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            if vi.type.tensor_type.elem_type:
                types[vi.name] = vi.type.tensor_type.elem_type
    return types


def _with_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with the value types ONNX shape inference finds (as it is, where inference fails)."""
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:
        return model
