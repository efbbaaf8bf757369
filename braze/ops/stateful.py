"""Stateful sequence mixers of linear-attention and state-space models (opset 27): LinearAttention
(the recurrences of linear attention, gated linear attention, DeltaNet and Gated DeltaNet) and
CausalConvWithState (the causal depthwise 1-D convolution of Mamba and Gated DeltaNet).

Both carry a state from one call to the next (the recurrent state S; the last k-1 inputs) so
that prefill and single-token decode are the same op. LinearAttention runs its recurrence
step by step in float32, as the ONNX definition does, and returns the state in past_state's type
(the query's when there is none); its `chunk_size` is a tuning hint that cannot change the result.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .opdef import op

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)
_RULES = ("linear", "gated", "delta", "gated_delta")
_CONV_ACTIVATIONS = ("none", "silu", "swish")


def _unpack(x: torch.Tensor, heads: int, name: str) -> torch.Tensor:
    """(B, T, H*D) -> (B, H, T, D), in float32."""
    b, t, hd = x.shape
    if hd % heads:
        raise ValueError(f"{name}'s last dimension {hd} is not a multiple of its {heads} heads")
    return x.reshape(b, t, heads, hd // heads).transpose(1, 2).float()


def _per_step(x: torch.Tensor | None, name: str, batch: int, steps: int, sizes: tuple[int, ...],
              kv_heads: int) -> torch.Tensor | None:
    """decay or beta, (B, T, H_kv*n) with n in `sizes` or (B, T, 1), as (B, H_kv or 1, T, n) in float32."""
    if x is None:
        return None
    if x.dim() != 3 or tuple(x.shape[:2]) != (batch, steps) or x.shape[2] not in sizes:
        raise ValueError(f"{name} has shape {list(x.shape)}, expected ({batch}, {steps}, n) with n in "
                         f"{sorted(set(sizes))}")
    heads = 1 if x.shape[2] == 1 else kv_heads  # a single value serves every head
    return x.reshape(batch, steps, heads, -1).transpose(1, 2).float()


@op("LinearAttention", since=27)
def linear_attention(query, key, value, past_state=None, decay=None, beta=None, *, chunk_size: int = 64,
                     kv_num_heads: int, q_num_heads: int, scale: float = 0.0, update_rule: str = "gated_delta"):
    if update_rule not in _RULES:
        raise ValueError(f"update_rule must be one of {', '.join(_RULES)}, got {update_rule!r}")
    gated, delta = update_rule in ("gated", "gated_delta"), update_rule in ("delta", "gated_delta")
    for given, wanted, name in ((decay, gated, "decay"), (beta, delta, "beta")):
        if (given is not None) != wanted:
            raise ValueError(f"update_rule {update_rule!r} {'needs' if wanted else 'takes no'} {name} input")
    if q_num_heads < 1 or kv_num_heads < 1 or q_num_heads % kv_num_heads:
        raise ValueError(f"q_num_heads ({q_num_heads}) must be a positive multiple of kv_num_heads ({kv_num_heads})")
    for t, name in ((query, "query"), (key, "key"), (value, "value"), (decay, "decay"), (beta, "beta")):
        if t is not None and (t.dtype != query.dtype or t.dtype not in _FLOATS or t.dim() != 3):
            raise ValueError(f"{name} must be a 3-D tensor of query's type (float32, float16 or bfloat16), "
                             f"got {t.dtype} {list(t.shape)}")
    batch, steps = query.shape[:2]
    if tuple(key.shape[:2]) != (batch, steps) or tuple(value.shape[:2]) != (batch, steps):
        raise ValueError(f"query {list(query.shape)}, key {list(key.shape)} and value {list(value.shape)} must "
                         f"share batch and sequence length")
    q = _unpack(query, q_num_heads, "query")
    k = _unpack(key, kv_num_heads, "key")
    v = _unpack(value, kv_num_heads, "value")
    d_k, d_v = q.shape[-1], v.shape[-1]
    if k.shape[-1] != d_k:
        raise ValueError(f"key's head size {k.shape[-1]} differs from query's {d_k}")
    g = _per_step(decay, "decay", batch, steps, (kv_num_heads, kv_num_heads * d_k), kv_num_heads)
    b = _per_step(beta, "beta", batch, steps, (kv_num_heads, 1), kv_num_heads)
    state_shape = (batch, kv_num_heads, d_k, d_v)
    if past_state is not None:
        if past_state.dtype not in _FLOATS or tuple(past_state.shape) != state_shape:
            raise ValueError(f"past_state must be {list(state_shape)} of a float type, got {past_state.dtype} "
                             f"{list(past_state.shape)}")
        state = past_state.float()
    else:
        state = torch.zeros(state_shape, dtype=torch.float32, device=query.device)
    factor = scale if scale else 1 / math.sqrt(d_k)
    group = q_num_heads // kv_num_heads
    outputs = []
    for t in range(steps):
        k_t, v_t = k[:, :, t], v[:, :, t]
        if g is not None:
            state = state * torch.exp(g[:, :, t]).unsqueeze(-1)
        if b is not None:
            v_t = b[:, :, t] * (v_t - torch.einsum("bhdm,bhd->bhm", state, k_t))
        state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        read = state.repeat_interleave(group, dim=1) if group > 1 else state
        outputs.append(factor * torch.einsum("bhd,bhdm->bhm", q[:, :, t], read))
    out = torch.stack(outputs, dim=2) if outputs else q.new_zeros((batch, q_num_heads, 0, d_v))
    out = out.transpose(1, 2).reshape(batch, steps, q_num_heads * d_v).to(query.dtype)
    return out, state.to(query.dtype if past_state is None else past_state.dtype)


@op("CausalConvWithState", since=27)
def causal_conv_with_state(x, weight, bias=None, past_state=None, *, activation: str = "none"):
    if activation not in _CONV_ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(_CONV_ACTIVATIONS)}, got {activation!r}")
    for t, name in ((x, "input"), (weight, "weight"), (bias, "bias"), (past_state, "past_state")):
        if t is not None and (t.dtype != x.dtype or t.dtype not in _FLOATS):
            raise TypeError(f"{name} must share input's floating-point type, got {t.dtype}")
    if x.dim() != 3:
        raise ValueError(f"input must be (batch, channels, length), got shape {list(x.shape)}")
    batch, channels, _ = x.shape
    if weight.dim() != 3 or tuple(weight.shape[:2]) != (channels, 1) or weight.shape[2] < 1:
        raise ValueError(f"weight must be ({channels}, 1, k), got shape {list(weight.shape)}")
    k = weight.shape[2]
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ValueError(f"bias must have shape [{channels}], got {list(bias.shape)}")
    if past_state is None:
        past_state = torch.zeros(batch, channels, k - 1, dtype=x.dtype, device=x.device)
    elif tuple(past_state.shape) != (batch, channels, k - 1):
        raise ValueError(f"past_state must be ({batch}, {channels}, {k - 1}), got {list(past_state.shape)}")
    padded = torch.cat([past_state, x], dim=2)
    out = F.conv1d(padded.float(), weight.float(), None if bias is None else bias.float(), groups=channels)
    out = out.to(x.dtype)
    if activation != "none":
        wide = out.float()
        out = (wide * torch.sigmoid(wide)).to(x.dtype)
    return out, padded[:, :, padded.shape[2] - (k - 1):]


OPS = [linear_attention, causal_conv_with_state]
