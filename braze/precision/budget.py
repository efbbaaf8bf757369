"""The accuracy budget the accuracy guard holds an INT8 engine to, and how it is measured against the FP32 engine.

    AccuracyBudget.parse("top1=0.99")              # top-1 agreement, the first float output with a class axis
    AccuracyBudget.parse("rel_l2=0.02,output=y")   # rel-L2 of output 'y'
    AccuracyBudget.parse("cosine=0.999")           # cosine similarity, the worst of the float outputs

One metric and its bound, optionally `output=NAME` and `held_out=FRACTION` (of the calibration samples kept
out of calibration to check on; default 0.2). Each is measured over all held-out samples together, as one batch:
- `top1`: the fraction of rows (the last axis holds the classes) whose argmax is the FP32 engine's; at least the
  bound. Without `output`: the first float output with a class axis (rank 2 or more, last dim over 1).
- `rel_l2`: ‖a − e‖ / ‖e‖ over every value; at most the bound. `cosine`: a·e / (‖a‖ ‖e‖); at least the bound.
  Without `output`: every float output, the worst one counting.
NaN or infinity where the FP32 engine has a finite value fails: rel-L2 is infinite, cosine 0, and in a top-1 row
NaN ranks lowest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import BrazeError

METRICS = {"top1": "top-1 agreement", "rel_l2": "rel-L2", "cosine": "cosine similarity"}
_HIGHER_IS_BETTER = {"top1": True, "rel_l2": False, "cosine": True}
_OPTIONS = ("output", "held_out")
_EXAMPLE = "e.g. 'top1=0.99', 'rel_l2=0.02,output=logits' or 'cosine=0.999'"


@dataclass(frozen=True)
class AccuracyBudget:
    metric: str  # top1, rel_l2 or cosine
    bound: float
    output: str | None = None  # None: as the module says
    held_out: float = 0.2  # the fraction of the calibration samples held out to check on

    def __post_init__(self) -> None:
        where = f"accuracy budget {self.metric}={self.bound!r}"
        if self.metric not in METRICS:
            raise BrazeError(f"accuracy budget: unknown metric {self.metric!r}; choose from {', '.join(METRICS)}")
        bound = _number(self.bound, f"{where}: {self.metric}")
        low, high = (0.0, 1.0) if self.metric == "top1" else (-1.0, 1.0) if self.metric == "cosine" else (0.0, math.inf)
        if not low <= bound <= high or math.isinf(bound):
            what = {"top1": "a fraction of rows, from 0 to 1", "cosine": "a cosine, from -1 to 1",
                    "rel_l2": "a relative error, 0 or more and finite"}[self.metric]
            raise BrazeError(f"{where}: {self.metric} is {what}; got {self.bound!r}")
        held = _number(self.held_out, f"{where}: held_out")
        if not 0 < held < 1:
            raise BrazeError(f"{where}: held_out is the fraction of calibration samples to check on, above 0 and "
                             f"below 1; got {self.held_out!r}")
        if self.output is not None and (not isinstance(self.output, str) or not self.output):
            raise BrazeError(f"{where}: output must name one of the model's outputs; got {self.output!r}")
        object.__setattr__(self, "bound", bound)
        object.__setattr__(self, "held_out", held)

    @classmethod
    def parse(cls, spec: "AccuracyBudget | str") -> "AccuracyBudget":
        """A budget from a budget or a string: one METRIC=BOUND and optionally output=NAME, held_out=FRACTION,
        separated by commas."""
        if isinstance(spec, AccuracyBudget):
            return spec
        if not isinstance(spec, str):
            raise BrazeError(f"accuracy_budget {spec!r}: an AccuracyBudget or a string, {_EXAMPLE}")
        fields: dict[str, str] = {}
        for part in (p.strip() for p in spec.split(",")):
            key, sep, value = (s.strip() for s in part.partition("="))
            key = key.lower().replace("-", "_")
            if not sep or not key or not value:
                raise BrazeError(f"accuracy budget {spec!r}: {part!r} is not FIELD=VALUE; {_EXAMPLE}")
            if key not in METRICS and key not in _OPTIONS:
                raise BrazeError(f"accuracy budget {spec!r}: unknown field {key!r}; the metrics are "
                                 f"{', '.join(METRICS)} and the options {', '.join(_OPTIONS)}")
            if key in fields:
                raise BrazeError(f"accuracy budget {spec!r}: field {key!r} is given twice")
            fields[key] = value
        metrics = [k for k in fields if k in METRICS]
        if len(metrics) != 1:
            got = f"got {' and '.join(metrics)}" if metrics else "got none"
            raise BrazeError(f"accuracy budget {spec!r}: one metric ({', '.join(METRICS)}) and its bound, {got}; "
                             f"{_EXAMPLE}")
        held = fields.get("held_out", 0.2)
        return cls(metrics[0], _number(fields[metrics[0]], f"accuracy budget {spec!r}: {metrics[0]}"),
                   fields.get("output"), _number(held, f"accuracy budget {spec!r}: held_out"))

    def holds(self, value: float) -> bool:
        return value >= self.bound if _HIGHER_IS_BETTER[self.metric] else value <= self.bound

    def gain(self, before: float, after: float) -> float:
        """How much better `after` is than `before` (positive: better), in the metric's units."""
        if math.isinf(before) and math.isinf(after):
            return 0.0
        return after - before if _HIGHER_IS_BETTER[self.metric] else before - after

    def worst(self, values: Sequence[float]) -> float:
        return min(values) if _HIGHER_IS_BETTER[self.metric] else max(values)

    def outputs(self, bindings: Sequence[Any]) -> list[str]:
        """The engine outputs the budget is measured on (bindings with name, dtype, shape), as the module says."""
        floats = [b for b in bindings if b.dtype is not None and b.dtype.is_floating and b.shape is not None]
        if self.output is not None:
            chosen = [b for b in floats if b.name == self.output]
            if not chosen:
                raise BrazeError(f"accuracy budget {self}: the model has no float output {self.output!r}; its float "
                                 f"outputs are {', '.join(repr(b.name) for b in floats) or 'none'}")
        elif self.metric == "top1":
            chosen = [b for b in floats if _classes(b.shape)][:1]
            if not chosen:
                raise BrazeError(f"accuracy budget {self}: no float output has a class axis (rank 2 or more, last dim "
                                 f"over 1); use rel_l2= or cosine=, or name an output")
        else:
            chosen = floats
            if not chosen:
                raise BrazeError(f"accuracy budget {self}: the model has no float output to measure")
        if self.metric == "top1" and not _classes(chosen[0].shape):
            raise BrazeError(f"accuracy budget {self}: output {chosen[0].name!r} has shape {chosen[0].shape}, no class "
                             f"axis (rank 2 or more, last dim over 1) for top-1 agreement")
        return [b.name for b in chosen]

    def measure(self, actual: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]) -> float:
        """The metric of one output over the held-out samples (one value per sample on each side)."""
        a = torch.cat([x.detach().to("cpu", torch.float64).reshape(-1) for x in actual])
        e = torch.cat([x.detach().to("cpu", torch.float64).reshape(-1) for x in expected])
        if self.metric == "top1":
            classes = actual[0].shape[-1]
            ra = torch.nan_to_num(a.reshape(-1, classes), nan=-math.inf)
            re = torch.nan_to_num(e.reshape(-1, classes), nan=-math.inf)
            return float((ra.argmax(1) == re.argmax(1)).double().mean())
        return rel_l2(a, e) if self.metric == "rel_l2" else cosine(a, e)

    def __str__(self) -> str:
        sign = ">=" if _HIGHER_IS_BETTER.get(self.metric, True) else "<="
        return f"{self.metric} {sign} {self.bound:g}" + (f" (output {self.output!r})" if self.output else "")


