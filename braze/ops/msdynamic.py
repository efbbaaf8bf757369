"""onnxruntime's dynamically quantized operators (domain com.microsoft), written by
`onnxruntime.quantization.quantize_dynamic` (DynamicQuantizeLSTM, QAttention) or by onnxruntime's graph optimizer
into the models it saves (DynamicQuantizeMatMul, MatMulIntegerToFloat):

    DynamicQuantizeMatMul(A, B, b_scale, b_zp?, bias?)             Y = DQ(DynamicQuantize(A)) @ DQ(B) + bias
    MatMulIntegerToFloat(A, B, a_scale, b_scale, a_zp?, b_zp?, bias?) Y = DQ(A) @ DQ(B) + bias
    DynamicQuantizeLSTM(X, W, R, B?, lens?, h0?, c0?, P?, W_scale, W_zp, R_scale, R_zp)   an LSTM whose matrix
        products quantize their float operand per run: X once (its first `longest length` steps), h every step
    QAttention(input, weight, bias, input_scale, weight_scale, mask?, input_zp?, weight_zp?, past?)
        com.microsoft's Attention on the product DQ(input) @ DQ(weight) + bias

The activation's scale is found per run, as DynamicQuantizeLinear finds it (uint8 over the range widened to hold
0), so nothing here has a static Q/DQ form: these are reference ops, not rewritten for the INT8 kernels. Every
product is onnxruntime's: the exact integer accumulator, then times a_scale * b_scale (a float32 product, per
tensor or per column of B) plus the bias, in float32. So DynamicQuantizeMatMul and MatMulIntegerToFloat match
onnxruntime bit for bit; the LSTM's and the attention's float parts (onnxruntime's approximate logistic, tanh and
exp) differ by float32 rounding, which can move a quantized hidden state by one step in a later time step.
"""

from __future__ import annotations

import math

import torch

from .msquant import MS_DOMAIN
from .opdef import op
from .quantize import dynamic_quantize_linear
from .rnn import _DIRECTIONS, _activations, _lens, _reverse_index

_QUANTIZED = (torch.int8, torch.uint8)


def _column(p: torch.Tensor | None, n: int, what: str) -> torch.Tensor | None:
    """A per-tensor parameter (one value) or one per column of B."""
    if p is None or p.numel() == 1:
        return None if p is None else p.reshape(())
    if p.dim() != 1 or p.shape[0] != n:
        raise ValueError(f"{what} must be one value or one per column of B ({n}), got shape {list(p.shape)}")
    return p


def _integer_product(a_q: torch.Tensor, a_zero_point, b_q: torch.Tensor, b_zero_point) -> torch.Tensor:
    """(a_q - a_zp) @ (b_q - b_zp), exact (float64 holds every sum of 8-bit products an int32 can)."""
    for t, name in ((a_q, "A"), (b_q, "B")):
        if t.dtype not in _QUANTIZED:
            raise TypeError(f"{name} must be int8 or uint8, got {str(t.dtype).removeprefix('torch.')}")
    a = a_q.to(torch.float64) - (0 if a_zero_point is None else a_zero_point.to(torch.float64))
    b = b_q.to(torch.float64) - (0 if b_zero_point is None else b_zero_point.to(torch.float64))
    return torch.matmul(a, b)


def _to_float(acc: torch.Tensor, a_scale: torch.Tensor, b_scale: torch.Tensor, bias, dtype: torch.dtype):
    """acc * (a_scale * b_scale) + bias in float32, as `dtype` (a lowered engine's float type)."""
    y = acc.float() * (a_scale.float() * b_scale.float())
    return (y if bias is None else y + bias.float()).to(dtype)


def _dynamic_product(a: torch.Tensor, b_q: torch.Tensor, b_scale, b_zero_point, bias=None) -> torch.Tensor:
    """A float matrix by a quantized one: A quantized as DynamicQuantizeLinear does, then the exact product."""
    if not a.dtype.is_floating_point:
        raise TypeError(f"A must be float32, got {str(a.dtype).removeprefix('torch.')}")
    a_q, a_scale, a_zero_point = dynamic_quantize_linear.fn(a.float())
    n = b_q.shape[-1]
    acc = _integer_product(a_q, a_zero_point, b_q, _column(b_zero_point, n, "the zero point of B"))
    return _to_float(acc, a_scale, _column(b_scale, n, "the scale of B"), bias, a.dtype)


