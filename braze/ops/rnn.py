"""Recurrent layers: RNN, GRU and LSTM (opsets 7 and 14; 14 adds `layout`, 22 only bfloat16).

One driver serves the three: X @ W^T for every step at once, then a loop over the steps (the
sequence length is a shape, never data) applying the cell. Directions: forward, reverse, or
bidirectional (two independent passes, stacked). `sequence_lens` (per batch entry) are honoured
as onnxruntime does: steps past an entry's length leave its state alone and give zeros in Y; a
reverse pass starts at the entry's last valid step; an entry of length 0 ends in zero states.
`clip` bounds every gate's input before its activation.

Activations and their alpha/beta follow the ONNX list: alpha and beta are consumed, in order, by
the activations that take them; missing ones take the defaults of the ONNX op of that name, as
the specification says (LeakyRelu 0.01, ThresholdedRelu 1, Elu 1, HardSigmoid 0.2 and 0.5,
Affine 1 and 0). NOTE: onnxruntime defaults Affine's and ThresholdedRelu's to 0 instead.
ScaledTanh, to which ONNX gives no defaults, needs both values given.

Half-precision inputs are computed in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .opdef import op

Activation = Callable[[torch.Tensor], torch.Tensor]
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}
# name -> (how many of alpha, beta it takes, default alpha, default beta); None: no default
_ACTIVATIONS: dict[str, tuple[int, float | None, float | None]] = {
    "relu": (0, 0.0, 0.0), "tanh": (0, 0.0, 0.0), "sigmoid": (0, 0.0, 0.0), "softsign": (0, 0.0, 0.0),
    "softplus": (0, 0.0, 0.0), "leakyrelu": (1, 0.01, 0.0), "thresholdedrelu": (1, 1.0, 0.0), "elu": (1, 1.0, 0.0),
    "affine": (2, 1.0, 0.0), "scaledtanh": (2, None, None), "hardsigmoid": (2, 0.2, 0.5),
}


def _activation(name: str, alpha: float, beta: float) -> Activation:
    fns: dict[str, Activation] = {
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "softsign": lambda x: x / (1 + x.abs()),
        "softplus": F.softplus,
        "leakyrelu": lambda x: torch.where(x >= 0, x, alpha * x),
        "thresholdedrelu": lambda x: torch.where(x >= alpha, x, 0),
        "elu": lambda x: torch.where(x >= 0, x, alpha * torch.expm1(x)),
        "affine": lambda x: alpha * x + beta,
        "scaledtanh": lambda x: alpha * torch.tanh(beta * x),
        "hardsigmoid": lambda x: torch.clamp(alpha * x + beta, 0, 1),
    }
    return fns[name]


def _activations(names: Sequence[str] | None, defaults: Sequence[str], directions: int,
                 alphas: Sequence[float] | None, betas: Sequence[float] | None) -> list[list[Activation]]:
    """The activation functions of each direction."""
    per = len(defaults)
    names = list(defaults) * directions if names is None else list(names)
    if len(names) == per and directions == 2:
        names = names * 2
    elif len(names) == 2 * per and directions == 1:  # RNN's default lists one per direction
        names = names[:per]
    if len(names) != per * directions:
        raise ValueError(f"activations needs {per} function(s) per direction ({per * directions} in all), "
                         f"got {len(names)}: {names}")
    alpha_iter, beta_iter = iter(alphas or ()), iter(betas or ())
    fns = []
    for name in names:
        key = name.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"activation {name!r} is not one of {', '.join(sorted(_ACTIVATIONS))} (case-insensitive)")
        takes, alpha, beta = _ACTIVATIONS[key]
        if takes >= 1:
            alpha = next(alpha_iter, alpha)
        if takes == 2:
            beta = next(beta_iter, beta)
        if alpha is None or beta is None:
            raise ValueError(f"activation {name} needs its alpha and beta in activation_alpha and activation_beta "
                             "(ONNX defines no defaults for them)")
        fns.append(_activation(key, alpha, beta))
    return [fns[d * per:(d + 1) * per] for d in range(directions)]


@dataclass
class _Direction:
    """One direction's parameters, already cut out of W, R, B and P."""
    w: torch.Tensor  # (gates * hidden, input)
    r: torch.Tensor  # (gates * hidden, hidden)
    wb: torch.Tensor  # (gates * hidden,)
    rb: torch.Tensor
    p: torch.Tensor | None  # LSTM peepholes (3 * hidden,): i, o, f
    fns: list[Activation]


def _rnn_cell(d: _Direction, xw, h, c, clip, **_):
    return d.fns[0](clip(xw + h @ d.r.T + d.rb)), None


