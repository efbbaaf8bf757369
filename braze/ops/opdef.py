"""OpDef: one op's inputs, attributes, reference implementation and shape rule.

An op is written as its reference implementation, a plain function over torch tensors:

    @op("LeakyRelu", since=6)
    def leaky_relu(x, *, alpha: float = 0.01):
        return F.leaky_relu(x, alpha)

Positional parameters are the op's inputs (a default of None marks an optional input, `*xs` a
variadic one); keyword-only parameters are its attributes, with their defaults (no default:
required) and their types taken from the annotations. A keyword-only `_outputs: int` receives
the number of outputs the node asks for; a keyword-only `_dtypes: tuple` the node's input DTypes
(None for omitted inputs), which an op needs to compute on the types braze emulates (DType.emulated),
whose tensors hold only their storage dtype: only such ops take them. The function returns one
tensor or a tuple.

Shape and dtype inference default to running the reference on meta tensors, so the rule can
never disagree with the implementation; `value_inputs` names the inputs whose values (not just
shapes) decide the output shape, and `infer=` replaces the rule where meta evaluation cannot work.

Ops with subgraphs that may read tensors of the enclosing graph (If, Loop, Scan, SequenceMap) say
`outer_inputs=True`: their nodes take those reads as trailing inputs (see `subgraph.py`).

Traits say what passes, kernels and the memory planner may do with an op's nodes (they ask the registry,
never a list of op names):

  elementwise             a pointwise op the Pointwise fusion takes into its body
  keeps_layout            its kernels give a channels-last input a channels-last output, so the layout of
                          a channels-last region runs through it
  view                    its outputs can be views of its first input (no data moves)
  commutes_with_quantize  a DequantizeLinear may move from its input to its output (Q/DQ propagation);
                          True, or a condition on the node (a Gather of constant indices, a nearest Resize)
  scale_inputs            the inputs that are quantization scales: refused at build time unless positive and
                          finite, and kept float32 when an engine's floats are lowered to FP16/BF16

NOTE: every version of an op declares the same traits (tests/ops/test_kinds.py checks it).
"""

from __future__ import annotations

import contextvars
import inspect
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from ..errors import BrazeError, UnsupportedError
from ..ir import DType, Graph, Node

ATTR_OUTPUTS = "_outputs"
ATTR_DTYPES = "_dtypes"


@dataclass(frozen=True)
class AttrSpec:
    name: str
    kind: Any  # the annotation: int, float, str, list[int], torch.Tensor, Graph, ...
    default: Any = None
    required: bool = False


@dataclass(frozen=True)
class OpDef:
    name: str
    since: int
    fn: Callable[..., Any]
    domain: str = ""
    value_inputs: frozenset[int] = frozenset()
    infer: Callable[..., Any] | None = None  # (opdef, attrs, inputs, values, n_out) -> list[InferredOutput]
    random: bool = False  # output is not a function of the inputs: never fold or cache it
    dtype_rule: Callable[..., Any] | None = None  # output dtypes when the shape is data-dependent
    n_inputs: tuple[int, int | None] = (0, 0)  # (min, max); max None: variadic
    outer_inputs: bool = False  # the outer-scope reads of its subgraphs follow the node's own inputs
    attrs: dict[str, AttrSpec] = field(default_factory=dict)
    wants_outputs: bool = False
    wants_dtypes: bool = False  # takes the node's input dtypes: the op computes on emulated types
    elementwise: bool = False
    keeps_layout: bool = False
    view: bool = False
    commutes_with_quantize: bool | Callable[[Node], bool] = False
    scale_inputs: frozenset[int] = frozenset()

    @property
    def key(self) -> str:
        return self.name if self.domain in ("", "ai.onnx") else f"{self.domain}.{self.name}"

    def quantize_commutes(self, node: Node) -> bool:
        """Whether a DequantizeLinear may move across `node` (a node of this op): the commutes_with_quantize trait."""
        trait = self.commutes_with_quantize
        return bool(trait(node)) if callable(trait) else trait

    def parse_attrs(self, raw: dict[str, Any], where: str) -> dict[str, Any]:
        """Check `raw` against the op's attributes and fill in defaults."""
        unknown = sorted(set(raw) - set(self.attrs))
        if unknown:
            raise UnsupportedError(
                f"{where}: {self.name} does not take attribute(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(self.attrs)) or 'none'})"
            )
        parsed: dict[str, Any] = {}
        for spec in self.attrs.values():
            if spec.name in raw:
                parsed[spec.name] = _coerce(raw[spec.name], spec, where, self.name)
            elif spec.required:
                raise BrazeError(f"{where}: {self.name} requires attribute {spec.name!r}")
            else:
                parsed[spec.name] = spec.default
        return parsed

    def check_arity(self, n_inputs: int, where: str) -> None:
        lo, hi = self.n_inputs
        if n_inputs < lo or (hi is not None and n_inputs > hi):
            expected = f"{lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any number'}"
            raise BrazeError(f"{where}: {self.name} takes {expected} inputs, the node gives {n_inputs}")

    def run(self, inputs: Sequence[torch.Tensor | None], attrs: dict[str, Any], n_outputs: int,
            dtypes: Sequence[DType | None] | None = None) -> list[torch.Tensor]:
        """Call the reference implementation; always returns a list of `n_outputs` tensors. `dtypes` are the
        node's input dtypes (`input_dtypes(node)`); without them, the inputs' torch dtypes say."""
        kwargs = dict(attrs)
        if self.wants_outputs:
            kwargs[ATTR_OUTPUTS] = n_outputs
        if self.wants_dtypes:
            kwargs[ATTR_DTYPES] = tuple(dtypes if dtypes is not None else
                                        (None if x is None else DType.from_torch(x.dtype) for x in inputs))
        result = self.fn(*_trim_trailing_none(inputs, self.n_inputs[0]), **kwargs)
        results = list(result) if isinstance(result, (tuple, list)) else [result]
        return results[:n_outputs]


