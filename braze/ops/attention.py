"""Scaled dot-product attention: ONNX Attention (opsets 23, 24, 25) and ai.onnx.preview.FlexAttention.

Attention takes Q, K, V as (batch, heads, sequence, head_size) or, with `q_num_heads` and
`kv_num_heads`, as (batch, sequence, heads * head_size). K and V may have fewer heads than Q
(grouped-query attention: each K/V head serves a contiguous group of Q heads). The attention bias
sums an optional mask (boolean: False disallows; numeric: added), the causal frontier
(bottom-right aligned: query i sees key j iff j <= i + offset), the sliding window of opset 25 and
the padding of `nonpad_kv_seqlen` (opset 24); `offset` is the past length with an internal cache,
`nonpad_kv_seqlen - q_sequence_length` per batch with an external one, else 0. A query row that
the bias masks entirely gives zeros, not NaN.

The computation follows the ONNX function body step by step in the input's precision (Q and K
each scaled by sqrt(scale), softcap before the bias, softmax in `softmax_precision`, the
probabilities rounded back to the input type before the product with V), so half-precision
results round as the specification's do.
"""

from __future__ import annotations

import math

import torch

from ..ir import DType, Graph, Node
from .infer import Inferred, meta_like
from .opdef import op

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_PRECISIONS = {1: torch.float32, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}
_QK_MODES = (0, 1, 2, 3)


def _precision(code: int | None, default: torch.dtype) -> torch.dtype:
    if code is None:
        return default
    if code not in _PRECISIONS:
        raise ValueError(f"softmax_precision {code} is not one of float (1), float16 (10), double (11), "
                         f"bfloat16 (16)")
    return _PRECISIONS[code]


