"""The ONNX frontend: a model file, bytes or ModelProto becomes a braze Graph.

Opsets 11 to the newest the installed `onnx` knows are supported; initializers and external
data are read; graph inputs keep their symbolic dims until the builder is given shapes.
"""

from __future__ import annotations

import os

from ...ir import Graph
from .loader import ModelSource, check_model, load_model
from .translate import translate


def parse_onnx(model: ModelSource, *, base_dir: str | os.PathLike | None = None, check: bool = True) -> Graph:
    """Parse an ONNX model (a path, bytes or an onnx.ModelProto) into a braze Graph.

    Raises ModelError for anything that is not a valid ONNX model and UnsupportedError, listing
    them all, for ops braze does not implement.
    """
    proto, where = load_model(model, base_dir)
    if check:
        proto = check_model(proto, where)
    return translate(proto, where)


__all__ = ["parse_onnx"]