def _gru_cell(d: _Direction, xw, h, c, clip, linear_before_reset: int = 0, **_):
    f, g = d.fns
    hidden = h.shape[-1]
    xz, xr, xh = xw.split(hidden, dim=-1)
    rz, rr, rh = d.r.split(hidden, dim=0)
    bz, br, bh = d.rb.split(hidden)
    z = f(clip(xz + h @ rz.T + bz))
    reset = f(clip(xr + h @ rr.T + br))
    if linear_before_reset:
        candidate = g(clip(xh + reset * (h @ rh.T + bh)))
    else:
        candidate = g(clip(xh + (reset * h) @ rh.T + bh))
    return (1 - z) * candidate + z * h, None


def _lstm_cell(d: _Direction, xw, h, c, clip, input_forget: int = 0, **_):
    f, g, act_h = d.fns
    i, o, forget, cell = (xw + h @ d.r.T + d.rb).chunk(4, dim=-1)
    pi, po, pf = d.p.chunk(3) if d.p is not None else (0, 0, 0)
    i = f(clip(i + pi * c))
    forget = 1 - i if input_forget else f(clip(forget + pf * c))
    c = forget * c + i * g(clip(cell))
    o = f(clip(o + po * c))
    return o * act_h(c), c


_CELLS = {"RNN": (1, ("Tanh",), _rnn_cell), "GRU": (3, ("Sigmoid", "Tanh"), _gru_cell),
          "LSTM": (4, ("Sigmoid", "Tanh", "Tanh"), _lstm_cell)}


def _reverse_index(steps: int, lens: torch.Tensor) -> torch.Tensor:
    """(steps, batch) indices that reverse each entry's first lens[b] steps and keep the rest."""
    t = torch.arange(steps, device=lens.device).unsqueeze(1)
    return torch.where(t < lens, lens - 1 - t, t)


def _run_direction(cell, d: _Direction, x, h, c, lens, reverse: bool, clip, cell_attrs):
    """x: (steps, batch, input). Returns Y (steps, batch, hidden), the last h and c."""
    steps = x.shape[0]
    index = _reverse_index(steps, lens) if reverse else None
    if index is not None:
        x = torch.gather(x, 0, index.unsqueeze(-1).expand(x.shape))
    xw = x @ d.w.T + d.wb
    ys = []
    for t in range(steps):
        h_new, c_new = cell(d, xw[t], h, c, clip, **cell_attrs)
        valid = (t < lens).unsqueeze(1)
        h = torch.where(valid, h_new, h)
        c = torch.where(valid, c_new, c) if c is not None else None
        ys.append(torch.where(valid, h_new, 0))
    y = torch.stack(ys) if ys else x.new_zeros((0, *h.shape))
    if index is not None:
        y = torch.gather(y, 0, index.unsqueeze(-1).expand(y.shape))
    ran = (lens > 0).unsqueeze(1)  # an empty sequence ends in zero states, not the initial ones
    return y, torch.where(ran, h, 0), torch.where(ran, c, 0) if c is not None else None


def _recurrent(kind: str, x, w, r, b, sequence_lens, initial_h, initial_c=None, p=None, *, activation_alpha,
               activation_beta, activations, clip, direction, hidden_size, layout=0, **cell_attrs):
    gates, defaults, cell = _CELLS[kind]
    if x.dtype not in _FLOATS or any(t is not None and t.dtype != x.dtype for t in (w, r, b, initial_h, initial_c, p)):
        raise TypeError(f"X, W, R, B, initial states and P must share one floating-point type, X is {x.dtype}")
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be forward, reverse or bidirectional, got {direction!r}")
    if layout not in (0, 1):
        raise ValueError(f"layout must be 0 or 1, got {layout}")
    dirs = _DIRECTIONS[direction]
    if x.dim() != 3:
        raise ValueError(f"X must be 3-D, got shape {list(x.shape)}")
    if layout:
        x = x.transpose(0, 1)
    steps, batch, inputs = x.shape
    hidden = r.shape[-1] if hidden_size is None else hidden_size
    expected = {"W": (w, (dirs, gates * hidden, inputs)), "R": (r, (dirs, gates * hidden, hidden)),
                "B": (b, (dirs, 2 * gates * hidden)), "P": (p, (dirs, 3 * hidden)),
                "initial_h": (initial_h, (batch, dirs, hidden) if layout else (dirs, batch, hidden)),
                "initial_c": (initial_c, (batch, dirs, hidden) if layout else (dirs, batch, hidden))}
    for name, (t, shape) in expected.items():
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"{name} has shape {list(t.shape)}, expected {list(shape)} "
                             f"({dirs} direction(s), hidden_size {hidden}, input size {inputs})")
    if clip is not None and clip <= 0:
        raise ValueError(f"clip must be positive, got {clip}")
    fns = _activations(activations, defaults, dirs, activation_alpha, activation_beta)

    dtype = x.dtype
    wide = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    x, w, r = x.to(wide), w.to(wide), r.to(wide)
    b = torch.zeros(dirs, 2 * gates * hidden, dtype=wide, device=x.device) if b is None else b.to(wide)
    states = []
    for t in (initial_h, initial_c):
        if t is not None and layout:
            t = t.transpose(0, 1)
        states.append(torch.zeros(dirs, batch, hidden, dtype=wide, device=x.device) if t is None else t.to(wide))
    lens = _lens(sequence_lens, steps, batch, x.device)
    bound = (lambda v: v.clamp(-clip, clip)) if clip is not None else (lambda v: v)

    ys, hs, cs = [], [], []
    for i in range(dirs):
        d = _Direction(w[i], r[i], b[i, :gates * hidden], b[i, gates * hidden:],
                       None if p is None else p[i].to(wide), fns[i])
        reverse = direction == "reverse" or i == 1
        y, h, c = _run_direction(cell, d, x, states[0][i], states[1][i] if kind == "LSTM" else None, lens,
                                 reverse, bound, cell_attrs)
        ys.append(y)
        hs.append(h)
        cs.append(h if c is None else c)
    y, y_h, y_c = torch.stack(ys, dim=1), torch.stack(hs), torch.stack(cs)  # (steps, dirs, batch, hidden)
    if layout:
        y, y_h, y_c = y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
    out = (y.to(dtype), y_h.to(dtype), y_c.to(dtype))
    return out if kind == "LSTM" else out[:2]


