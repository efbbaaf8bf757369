"""Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

Both take inputs (N, C, d1, ..., dk) and integer targets (N, d1, ..., dk). A target equal to
`ignore_index` contributes nothing (and may lie outside [0, C)); any other target outside that
range is an error. 'mean' divides by the summed weights of the targets that count (their number
when there are no weights). Half-precision inputs are computed in float32.
"""

from __future__ import annotations

import torch

from .opdef import op

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_REDUCTIONS = ("none", "sum", "mean")


def _check(x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"the input must be floating point, got {x.dtype}")
    if target.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"the target must be int32 or int64, got {target.dtype}")
    if x.dim() < 2 or target.shape != x.shape[:1] + x.shape[2:]:
        raise ValueError(f"the input {list(x.shape)} must be (N, C, d1, ...) and the target (N, d1, ...), "
                         f"got target {list(target.shape)}")
    if weight is not None and (weight.dtype != x.dtype or tuple(weight.shape) != (x.shape[1],)):
        raise ValueError(f"weight must be {x.dtype} of shape [{x.shape[1]}], got {weight.dtype} {list(weight.shape)}")


def _nll(log_prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, reduction: str,
         ignore_index: int | None) -> torch.Tensor:
    """The loss of (N, C, ...) log-probabilities, in their dtype."""
    classes = log_prob.shape[1]
    target = target.to(torch.int64)
    counts = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    if target.device.type != "meta" and bool((counts & ((target < 0) | (target >= classes))).any()):
        raise IndexError(f"targets must lie in [0, {classes}) or equal ignore_index ({ignore_index})")
    safe = torch.where(counts, target, 0)
    picked = -torch.gather(log_prob, 1, safe.unsqueeze(1)).squeeze(1)
    w = counts.to(log_prob.dtype)
    if weight is not None:
        w = w * weight.to(log_prob.dtype)[safe]
    loss = torch.where(counts, picked * w, 0)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / w.sum()
    return loss


def _wide(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@op("NegativeLogLikelihoodLoss", since=12)
def negative_log_likelihood_loss(x, target, weight=None, *, ignore_index: int | None = None,
                                 reduction: str = "mean"):
    _check(x, target, weight, reduction)
    return _nll(_wide(x), target, weight, reduction, ignore_index).to(x.dtype)


@op("SoftmaxCrossEntropyLoss", since=12)
def softmax_cross_entropy_loss(scores, labels, weights=None, *, ignore_index: int | None = None,
                               reduction: str = "mean"):
    _check(scores, labels, weights, reduction)
    log_prob = torch.log_softmax(_wide(scores), dim=1)
    loss = _nll(log_prob, labels, weights, reduction, ignore_index)
    return loss.to(scores.dtype), log_prob.to(scores.dtype)


OPS = [negative_log_likelihood_loss, softmax_cross_entropy_loss]
