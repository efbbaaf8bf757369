"""The op table: every OpDef braze knows, looked up by domain, name and opset. A node's op traits
(OpDef.elementwise, keeps_layout, view, commutes_with_quantize) are asked through `find`."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from ..errors import UnsupportedError
from ..ir import Node
from .opdef import OpDef

ONNX_DOMAINS = ("", "ai.onnx")


def _domain(domain: str) -> str:
    return "" if domain in ONNX_DOMAINS else domain


class Registry:
    def __init__(self, defs: Iterable[OpDef]):
        self._by_name: dict[tuple[str, str], list[OpDef]] = defaultdict(list)
        for d in defs:
            versions = self._by_name[(_domain(d.domain), d.name)]
            if any(v.since == d.since for v in versions):
                raise ValueError(f"op {d.key} since opset {d.since} is defined twice")
            versions.append(d)
        for versions in self._by_name.values():
            versions.sort(key=lambda d: d.since)

    def resolve(self, name: str, domain: str, opset: int) -> OpDef | None:
        """The definition a model of this opset means by `name`: the newest one not after `opset`."""
        found = None
        for d in self._by_name.get((_domain(domain), name), ()):
            if d.since <= opset:
                found = d
        return found

    def versions(self, name: str, domain: str = "") -> list[OpDef]:
        return list(self._by_name.get((_domain(domain), name), ()))

    def for_node(self, node: Node) -> OpDef:
        """The definition a node follows (its `version` is the definition's `since`)."""
        versions = self._by_name.get((_domain(node.domain), node.op), [])
        for d in versions:
            if d.since == node.version:
                return d
        if versions and node.version == 0:  # nodes made by braze itself follow the newest definition
            return versions[-1]
        raise UnsupportedError(f"node {node.name!r}: braze has no op {node.op!r} (version {node.version})")

    def find(self, node: Node) -> OpDef | None:
        """The definition a node follows, or None where braze has none (so it has no trait)."""
        try:
            return self.for_node(node)
        except UnsupportedError:
            return None

    def knows(self, node: Node) -> bool:
        """Whether a definition (and so a reference implementation) exists for `node`."""
        return self.find(node) is not None

    def names(self, domain: str = "") -> list[str]:
        return sorted(name for (dom, name) in self._by_name if dom == _domain(domain))

    def __contains__(self, name: str) -> bool:
        return ("", name) in self._by_name
