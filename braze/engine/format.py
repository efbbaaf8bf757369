"""The engine file: a small binary header, a JSON plan and safetensors weights.

    offset  size  field
    0       8     magic b"BRAZENG\\0"
    8       4     format version (uint32, little endian)
    12      32    sha256 of everything after this field
    44      4     header length H (uint32)
    48      H     header JSON: braze version, device signature, plan and weights sizes
    48+H    P     plan JSON (utf-8)
    48+H+P  W     weights (safetensors)

Reading checks, in this order, the magic, the format version, the length and the checksum,
before any byte of the plan is interpreted; then the header's and the plan's fields (validate.py).
Nothing in the file is executed: JSON and safetensors carry data only.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .. import __version__
from ..errors import EngineFormatError
from .plan import Plan
from .validate import check_document, check_header

MAGIC = b"BRAZENG\0"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sI32sI")


def serialize(plan: Plan) -> bytes:
    doc, weights = plan.to_json()
    plan_bytes = json.dumps(doc, separators=(",", ":")).encode()
    weight_bytes = save_safetensors(_own_storage(weights)) if weights else b""
    header = json.dumps({
        "braze": __version__,
        "device": plan.device,
        "plan_size": len(plan_bytes),
        "weights_size": len(weight_bytes),
    }, separators=(",", ":")).encode()
    body = struct.pack("<I", len(header)) + header + plan_bytes + weight_bytes
    digest = hashlib.sha256(body).digest()
    return MAGIC + struct.pack("<I", FORMAT_VERSION) + digest + body


def read_header(data: bytes) -> dict[str, Any]:
    """Check the envelope (magic, version, length, checksum) and return the header."""
    if len(data) < _PREFIX.size:
        raise EngineFormatError(f"not a braze engine: only {len(data)} bytes, shorter than an engine header")
    magic, version, digest, header_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise EngineFormatError(f"not a braze engine: the file starts with {magic!r}, not {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise EngineFormatError(
            f"engine format version {version} is not the one this braze ({__version__}) reads "
            f"(version {FORMAT_VERSION}); rebuild the engine with this braze")
    end = _PREFIX.size + header_len
    if end > len(data):
        raise EngineFormatError(f"engine file is truncated: {len(data)} bytes, the header alone needs {end}")
    try:
        header = json.loads(data[_PREFIX.size:end])
    except (ValueError, RecursionError):
        header = None
    sizes = [header.get(k) for k in ("plan_size", "weights_size")] if isinstance(header, dict) else []
    expected = end + sum(sizes) if len(sizes) == 2 and all(type(n) is int and n >= 0 for n in sizes) else None
    if expected is not None and len(data) < expected:
        raise EngineFormatError(f"engine file is truncated: {len(data)} bytes of the {expected} it should have")
    if hashlib.sha256(data[44:]).digest() != digest:
        raise EngineFormatError("engine file is corrupted: its checksum does not match its contents")
    if header is None:
        raise EngineFormatError("engine file is malformed: its header is not JSON")
    check_header(header)
    if expected != len(data):
        raise EngineFormatError(f"engine file is malformed: its header describes {expected} bytes, the file has "
                                f"{len(data)}")
    return header


def deserialize(data: bytes) -> tuple[dict[str, Any], Plan]:
    header = read_header(data)
    start = _PREFIX.size + struct.unpack_from("<I", data, 44)[0]
    plan_end = start + int(header["plan_size"])
    try:
        doc = json.loads(data[start:plan_end])
        weights = load_safetensors(bytes(data[plan_end:])) if header["weights_size"] else {}
    except Exception as e:
        raise EngineFormatError(f"engine file is malformed: {e}") from None
    try:
        check_document(doc)
        return header, Plan.from_json(doc, weights)
    except RecursionError:
        raise EngineFormatError("engine plan is malformed: its JSON is nested too deeply") from None


def _own_storage(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory or are not contiguous: give each its own."""
    seen: set[int] = set()
    out = {}
    for name, t in weights.items():
        t = t.detach().cpu()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or not t.is_contiguous() or t.storage_offset() != 0 or t.untyped_storage().nbytes() != t.nbytes:
            t = t.contiguous().clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def is_engine_file(path) -> bool:
    """Whether the file at `path` starts with the engine magic (reads only those bytes)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False