@op("DynamicQuantizeMatMul", domain=MS_DOMAIN, scale_inputs=(2,))
def dynamic_quantize_matmul(a, b, b_scale, b_zero_point=None, bias=None):
    return _dynamic_product(a, b, b_scale, b_zero_point, bias)


@op("MatMulIntegerToFloat", domain=MS_DOMAIN, scale_inputs=(2, 3))
def matmul_integer_to_float(a, b, a_scale, b_scale, a_zero_point=None, b_zero_point=None, bias=None):
    if a_scale.numel() != 1 or (a_zero_point is not None and a_zero_point.numel() != 1):
        raise ValueError("a_scale and a_zero_point must be one value each (per tensor)")
    n = b.shape[-1]
    acc = _integer_product(a, a_zero_point, b, _column(b_zero_point, n, "b_zero_point"))
    return _to_float(acc, a_scale.reshape(()), _column(b_scale, n, "b_scale"), bias, a_scale.dtype)


# -- DynamicQuantizeLSTM ------------------------------------------------------------------------

def _weight_params(scale: torch.Tensor, zero_point: torch.Tensor, weight: torch.Tensor, d: int, name: str):
    """Direction d's scale (one, or one per gate column) and its one zero point: onnxruntime takes the first, and
    requires them all 0 for int8 weights and all equal for uint8 ones."""
    dirs, columns = weight.shape[0], weight.shape[-1]
    if tuple(scale.shape) not in ((dirs,), (dirs, columns)) or scale.shape != zero_point.shape:
        raise ValueError(f"{name}_scale and {name}_zero_point must both have shape [{dirs}] (per tensor) or "
                         f"[{dirs}, {columns}] (per column), got {list(scale.shape)} and {list(zero_point.shape)}")
    if zero_point.dtype != weight.dtype:
        raise TypeError(f"{name}_zero_point must have {name}'s type {str(weight.dtype).removeprefix('torch.')}")
    zps = zero_point[d].reshape(-1)
    if zps.device.type != "meta" and bool((zps != (0 if weight.dtype == torch.int8 else zps[0])).any()):
        raise ValueError(f"{name}_zero_point must be 0 (int8 weights) or one value (uint8 weights) in each "
                         "direction, as onnxruntime requires")
    return scale[d], zps[0]


def _cell(gates, c, p, clip, fns, input_forget: int):
    """One LSTM step from the gate inputs (i, o, f, c order): onnxruntime's order of the peepholes and clip."""
    f, g, act_h = fns
    i, o, forget, cell = gates.chunk(4, dim=-1)
    pi, po, pf = p.chunk(3) if p is not None else (0, 0, 0)
    i = f(clip(i + pi * c))
    forget = 1 - i if input_forget else f(clip(forget + pf * c))
    c = forget * c + i * g(clip(cell))
    o = f(clip(o + po * c))
    return o * act_h(c), c


def _lstm_direction(x, weights, bias, p, h, c, lens, reverse: bool, clip, fns, input_forget: int):
    (w_q, w_scale, w_zp), (r_q, r_scale, r_zp) = weights
    steps, batch, _ = x.shape
    index = _reverse_index(steps, lens) if reverse else None
    if index is not None:
        x = torch.gather(x, 0, index.unsqueeze(-1).expand(x.shape))
    # NOTE: onnxruntime quantizes X once, over the steps of the longest sequence only
    longest = steps if lens.device.type == "meta" or not lens.numel() else int(lens.max())
    xw = _dynamic_product(x[:longest].reshape(-1, x.shape[-1]), w_q, w_scale, w_zp).reshape(longest, batch, -1) \
        if longest else x.new_zeros((0, batch, w_q.shape[-1]))
    ys, previous = [], h  # the state each product reads: h0, then each step's output (0 for ended entries)
    # NOTE: onnxruntime splits the batch among its threads when it has more than 4 entries or a hidden size up to
    # 256, and quantizes each thread's rows together: braze quantizes each entry alone, as onnxruntime does when it
    # has a thread per entry; otherwise the whole batch together, as onnxruntime always does
    per_row = batch > 4 or r_q.shape[0] <= 256
    for t in range(longest):
        rows = previous.split(1) if per_row else (previous,)
        gates = xw[t] + torch.cat([_dynamic_product(part, r_q, r_scale, r_zp) for part in rows]) + bias
        h_new, c_new = _cell(gates, c, p, clip, fns, input_forget)
        valid = (t < lens).unsqueeze(1)
        h, c = torch.where(valid, h_new, h), torch.where(valid, c_new, c)
        previous = torch.where(valid, h_new, 0)
        ys.append(previous)
    ys += [h.new_zeros(h.shape)] * (steps - longest)
    y = torch.stack(ys) if ys else x.new_zeros((0, *h.shape))
    if index is not None:
        y = torch.gather(y, 0, index.unsqueeze(-1).expand(y.shape))
    ran = (lens > 0).unsqueeze(1)
    return y, torch.where(ran, h, 0), torch.where(ran, c, 0)


