"""Reading an ONNX model from a path, bytes, a ModelProto or a `zoo:NAME` string, and checking it,
with clean errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import onnx
from onnx import inliner
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from ...errors import ModelError

ModelSource = str | os.PathLike | bytes | bytearray | onnx.ModelProto

ZOO_PREFIX = "zoo:"
NOT_AN_ELEMENT_TYPE = "which is not an ONNX element type (a TensorProto.DataType code)"


def load_model(source: ModelSource, base_dir: str | os.PathLike | None = None) -> tuple[onnx.ModelProto, str]:
    """Return the ModelProto (external data loaded) and a short description of where it came from."""
    if isinstance(source, onnx.ModelProto):
        model, where = source, "model"
        check_text(model, where)
        check_declarations(model, where)
        if base_dir is not None:
            _load_external(model, Path(base_dir), where)
        return model, where
    if isinstance(source, (bytes, bytearray)):
        model = _decode(bytes(source), "model bytes")
        if base_dir is not None:
            _load_external(model, Path(base_dir), "model bytes")
        return model, "model bytes"
    if isinstance(source, str) and source.startswith(ZOO_PREFIX):
        from ... import zoo

        return zoo.load(source[len(ZOO_PREFIX):]), source
    path = Path(source)
    if not path.exists():
        raise ModelError(f"no such model file: {path}")
    if path.is_dir():
        raise ModelError(f"{path} is a directory, not an ONNX model file")
    model = _decode(path.read_bytes(), str(path))
    _load_external(model, Path(base_dir) if base_dir is not None else path.parent, str(path))
    return model, str(path)


def check_text(message: Message, where: str, path: str = "") -> None:
    """Refuse a string field that is not UTF-8, as ONNX requires them to be: protobuf hands such a field back as
    bytes, which would reach onnx's own functions and braze's messages as the wrong type."""
    for field, value in message.ListFields():
        if field.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE):
            continue
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        values = value if repeated else [value]
        for i, item in enumerate(values):
            at = f"{path}.{field.name}" + (f"[{i}]" if repeated else "")
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                check_text(item, where, at)
            elif isinstance(item, bytes):
                raise ModelError(f"{where}: {at.lstrip('.')} is not valid UTF-8 text ({item[:40]!r}); "
                                 "ONNX strings (names, op types, domains) must be UTF-8")


def _decode(data: bytes, where: str) -> onnx.ModelProto:
    if not data:
        raise ModelError(f"{where}: empty input, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelError(f"{where} is not an ONNX model (protobuf could not parse it: {e}); "
                         "is the file truncated, or of another format?") from None
    if not model.HasField("graph"):
        raise ModelError(f"{where} is not an ONNX model: it parses as protobuf but holds no graph")
    check_text(model, where)
    check_declarations(model, where)
    return model


def _load_external(model: onnx.ModelProto, base_dir: Path, where: str) -> None:
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    external = [t for t in _all_tensors(model) if uses_external_data(t)]
    if not external:
        return
    for tensor in external:
        _check_external(tensor, base_dir, where)
    try:
        load_external_data_for_model(model, str(base_dir))
    except (OSError, ValueError, onnx.checker.ValidationError) as e:
        raise ModelError(f"{where}: could not read the external data of its weights from {base_dir}: {e}") from None


def _check_external(tensor: onnx.TensorProto, base_dir: Path, where: str) -> None:
    """An external data file must be a regular file inside the model's folder (no absolute path, no `..` out of
    it, no symbolic link), and hold the bytes the tensor's offset and length name."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    what = f"{where}: tensor {tensor.name!r} keeps its data in external file {location!r}"
    if not location:
        raise ModelError(f"{what}, but names no location")
    if Path(location).is_absolute() or os.path.isabs(location):
        raise ModelError(f"{what}, an absolute path: braze reads external data only from the model's folder "
                         f"{base_dir}, by a relative path")
    path = base_dir / location
    if path.is_symlink():
        raise ModelError(f"{what}, a symbolic link: braze reads external data only from regular files in the "
                         f"model's folder {base_dir}")
    if ".." in Path(location).parts or not path.resolve().is_relative_to(base_dir.resolve()):
        raise ModelError(f"{what}, which leaves the model's folder {base_dir}: braze reads external data only "
                         "from inside it")
    if not path.exists():
        raise ModelError(f"{what}, which does not exist in {base_dir}")
    if not path.is_file():
        raise ModelError(f"{what}, which is not a regular file")
    try:
        offset, length = int(info.get("offset", 0)), int(info["length"]) if "length" in info else None
    except ValueError:
        raise ModelError(f"{what} at offset {info.get('offset')!r}, length {info.get('length')!r}: "
                         "those are not integers") from None
    size = path.stat().st_size
    if offset < 0 or (length is not None and length < 0) or offset + (length or 0) > size:
        raise ModelError(f"{what} at offset {offset}, length {length}, past the end of the file ({size} bytes)")


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Initializers and tensor attributes of every graph of the model."""
    for graph in all_graphs(model.graph):
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == onnx.AttributeProto.TENSORS:
                    yield from attr.tensors


def is_element_type(elem_type: int) -> bool:
    """Whether `elem_type` is one of ONNX's TensorProto.DataType codes (UNDEFINED included)."""
    return elem_type in onnx.TensorProto.DataType.values()


