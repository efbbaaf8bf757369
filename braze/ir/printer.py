"""A readable text form of a Graph, one line per node, for logs, debugging and `BRAZE_DEBUG` dumps."""

from __future__ import annotations

from typing import Any

import torch

from .graph import Graph, Tensor


def format_graph(graph: Graph, indent: str = "") -> str:
    lines = [f"{indent}graph {graph.name} (opset {graph.opset}) {{"]
    for t in graph.inputs:
        lines.append(f"{indent}  input  %{t.name}: {t.type_str()}")
    for node in graph.nodes:
        args = ", ".join(_operand(t) for t in node.inputs)
        outs = ", ".join(f"%{t.name}: {t.type_str()}" for t in node.outputs)
        attrs = ", ".join(f"{k}={_attr(v)}" for k, v in node.attrs.items() if not isinstance(v, Graph))
        op = node.op if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op}"
        line = f"{indent}  {outs} = {op}({args})"
        if attrs:
            line += f" {{{attrs}}}"
        lines.append(f"{line}  # {node.name}")
        for key, value in node.attrs.items():
            if isinstance(value, Graph):
                lines.append(f"{indent}    {key}:")
                lines.append(format_graph(value, indent + "    "))
    outs = ", ".join(_operand(t) for t in graph.outputs)
    lines.append(f"{indent}  return {outs}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def _operand(t: Tensor | None) -> str:
    if t is None:
        return "_"
    if t.is_constant and t.value is not None and t.value.numel() <= 4:
        return f"%{t.name}={_values(t.value)}"
    return f"%{t.name}"


def _values(value: torch.Tensor) -> str:
    flat = value.flatten().tolist()
    return str(flat[0]) if value.dim() == 0 else str(flat)


def _attr(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor<{str(value.dtype).removeprefix('torch.')}{list(value.shape)}>"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"[{', '.join(map(str, value[:8]))}, ...]"
    return str(value)