@op("DynamicQuantizeLSTM", domain=MS_DOMAIN, scale_inputs=(8, 10))
def dynamic_quantize_lstm(x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None,
                          w_scale=None, w_zero_point=None, r_scale=None, r_zero_point=None, *,
                          activation_alpha: list[float] | None = None, activation_beta: list[float] | None = None,
                          activations: list[str] | None = None, clip: float | None = None,
                          direction: str = "forward", hidden_size: int | None = None, input_forget: int = 0):
    """W is [directions, input, 4 * hidden] and R [directions, hidden, 4 * hidden] (ONNX's LSTM weights transposed),
    int8 or uint8; gates in ONNX's order i, o, f, c."""
    if any(t is None for t in (w_scale, w_zero_point, r_scale, r_zero_point)):
        raise ValueError("W_scale, W_zero_point, R_scale and R_zero_point are required")
    if not x.dtype.is_floating_point or x.dim() != 3:
        raise TypeError(f"X must be float32 [steps, batch, input], got {x.dtype} {list(x.shape)}")
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be forward, reverse or bidirectional, got {direction!r}")
    dirs, (steps, batch, inputs) = _DIRECTIONS[direction], x.shape
    hidden = r.shape[1] if hidden_size is None else hidden_size
    expected = {"W": (w, (dirs, inputs, 4 * hidden)), "R": (r, (dirs, hidden, 4 * hidden)),
                "B": (b, (dirs, 8 * hidden)), "P": (p, (dirs, 3 * hidden)),
                "initial_h": (initial_h, (dirs, batch, hidden)), "initial_c": (initial_c, (dirs, batch, hidden))}
    for name, (t, shape) in expected.items():
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"{name} has shape {list(t.shape)}, expected {list(shape)} ({dirs} direction(s), "
                             f"hidden_size {hidden}, input size {inputs})")
    if clip is not None and clip <= 0:
        raise ValueError(f"clip must be positive, got {clip}")
    fns = _activations(activations, ("Sigmoid", "Tanh", "Tanh"), dirs, activation_alpha, activation_beta)
    bound = (lambda v: v.clamp(-clip, clip)) if clip is not None else (lambda v: v)
    lens = _lens(sequence_lens, steps, batch, x.device)
    dtype, x = x.dtype, x.float()  # NOTE: a lowered engine's float16 computes in float32
    zeros = x.new_zeros((dirs, batch, hidden))
    h0, c0 = (zeros if s is None else s.float() for s in (initial_h, initial_c))
    b, p = (None if t is None else t.float() for t in (b, p))
    ys, hs, cs = [], [], []
    for d in range(dirs):
        weights = (w[d], *_weight_params(w_scale, w_zero_point, w, d, "W")), \
                  (r[d], *_weight_params(r_scale, r_zero_point, r, d, "R"))
        bias = 0 if b is None else b[d, :4 * hidden] + b[d, 4 * hidden:]  # NOTE: onnxruntime adds Wb + Rb first
        y, h, c = _lstm_direction(x, weights, bias, None if p is None else p[d], h0[d], c0[d], lens,
                                  direction == "reverse" or d == 1, bound, fns[d], input_forget)
        ys.append(y)
        hs.append(h)
        cs.append(c)
    return torch.stack(ys, dim=1).to(dtype), torch.stack(hs).to(dtype), torch.stack(cs).to(dtype)


# -- QAttention ----------------------------------------------------------------------------------