def op(
    name: str,
    since: int = 1,
    *,
    domain: str = "",
    value_inputs: Sequence[int] = (),
    infer: Callable[..., Any] | None = None,
    random: bool = False,
    dtype_rule: Callable[..., Any] | None = None,
    outer_inputs: bool = False,
    elementwise: bool = False,
    keeps_layout: bool = False,
    view: bool = False,
    commutes_with_quantize: bool | Callable[[Node], bool] = False,
    scale_inputs: Sequence[int] = (),
) -> Callable[[Callable[..., Any]], OpDef]:
    """Turn a reference implementation into an OpDef (see the module docstring for the traits)."""

    def wrap(fn: Callable[..., Any]) -> OpDef:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn, globalns={**fn.__globals__, "Graph": Graph, "torch": torch})
        n_min = n_max = 0
        variadic = False
        attrs: dict[str, AttrSpec] = {}
        wants_outputs = wants_dtypes = False
        for p in sig.parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                n_max += 1
                if p.default is p.empty:
                    n_min = n_max
            elif p.kind is p.VAR_POSITIONAL:
                variadic = True
            elif p.kind is p.KEYWORD_ONLY:
                if p.name == ATTR_OUTPUTS:
                    wants_outputs = True
                    continue
                if p.name == ATTR_DTYPES:
                    wants_dtypes = True
                    continue
                required = p.default is p.empty
                attrs[p.name] = AttrSpec(p.name, hints.get(p.name, Any), None if required else p.default, required)
        if variadic:
            n_min = max(n_min, 1)
        return OpDef(
            name=str(name),
            since=since,
            fn=fn,
            domain=domain,
            value_inputs=frozenset(value_inputs),
            infer=infer,
            random=random,
            dtype_rule=dtype_rule,
            n_inputs=(n_min, None if variadic else n_max),
            outer_inputs=outer_inputs,
            attrs=attrs,
            wants_outputs=wants_outputs,
            wants_dtypes=wants_dtypes,
            elementwise=elementwise,
            keeps_layout=keeps_layout,
            view=view,
            commutes_with_quantize=commutes_with_quantize,
            scale_inputs=frozenset(scale_inputs),
        )

    return wrap


def input_dtypes(node: Node) -> tuple[DType | None, ...]:
    """The dtypes of a node's inputs, as OpDef.run takes them."""
    return tuple(None if t is None else t.dtype for t in node.inputs)


def _trim_trailing_none(inputs: Sequence[Any], keep: int) -> list[Any]:
    """Omitted optional inputs at the end go (their defaults apply); required ones stay, even None
    (an empty optional value at run time)."""
    items = list(inputs)
    while len(items) > keep and items[-1] is None:
        items.pop()
    return items


def _coerce(value: Any, spec: AttrSpec, where: str, op_name: str) -> Any:
    kind = spec.kind
    origin = typing.get_origin(kind)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = options[0] if len(options) == 1 else Any
        origin = typing.get_origin(kind)
    try:
        if kind is Any or value is None:
            return value
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            return value.decode() if isinstance(value, bytes) else str(value)
        if origin in (list, tuple):
            (item,) = typing.get_args(kind) or (Any,)
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            if item is int:
                return [int(v) for v in items]
            if item is float:
                return [float(v) for v in items]
            if item is str:
                return [v.decode() if isinstance(v, bytes) else str(v) for v in items]
            return items
        if isinstance(kind, type) and not isinstance(value, kind):
            raise TypeError
        return value
    except (TypeError, ValueError):
        raise BrazeError(
            f"{where}: attribute {spec.name!r} of {op_name} should be {_kind_name(spec.kind)}, got {value!r}"
        ) from None


def _kind_name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


_SIZING = contextvars.ContextVar("braze_sizing", default=False)


@contextmanager
def sizing() -> Iterator[None]:
    """While shape inference sizes outputs, ops that make a tensor from values alone (ConstantOfShape, Range, the
    random generators) make it on the meta device (`made_on`): a size a model declares is never allocated."""
    token = _SIZING.set(True)
    try:
        yield
    finally:
        _SIZING.reset(token)


def made_on(device: torch.device) -> torch.device:
    """The device a generator op makes its output on: `device`, or meta while shape inference sizes it."""
    return torch.device("meta") if _SIZING.get() else device
