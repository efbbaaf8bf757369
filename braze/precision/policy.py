"""The precision policy: which precisions a build may use, and which layers are pinned to one.

    PrecisionPolicy.parse("fp16,int8")                      # FP16 storage, INT8 where a layer gains from it
    PrecisionPolicy(allowed={Precision.FP16}, op_types={"Softmax": Precision.FP32})

"Allowed" is a permission, as in TensorRT: a layer may run in any allowed precision, and the builder keeps
the fastest candidate (a quantizable layer with a scale gets its INT8 and its float tactics timed). A pin is a
requirement: the layer runs in that precision whatever is faster. The engine has one float storage type, the
lowest float allowed (fp16 or bf16, else fp32); layers pinned to fp32 keep float32 in it, with casts at their
edges. See docs/quantization.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..errors import BrazeError
from ..ir import DType, Node
from ..ops.kinds import Kind


class Precision(str, enum.Enum):
    FP32 = "fp32"
    TF32 = "tf32"  # fp32 storage; matrix products and convolutions may round their inputs to TF32 (CUDA)
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"

    def __str__(self) -> str:
        return self.value


_FLOAT_TYPES = {Precision.FP16: DType.float16, Precision.BF16: DType.bfloat16}
# The ONNX op types a fused layer computes, so that a pin by op type reaches it.
_SOURCE_OPS = {Kind.FUSED_CONV: ("Conv",), Kind.QCONV: ("Conv",), Kind.FUSED_GEMM: ("Gemm", "MatMul"),
               Kind.QGEMM: ("Gemm", "MatMul"), Kind.ATTENTION: ("Softmax",)}
_PIN_TO = (Precision.FP32, Precision.FP16, Precision.BF16, Precision.INT8)


def _precision(value: Any, where: str) -> Precision:
    try:
        return Precision(str(value).strip().lower())
    except ValueError:
        raise BrazeError(f"{where}: {value!r} is not a precision; choose from "
                         f"{', '.join(p.value for p in Precision)}") from None


@dataclass(frozen=True)
class PrecisionPolicy:
    allowed: frozenset[Precision] = frozenset({Precision.FP32})
    layers: Mapping[str, Precision] = field(default_factory=dict)  # layer (ONNX node) name -> pinned precision
    op_types: Mapping[str, Precision] = field(default_factory=dict)  # op type -> pinned precision

    def __post_init__(self) -> None:
        allowed = frozenset(_precision(p, "allowed precisions") for p in self.allowed) | {Precision.FP32}
        object.__setattr__(self, "allowed", allowed)
        if {Precision.FP16, Precision.BF16} <= allowed:
            raise BrazeError("fp16 and bf16 cannot both be allowed: an engine stores its floats in one type")
        for what, pins in (("layer", self.layers), ("op type", self.op_types)):
            checked = {}
            for name, p in dict(pins).items():
                p = _precision(p, f"the precision pinned to {what} {name!r}")
                if p not in _PIN_TO:
                    raise BrazeError(f"{what} {name!r} is pinned to {p}, which is not a layer precision; pin to "
                                     f"{', '.join(x.value for x in _PIN_TO)}")
                if p not in allowed:
                    raise BrazeError(f"{what} {name!r} is pinned to {p}, which the build does not allow "
                                     f"(allowed: {_names(allowed)}); allow it too (e.g. --{p.value})")
                checked[str(name)] = p
            object.__setattr__(self, "layers" if what == "layer" else "op_types", checked)

    @classmethod
    def parse(cls, spec: "PrecisionPolicy | str | Iterable[str | Precision] | None", tf32: bool = False
              ) -> "PrecisionPolicy":
        """A policy from a policy, a string ("fp16", "fp16,int8") or a list of precisions; `tf32` adds TF32."""
        if isinstance(spec, PrecisionPolicy):
            return spec if not tf32 else cls(spec.allowed | {Precision.TF32}, spec.layers, spec.op_types)
        if spec is None:
            names: list[Any] = []
        elif isinstance(spec, str):
            names = [s for s in spec.replace("+", ",").split(",") if s.strip()]
        else:
            try:
                names = list(spec)
            except TypeError:
                raise BrazeError(f"precision {spec!r}: a precision policy, a name such as 'fp16' or 'fp16,int8', "
                                 f"or a list of names") from None
        allowed = {_precision(n, "precision") for n in names}
        return cls(frozenset(allowed | ({Precision.TF32} if tf32 else set())))

    @property
    def float_type(self) -> DType:
        """The engine's float storage type: the lowest float allowed."""
        for p, dtype in _FLOAT_TYPES.items():
            if p in self.allowed:
                return dtype
        return DType.float32

    @property
    def int8(self) -> bool:
        return Precision.INT8 in self.allowed

    @property
    def tf32(self) -> bool:
        return Precision.TF32 in self.allowed

    def pinned(self, node: Node) -> Precision | None:
        """The precision `node` is pinned to: by its name or any name in its origin (a fused layer's sources),
        else by its op type or, for a fused layer, the ONNX op type it computes (Conv for a FusedConv)."""
        for name in (node.name, *node.origin):
            if name in self.layers:
                return self.layers[name]
        for op in (node.op, *_SOURCE_OPS.get(node.op, ())):
            if op in self.op_types:
                return self.op_types[op]
        return None

    def describe(self) -> str:
        text = _names(self.allowed)
        pins = [f"{n}:{p}" for n, p in {**self.op_types, **self.layers}.items()]
        return text + (f" (pinned: {', '.join(pins)})" if pins else "")

    def to_json(self) -> dict[str, Any]:
        return {"allowed": _names(self.allowed).split("+"),
                "layers": {n: p.value for n, p in self.layers.items()},
                "op_types": {n: p.value for n, p in self.op_types.items()}}


def _names(allowed: Iterable[Precision]) -> str:
    order = list(Precision)
    return "+".join(p.value for p in sorted(allowed, key=order.index))