def _allowed(mask: torch.Tensor | None, batch: int, seq: int, total: int, past: int, unidirectional: int,
             device: torch.device) -> torch.Tensor:
    """Which keys each query may see, [batch, 1, seq, total], from com.microsoft Attention's mask formats."""
    keys = torch.arange(total, device=device)
    allowed = torch.ones(batch, seq, total, dtype=torch.bool, device=device)
    if mask is not None:
        if mask.dtype != torch.int32:
            raise TypeError(f"mask_index must be int32, got {str(mask.dtype).removeprefix('torch.')}")
        if mask.dim() == 1 and mask.shape[0] in (batch, 2 * batch):
            allowed = allowed & (keys < mask[:batch].reshape(batch, 1, 1))  # right padding: lengths
            if mask.shape[0] == 2 * batch:  # left padding too: start positions follow
                allowed = allowed & (keys >= mask[batch:].reshape(batch, 1, 1))
        elif mask.dim() == 2 and tuple(mask.shape) == (batch, total):
            allowed = allowed & (mask > 0).reshape(batch, 1, total)
        elif mask.dim() == 3 and tuple(mask.shape) == (batch, seq, total):
            allowed = allowed & (mask > 0)
        else:
            raise ValueError(f"mask_index of shape {list(mask.shape)} is not one braze reads: ({batch}) or "
                             f"({2 * batch}) key positions, or a 0/1 mask ({batch}, {total}) or "
                             f"({batch}, {seq}, {total})")
    if unidirectional:
        queries = torch.arange(seq, device=device).reshape(seq, 1)
        allowed = allowed & (keys <= queries + past)
    return allowed.unsqueeze(1)


@op("QAttention", domain=MS_DOMAIN, scale_inputs=(3, 4))
def qattention(x, weight, bias, input_scale, weight_scale, mask_index=None, input_zero_point=None,
               weight_zero_point=None, past=None, *, num_heads: int, unidirectional: int = 0, do_rotary: int = 0,
               past_present_share_buffer: int = 0, mask_filter_value: float = -10000.0,
               scale: float | None = None):
    """x [batch, seq, input_hidden] (uint8 or int8) @ weight [input_hidden, 3 * hidden] (per tensor or per column),
    then multi-head attention: softmax(q k^T * scale + mask) v, with the masked scores given mask_filter_value."""
    if do_rotary or past_present_share_buffer:
        raise ValueError("do_rotary and past_present_share_buffer are not supported")
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[2] or weight.shape[1] % 3:
        raise ValueError(f"input must be [batch, seq, hidden_in] and weight [hidden_in, 3 * hidden], got "
                         f"{list(x.shape)} and {list(weight.shape)}")
    if input_scale.numel() != 1 or (input_zero_point is not None and input_zero_point.numel() != 1):
        raise ValueError("input_scale and input_zero_point must be one value each (per tensor)")
    batch, seq, _ = x.shape
    hidden = weight.shape[1] // 3
    if hidden % num_heads:
        raise ValueError(f"the hidden size {hidden} is not a multiple of num_heads {num_heads}")
    head = hidden // num_heads
    n = weight.shape[1]
    acc = _integer_product(x, input_zero_point, weight, _column(weight_zero_point, n, "weight_zero_point"))
    # NOTE: onnxruntime's dequantization scale is weight_scale * input_scale, in float32
    qkv = acc.float() * (_column(weight_scale, n, "weight_scale").float() * input_scale.reshape(()).float()) \
        + bias.float()
    q, k, v = (t.reshape(batch, seq, num_heads, head).transpose(1, 2) for t in qkv.split(hidden, dim=-1))
    past_len = 0
    if past is not None:
        if tuple(past.shape[:3]) != (2, batch, num_heads) or past.shape[4] != head:
            raise ValueError(f"past must be [2, {batch}, {num_heads}, past_length, {head}], got {list(past.shape)}")
        past_len = past.shape[3]
        k, v = torch.cat([past[0].float(), k], dim=2), torch.cat([past[1].float(), v], dim=2)
    factor = torch.tensor(scale if scale else 1 / math.sqrt(head), dtype=torch.float32, device=q.device)
    scores = torch.matmul(q, k.transpose(-1, -2)) * factor
    allowed = _allowed(mask_index, batch, seq, past_len + seq, past_len, unidirectional, x.device)
    scores = scores + torch.where(allowed, 0.0, mask_filter_value).to(scores.dtype)
    out = torch.matmul(torch.softmax(scores, dim=-1), v)
    return out.transpose(1, 2).reshape(batch, seq, hidden).to(bias.dtype), torch.stack([k, v]).to(bias.dtype)


OPS = [dynamic_quantize_matmul, matmul_integer_to_float, dynamic_quantize_lstm, qattention]