def _split_heads(x: torch.Tensor, heads: int | None, name: str) -> torch.Tensor:
    """(batch, sequence, heads * size) -> (batch, heads, sequence, size)."""
    if heads is None or heads < 1:
        raise ValueError(f"3-D inputs need the attributes q_num_heads and kv_num_heads (positive), "
                         f"{name} has {heads}")
    b, s, hidden = x.shape
    if hidden % heads:
        raise ValueError(f"{name}'s hidden size {hidden} is not a multiple of its {heads} heads")
    return x.reshape(b, s, heads, hidden // heads).transpose(1, 2)


def _check_inputs(q, k, v, past_key, past_value, nonpad) -> None:
    for t, name in ((q, "Q"), (k, "K"), (v, "V"), (past_key, "past_key"), (past_value, "past_value")):
        if t is not None and t.dtype not in _FLOATS:
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"Q, K and V must have one element type, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.dim() == k.dim() == v.dim() or q.dim() not in (3, 4):
        raise ValueError(f"Q, K and V must all be 3-D or all 4-D, got ranks {q.dim()}, {k.dim()}, {v.dim()}")
    if (past_key is None) != (past_value is None):
        raise ValueError("past_key and past_value must be given together")
    if nonpad is not None:
        if past_key is not None:
            raise ValueError("nonpad_kv_seqlen cannot be combined with past_key and past_value")
        if nonpad.dtype != torch.int64 or nonpad.shape != (q.shape[0],):
            raise ValueError(f"nonpad_kv_seqlen must be int64 of shape [{q.shape[0]}], "
                             f"got {nonpad.dtype} {list(nonpad.shape)}")


def _with_past(x: torch.Tensor, past: torch.Tensor | None, name: str) -> torch.Tensor:
    if past is None:
        return x
    if past.dim() != 4 or past.dtype != x.dtype or past.shape[:2] != x.shape[:2] or past.shape[3] != x.shape[3]:
        raise ValueError(f"past_{name} {past.dtype} {list(past.shape)} does not fit {name} "
                         f"{x.dtype} {list(x.shape)} (batch, heads, past_length, head_size)")
    return torch.cat([past, x], dim=2)


def _bias(mask, q, kv_len: int, offset, nonpad, is_causal: int, left: int, right: int) -> torch.Tensor:
    """The additive attention bias, broadcastable to (batch, q_heads, q_len, kv_len), in Q's type."""
    dtype, device = q.dtype, q.device
    batch, heads, q_len = q.shape[:3]
    zero = torch.zeros((), dtype=dtype, device=device)
    neg_inf = torch.full((), -math.inf, dtype=dtype, device=device)
    bias = torch.zeros((q_len, kv_len), dtype=dtype, device=device)
    if mask is not None:
        full = (batch, heads, q_len, kv_len)
        if mask.dim() == 0 or mask.shape[-1] > kv_len or not _broadcasts(mask.shape[:-1], full[:-1]):
            raise ValueError(f"attn_mask of shape {list(mask.shape)} does not broadcast to {list(full)}")
        if mask.dtype == torch.bool:
            mask = torch.where(mask, zero, neg_inf)
        mask = mask.to(dtype)
        if mask.shape[-1] < kv_len:  # a shorter mask leaves the keys after it out
            fill = neg_inf.expand(*mask.shape[:-1], kv_len - mask.shape[-1])
            mask = torch.cat([mask, fill], dim=-1)
        bias = bias + mask
    i = torch.arange(q_len, device=device).reshape(q_len, 1)
    j = torch.arange(kv_len, device=device).reshape(1, kv_len)
    position = i + offset  # the absolute position of each query: (q, 1) or (batch, 1, q, 1)
    allowed = None
    if is_causal:
        allowed = j <= position
    if left >= 0:
        allowed = (position - j <= left) if allowed is None else allowed & (position - j <= left)
    if right >= 0:
        allowed = (j - position <= right) if allowed is None else allowed & (j - position <= right)
    if allowed is not None:
        bias = bias + torch.where(allowed, zero, neg_inf)
    if nonpad is not None:
        bias = bias + torch.where(j < nonpad.reshape(-1, 1, 1, 1), zero, neg_inf)
    return bias


def _broadcasts(shape, target) -> bool:
    return len(shape) <= len(target) and all(a in (1, n) for a, n in zip(reversed(shape), reversed(target)))


def _softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis; a row of -inf gives zeros instead of NaN."""
    top = x.amax(dim=-1, keepdim=True)
    e = torch.exp(x - torch.where(torch.isneginf(top), 0, top))
    total = e.sum(dim=-1, keepdim=True)
    return e / torch.where(total == 0, 1, total)


def _attention(q, k, v, mask, past_key, past_value, nonpad, *, is_causal: int, kv_num_heads: int | None,
               q_num_heads: int | None, qk_matmul_output_mode: int, scale: float | None, softcap: float,
               softmax_precision: int | None, outputs: int, left: int = -1, right: int = -1,
               heads_4d_allowed: bool = True):
    _check_inputs(q, k, v, past_key, past_value, nonpad)
    if qk_matmul_output_mode not in _QK_MODES:
        raise ValueError(f"qk_matmul_output_mode must be 0, 1, 2 or 3, got {qk_matmul_output_mode}")
    if left < -1 or right < -1:
        raise ValueError(f"window sizes must be -1 or non-negative, got {left} and {right}")
    rank = q.dim()
    if rank == 3:
        q = _split_heads(q, q_num_heads, "Q")
        k = _split_heads(k, kv_num_heads, "K")
        v = _split_heads(v, kv_num_heads, "V")
    elif not heads_4d_allowed and (q_num_heads is not None or kv_num_heads is not None):
        raise ValueError("q_num_heads and kv_num_heads must not be given with 4-D inputs")
    batch, q_heads, q_len, head_size = q.shape
    if k.shape[0] != batch or v.shape[0] != batch or k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2]:
        raise ValueError(f"K {list(k.shape)} and V {list(v.shape)} do not fit Q {list(q.shape)} "
                         f"(batch, heads, sequence, head_size)")
    if k.shape[3] != head_size:
        raise ValueError(f"K's head size {k.shape[3]} differs from Q's {head_size}")
    if q_heads % k.shape[1]:
        raise ValueError(f"Q's {q_heads} heads are not a multiple of K's and V's {k.shape[1]}")
    k = present_key = _with_past(k, past_key, "key")
    v = present_value = _with_past(v, past_value, "value")
    kv_len = k.shape[2]
    if past_key is not None:
        offset: int | torch.Tensor = past_key.shape[2]
    elif nonpad is not None:
        offset = (nonpad - q_len).reshape(-1, 1, 1, 1)
    else:
        offset = 0
    bias = _bias(mask, q, kv_len, offset, nonpad, is_causal, left, right)
    full = (batch, q_heads, q_len, kv_len)

    group = q_heads // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    root = torch.tensor(math.sqrt(1 / math.sqrt(head_size) if scale is None else scale), dtype=q.dtype,
                        device=q.device)
    qk = torch.matmul(q * root, (k * root).transpose(-1, -2))
    capped = softcap * torch.tanh(qk / softcap) if softcap > 0 else qk
    scores = capped + bias
    probs = _softmax(scores.to(_precision(softmax_precision, q.dtype)))
    masked_rows = torch.isneginf(bias.amax(dim=-1, keepdim=True))
    probs = torch.where(masked_rows, 0, probs).to(q.dtype)
    y = torch.matmul(probs, v)
    if rank == 3:
        y = y.transpose(1, 2).reshape(batch, q_len, -1)
    if outputs < 4:
        return y, present_key, present_value
    qk_out = (qk, capped, scores, probs)[qk_matmul_output_mode]
    return y, present_key, present_value, qk_out.expand(full).contiguous()


@op("Attention", since=23)
def attention_23(q, k, v, attn_mask=None, past_key=None, past_value=None, *, is_causal: int = 0,
                 kv_num_heads: int | None = None, q_num_heads: int | None = None, qk_matmul_output_mode: int = 0,
                 scale: float | None = None, softcap: float = 0.0, softmax_precision: int | None = None,
                 _outputs: int = 1):
    return _attention(q, k, v, attn_mask, past_key, past_value, None, is_causal=is_causal,
                      kv_num_heads=kv_num_heads, q_num_heads=q_num_heads,
                      qk_matmul_output_mode=qk_matmul_output_mode, scale=scale, softcap=softcap,
                      softmax_precision=softmax_precision, outputs=_outputs)


@op("Attention", since=24)
def attention_24(q, k, v, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *,
                 is_causal: int = 0, kv_num_heads: int | None = None, q_num_heads: int | None = None,
                 qk_matmul_output_mode: int = 0, scale: float | None = None, softcap: float = 0.0,
                 softmax_precision: int | None = None, _outputs: int = 1):
    return _attention(q, k, v, attn_mask, past_key, past_value, nonpad_kv_seqlen, is_causal=is_causal,
                      kv_num_heads=kv_num_heads, q_num_heads=q_num_heads,
                      qk_matmul_output_mode=qk_matmul_output_mode, scale=scale, softcap=softcap,
                      softmax_precision=softmax_precision, outputs=_outputs)


@op("Attention", since=25)
def attention_25(q, k, v, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *,
                 is_causal: int = 0, kv_num_heads: int | None = None, q_num_heads: int | None = None,
                 left_window_size: int = -1, right_window_size: int = -1, qk_matmul_output_mode: int = 0,
                 scale: float | None = None, softcap: float = 0.0, softmax_precision: int | None = None,
                 _outputs: int = 1):
    return _attention(q, k, v, attn_mask, past_key, past_value, nonpad_kv_seqlen, is_causal=is_causal,
                      kv_num_heads=kv_num_heads, q_num_heads=q_num_heads,
                      qk_matmul_output_mode=qk_matmul_output_mode, scale=scale, softcap=softcap,
                      softmax_precision=softmax_precision, outputs=_outputs, left=left_window_size,
                      right=right_window_size, heads_4d_allowed=False)


def _flex_shapes(q, k, v) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"Q, K and V must be 4-D, got shapes {list(q.shape)}, {list(k.shape)}, {list(v.shape)}")
    if k.dtype != q.dtype or v.dtype != q.dtype or q.dtype not in _FLOATS:
        raise TypeError(f"Q, K and V must have one floating-point type, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape[0] != q.shape[0] or v.shape[0] != q.shape[0] or k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2]:
        raise ValueError(f"K {list(k.shape)} and V {list(v.shape)} do not fit Q {list(q.shape)}")
    if k.shape[3] != q.shape[3]:
        raise ValueError(f"K's head size {k.shape[3]} differs from Q's {q.shape[3]}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"Q's {q.shape[1]} heads are not a multiple of K's and V's {k.shape[1]}")


def _infer_flex(node: Node, values) -> list[Inferred]:
    """The output's shape from the inputs' alone: the modifier subgraphs keep their input's shape."""
    q, k, v = node.inputs
    if q.is_static and k.is_static and v.is_static:
        _flex_shapes(*(meta_like(t) for t in (q, k, v)))
    if q.shape is None or v.shape is None:
        return [Inferred(q.dtype, None)]
    return [Inferred(q.dtype, (*q.shape[:3], v.shape[3]))]


def _modify(body: Graph | None, x: torch.Tensor, name: str) -> torch.Tensor:
    if body is None:
        return x
    from .evaluate import run_graph

    if len(body.inputs) != 1 or len(body.outputs) != 1:
        raise ValueError(f"{name} must take one input and give one output")
    out = run_graph(body, [x])[0]
    if out.shape != x.shape:
        raise ValueError(f"{name} changed the shape {list(x.shape)} to {list(out.shape)}")
    return out.to(x.dtype)


@op("FlexAttention", since=1, domain="ai.onnx.preview", infer=_infer_flex)
def flex_attention(q, k, v, *, prob_mod: Graph | None = None, scale: float | None = None,
                   score_mod: Graph | None = None, softmax_precision: int | None = None):
    _flex_shapes(q, k, v)
    wide = q.dtype if q.dtype == torch.float64 else torch.float32
    compute = _precision(softmax_precision, wide)
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    factor = 1 / math.sqrt(q.shape[3]) if scale is None else scale
    root = torch.tensor(math.sqrt(factor), dtype=torch.float32, device=q.device).to(q.dtype)
    scores = torch.matmul(q * root, (k * root).transpose(-1, -2)).to(compute)
    scores = _modify(score_mod, scores, "score_mod")
    probs = _modify(prob_mod, torch.softmax(scores, dim=-1), "prob_mod")
    return torch.matmul(probs, v.to(compute)).to(v.dtype)


OPS = [attention_23, attention_24, attention_25, flex_attention]
