"""The ONNX frontend: a model file, bytes or ModelProto becomes a braze Graph.

Opsets 11 to the newest the installed `onnx` knows are supported, older ones converted where they use op
versions braze lacks (opsets.py); initializers and external data are read; graph inputs keep their
symbolic dims until the builder is given shapes.
"""

from __future__ import annotations

import os

import onnx

from ...errors import ModelError, UnsupportedError
from ...ir import Graph
from .loader import ModelSource, check_model, load_model
from .opsets import upgrade
from .translate import model_opsets, translate
from .unsupported import find_unsupported


def parse_onnx(model: ModelSource, *, base_dir: str | os.PathLike | None = None, check: bool = True) -> Graph:
    """Parse an ONNX model (a path, bytes or an onnx.ModelProto) into a braze Graph.

    Raises ModelError for anything that is not a valid ONNX model and UnsupportedError, listing
    them all, for ops braze does not implement (even when the model also fails ONNX checking).
    """
    proto, where = load_model(model, base_dir)
    if check:
        try:
            proto = check_model(proto, where)
        except ModelError as invalid:
            _unsupported_first(proto, where, invalid)
            raise
    proto = upgrade(proto, where)  # old opsets (the classic model zoo's) become one braze implements
    return translate(proto, where)


def _unsupported_first(proto: onnx.ModelProto, where: str, invalid: ModelError) -> None:
    """Report the ops braze does not support, if any, rather than the checker's complaint: a model that
    fails checking often does so because of them (the TorchScript exporter's ATen fallback writes string
    Constants beside its ATen nodes). A model with local functions is left to the checker's error, since
    its function calls only look unsupported before they are inlined."""
    if proto.functions:
        return
    try:
        find_unsupported(proto, model_opsets(proto, where), where)
    except ModelError:
        return
    except UnsupportedError as unsupported:
        raise UnsupportedError(f"{unsupported}\n(it also {str(invalid).removeprefix(where + ' ')})") from None


__all__ = ["parse_onnx"]
