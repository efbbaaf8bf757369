"""The activation table: every activation a fused layer (FusedConv, FusedGemm, QConv, QGemm) may apply in
its epilogue, named once. A fused layer carries one as two attributes, `activation` (the name) and
`act_params` (its constants, in the table's order).

From the table derive: `activate()` (the references), the passes' recognition of an activation node
(passes/util.py: which op, which attributes or inputs give its constants), and each backend's subset (the
Triton GEMM's epilogue codes, oneDNN's post-ops), which backends build from `ACTIVATION_TABLE` and check
against it with `subset()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from .activation import gelu_onnx
from .kinds import DOMAIN, Kind


@dataclass(frozen=True)
class Activation:
    """One activation: `fn(x, *params)` computes it as `op` does, NaN and infinities included."""

    name: str  # the value of a fused layer's `activation` attribute
    meaning: str  # the formula, in the names of `params`
    fn: Callable[..., torch.Tensor]
    op: str | None = None  # the op a node computing it has (None: no op, "none")
    domain: str = ""  # the op's domain
    params: tuple[tuple[str, float], ...] = ()  # act_params in order: the op's attribute names and defaults
    attrs: tuple[tuple[str, str], ...] = ()  # attributes of the op that select this activation, and their values
    params_as_inputs_since: int | None = None  # from this opset on, the op takes `params` as inputs 1, 2, ...

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.params)

    @property
    def code(self) -> int:
        """A small integer naming the activation inside a kernel (its position in the table). NOTE: plans
        store names, never codes, so the table's order is free to change."""
        return ACTIVATIONS.index(self.name)


def _clip(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    if low == -math.inf and high == math.inf:  # a Clip without bounds
        return x
    return torch.clamp(x, None if low == -math.inf else low, None if high == math.inf else high)


_TABLE = (
    Activation("none", "x", lambda x: x),
    Activation("relu", "max(x, 0)", torch.relu, op="Relu"),
    Activation("clip", "min(max(x, min), max)", _clip, op="Clip", params=(("min", -math.inf), ("max", math.inf)),
               params_as_inputs_since=11),
    Activation("leaky_relu", "x if x >= 0 else alpha * x", lambda x, alpha: torch.where(x < 0, x * alpha, x),
               op="LeakyRelu", params=(("alpha", 0.01),)),
    Activation("sigmoid", "1 / (1 + exp(-x))", torch.sigmoid, op="Sigmoid"),
    Activation("tanh", "tanh(x)", torch.tanh, op="Tanh"),
    Activation("hardswish", "x * clamp(x / 6 + 1/2, 0, 1)", lambda x: x * torch.clamp(x * (1 / 6) + 0.5, 0, 1),
               op="HardSwish"),
    Activation("hardsigmoid", "clamp(alpha * x + beta, 0, 1)",
               lambda x, alpha, beta: torch.clamp(x * alpha + beta, 0, 1), op="HardSigmoid",
               params=(("alpha", 0.2), ("beta", 0.5))),
    Activation("silu", "x * sigmoid(x)", lambda x: x * torch.sigmoid(x), op=Kind.SILU, domain=DOMAIN),
    Activation("gelu", "x / 2 * (1 + erf(x / sqrt(2)))", gelu_onnx, op="Gelu", attrs=(("approximate", "none"),)),
    Activation("gelu_tanh", "x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))",
               lambda x: gelu_onnx(x, "tanh"), op="Gelu", attrs=(("approximate", "tanh"),)),
    Activation("elu", "x if x >= 0 else alpha * (exp(x) - 1)",
               lambda x, alpha: torch.where(x < 0, alpha * torch.expm1(x), x), op="Elu", params=(("alpha", 1.0),)),
)

ACTIVATION_TABLE: dict[str, Activation] = {a.name: a for a in _TABLE}
ACTIVATIONS: tuple[str, ...] = tuple(ACTIVATION_TABLE)
ACTIVATION_OPS: tuple[str, ...] = tuple(dict.fromkeys(a.op for a in _TABLE if a.op is not None))


def activate(x: torch.Tensor, kind: str, params: list[float]) -> torch.Tensor:
    """Apply the activation named `kind` with its constants `params` (ACTIVATION_TABLE says which)."""
    a = ACTIVATION_TABLE.get(kind)
    if a is None:
        raise ValueError(f"unknown activation {kind!r} (known: {', '.join(ACTIVATIONS)})")
    if len(params) != len(a.params):
        raise ValueError(f"activation {kind!r} takes {len(a.params)} act_params "
                         f"({', '.join(a.param_names) or 'none'}), got {len(params)}")
    return a.fn(x, *params)


def subset(names: Iterable[str], backend: str) -> frozenset[str]:
    """`names` (a backend's subset of the table) as a set, refused if one is not in the table."""
    found = frozenset(names)
    unknown = sorted(found - set(ACTIVATIONS))
    if unknown:
        raise ValueError(f"{backend} names activations the table lacks: {', '.join(unknown)}")
    return found