def _lens(sequence_lens: torch.Tensor | None, steps: int, batch: int, device: torch.device) -> torch.Tensor:
    """Each batch entry's length, as int64 (batch,)."""
    if sequence_lens is None:
        return torch.full((batch,), steps, dtype=torch.int64, device=device)
    if sequence_lens.dtype not in (torch.int32, torch.int64) or tuple(sequence_lens.shape) != (batch,):
        raise ValueError(f"sequence_lens must be int32 of shape [{batch}], "
                         f"got {sequence_lens.dtype} {list(sequence_lens.shape)}")
    lens = sequence_lens.to(torch.int64)
    if lens.device.type != "meta" and bool(((lens < 0) | (lens > steps)).any()):
        raise ValueError(f"sequence_lens {lens.tolist()} must lie in [0, {steps}]")
    return lens


@op("RNN", since=7)
def rnn_7(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha: list[float] | None = None,
          activation_beta: list[float] | None = None, activations: list[str] | None = None,
          clip: float | None = None, direction: str = "forward", hidden_size: int | None = None):
    return _recurrent("RNN", x, w, r, b, sequence_lens, initial_h, activation_alpha=activation_alpha,
                      activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                      hidden_size=hidden_size)


@op("RNN", since=14)
def rnn_14(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha: list[float] | None = None,
           activation_beta: list[float] | None = None, activations: list[str] | None = None,
           clip: float | None = None, direction: str = "forward", hidden_size: int | None = None, layout: int = 0):
    return _recurrent("RNN", x, w, r, b, sequence_lens, initial_h, activation_alpha=activation_alpha,
                      activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                      hidden_size=hidden_size, layout=layout)


@op("GRU", since=7)
def gru_7(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha: list[float] | None = None,
          activation_beta: list[float] | None = None, activations: list[str] | None = None,
          clip: float | None = None, direction: str = "forward", hidden_size: int | None = None,
          linear_before_reset: int = 0):
    return _recurrent("GRU", x, w, r, b, sequence_lens, initial_h, activation_alpha=activation_alpha,
                      activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                      hidden_size=hidden_size, linear_before_reset=linear_before_reset)


@op("GRU", since=14)
def gru_14(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha: list[float] | None = None,
           activation_beta: list[float] | None = None, activations: list[str] | None = None,
           clip: float | None = None, direction: str = "forward", hidden_size: int | None = None, layout: int = 0,
           linear_before_reset: int = 0):
    return _recurrent("GRU", x, w, r, b, sequence_lens, initial_h, activation_alpha=activation_alpha,
                      activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                      hidden_size=hidden_size, layout=layout, linear_before_reset=linear_before_reset)


@op("LSTM", since=7)
def lstm_7(x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None, *,
           activation_alpha: list[float] | None = None, activation_beta: list[float] | None = None,
           activations: list[str] | None = None, clip: float | None = None, direction: str = "forward",
           hidden_size: int | None = None, input_forget: int = 0):
    return _recurrent("LSTM", x, w, r, b, sequence_lens, initial_h, initial_c, p, activation_alpha=activation_alpha,
                      activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                      hidden_size=hidden_size, input_forget=input_forget)


@op("LSTM", since=14)
def lstm_14(x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None, *,
            activation_alpha: list[float] | None = None, activation_beta: list[float] | None = None,
            activations: list[str] | None = None, clip: float | None = None, direction: str = "forward",
            hidden_size: int | None = None, input_forget: int = 0, layout: int = 0):
    return _recurrent("LSTM", x, w, r, b, sequence_lens, initial_h, initial_c, p, activation_alpha=activation_alpha,
                      activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                      hidden_size=hidden_size, input_forget=input_forget, layout=layout)


OPS = [rnn_7, rnn_14, gru_7, gru_14, lstm_7, lstm_14]