def elem_name(elem_type: int) -> str:
    """`float32`, `int64`, `?` for none, `<element type 55>` for a code ONNX does not define."""
    if elem_type == onnx.TensorProto.UNDEFINED:
        return "?"
    if not is_element_type(elem_type):
        return f"<element type {elem_type}>"
    name = onnx.TensorProto.DataType.Name(elem_type).lower()
    return {"float": "float32", "double": "float64"}.get(name, name)


def check_declarations(model: onnx.ModelProto, where: str) -> None:
    """Refuse element types ONNX does not define in every declared value and tensor, and negative dims (but -1,
    some exporters' dynamic dim) in graph inputs and tensors, by name, before anything reads them. Dims declared
    for computed values are claims the ops' shape inference settles (braze/build/checks.py)."""
    for graph in all_graphs(model.graph):
        inside = "" if graph is model.graph else f" of graph {graph.name!r}"
        for kind, values in (("input", graph.input), ("graph output", graph.output), ("value", graph.value_info)):
            for vi in values:
                _check_type(vi.type, f"{where}: {kind} {vi.name!r}{inside}", sizes=kind == "input")
        for tensor in graph.initializer:
            _check_tensor(tensor, f"{where}: initializer {tensor.name!r}{inside}")
        for node in graph.node:
            for attr in node.attribute:
                for tensor in (attr.t,) if attr.type == onnx.AttributeProto.TENSOR else attr.tensors:
                    _check_tensor(tensor, f"{where}: node {node.name or node.op_type!r} attribute {attr.name!r}")


def _check_type(tp: onnx.TypeProto, what: str, sizes: bool) -> None:
    """`sizes`: the declared dims are the value's (a graph input's), not a claim the ops' inference checks."""
    which = tp.WhichOneof("value")
    if which in ("sequence_type", "optional_type"):
        _check_type(getattr(tp, which).elem_type, what, sizes)
    elif which == "tensor_type":
        if not is_element_type(tp.tensor_type.elem_type):
            raise ModelError(f"{what} has element type {tp.tensor_type.elem_type}, {NOT_AN_ELEMENT_TYPE}")
        for i, d in enumerate(tp.tensor_type.shape.dim if sizes else ()):
            if d.HasField("dim_value") and d.dim_value < -1:
                raise ModelError(f"{what} declares dim {i} as {d.dim_value}; a dim is a size >= 0, a symbolic "
                                 "name, or left unset")


def _check_tensor(tensor: onnx.TensorProto, what: str) -> None:
    if not is_element_type(tensor.data_type):
        raise ModelError(f"{what} has element type {tensor.data_type}, {NOT_AN_ELEMENT_TYPE}")
    if any(d < 0 for d in tensor.dims):
        raise ModelError(f"{what} has dims {list(tensor.dims)}; a tensor's dims are sizes >= 0")


def all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """`graph` and every subgraph in its nodes' attributes (If, Loop, Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from all_graphs(g)


def check_model(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """Run the ONNX checker; inline model-local functions. Returns the model to translate."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()
        raise ModelError(f"{where} fails ONNX checking: {first[0] if first else e}") from None
    except ValueError as e:  # models over 2 GB cannot be checked in memory
        if "2GB" not in str(e) and "2 GB" not in str(e):
            raise ModelError(f"{where} fails ONNX checking: {e}") from None
    if model.functions:
        model = inliner.inline_local_functions(model)
    return model