def rel_l2(a: torch.Tensor, e: torch.Tensor) -> float:
    """‖a − e‖ / ‖e‖ in float64; infinite where `a` is not finite and `e` is, 0 when both are all zero."""
    if not bool(torch.isfinite(a[torch.isfinite(e)]).all()):
        return math.inf
    keep = torch.isfinite(e)
    norm = float(torch.linalg.vector_norm(e[keep]))
    err = float(torch.linalg.vector_norm(a[keep] - e[keep]))
    return err / norm if norm else (0.0 if err == 0 else math.inf)


def cosine(a: torch.Tensor, e: torch.Tensor) -> float:
    """a·e / (‖a‖ ‖e‖) in float64; 0 where `a` is not finite and `e` is, 1 when both are all zero."""
    keep = torch.isfinite(e)
    if not bool(torch.isfinite(a[keep]).all()):
        return 0.0
    na, ne = float(torch.linalg.vector_norm(a[keep])), float(torch.linalg.vector_norm(e[keep]))
    if na == 0 or ne == 0:
        return 1.0 if na == ne else 0.0
    return max(-1.0, min(1.0, float(torch.dot(a[keep], e[keep])) / (na * ne)))


def _classes(shape: tuple) -> bool:
    return len(shape) >= 2 and isinstance(shape[-1], int) and shape[-1] > 1


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise BrazeError(f"{where}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BrazeError(f"{where}: {value!r} is not a number") from None
    if math.isnan(number):
        raise BrazeError(f"{where}: {value!r} is not a number")
    return number


__all__ = ["METRICS", "AccuracyBudget", "cosine", "rel_l2"]
