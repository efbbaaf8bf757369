"""Reading an ONNX model from a path, bytes, a ModelProto or a `zoo:NAME` string, and checking it,
with clean errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import onnx
from onnx import inliner
from google.protobuf.message import DecodeError

from ...errors import ModelError

ModelSource = str | os.PathLike | bytes | bytearray | onnx.ModelProto

ZOO_PREFIX = "zoo:"


def load_model(source: ModelSource, base_dir: str | os.PathLike | None = None) -> tuple[onnx.ModelProto, str]:
    """Return the ModelProto (external data loaded) and a short description of where it came from."""
    if isinstance(source, onnx.ModelProto):
        model, where = source, "model"
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
    return model


def _load_external(model: onnx.ModelProto, base_dir: Path, where: str) -> None:
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    if not any(uses_external_data(t) for g in all_graphs(model.graph) for t in g.initializer):
        return
    try:
        load_external_data_for_model(model, str(base_dir))
    except (OSError, ValueError) as e:
        raise ModelError(f"{where}: could not read the external data of its weights from {base_dir}: {e}") from None


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
