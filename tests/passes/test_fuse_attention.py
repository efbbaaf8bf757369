"""Attention fusion (braze/passes/fuse_attention.py): MatMul(q, k) -> scale -> + mask -> Softmax(last
axis) -> MatMul(., v) becomes one Attention layer, in each of its optional forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from .helpers import Net, check, export, layer_ops, torch_feeds

Q, K, V, MASK = [2, 3, 5, 8], [2, 3, 8, 5], [2, 3, 5, 4], [2, 1, 1, 5]


def attention(net: Net, q_scale=None, scale: tuple | None = None, masked: bool = False, axis: int = -1,
              probs=None) -> str:
    """q (* q_scale) @ k (scale[0] by scale[1]) (+ mask) -> Softmax(axis) (-> probs) @ v."""
    q = net.input("q", Q)
    if q_scale is not None:
        q = net.op("Mul", net.const(q_scale), q)
    scores = net.op("MatMul", q, net.input("k", K))
    if scale is not None:
        scores = net.op(scale[0], scores, net.const(scale[1]))
    if masked:
        scores = net.op("Add", net.input("mask", MASK), scores)
    p = net.op("Softmax", scores, axis=axis)
    if probs is not None:
        p = probs(net, p)
    return net.op("MatMul", p, net.input("v", V))


@pytest.mark.parametrize("q_scaled, scaled, masked", list(itertools.product((True, False), repeat=3)))
def test_every_form_becomes_one_attention_layer(q_scaled, scaled, masked):
    net = Net()
    y = attention(net, q_scale=0.5 if q_scaled else None, scale=("Div", 2.0) if scaled else None, masked=masked)
    engine = check(net.model(y), fired={"attention": 1}, ops=["Attention"])
    layer = engine.graph.nodes[0]
    assert layer.attrs["scale"] == pytest.approx((0.5 if q_scaled else 1.0) * (0.5 if scaled else 1.0))
    assert len(layer.inputs) == (4 if masked else 3)


def test_a_multiplied_scale():
    net = Net()
    engine = check(net.model(attention(net, scale=("Mul", 0.125), masked=True)), fired={"attention": 1},
                   ops=["Attention"])
    assert engine.graph.nodes[0].attrs["scale"] == pytest.approx(0.125)


class WrittenOutAttention(nn.Module):
    """Attention with k transposed in the module and the softmax written out, as some exports have it."""

    def forward(self, q, k, v):
        s = q @ k.transpose(-1, -2) / 8 ** 0.5
        e = torch.exp(s - s.amax(-1, keepdim=True))
        return (e / e.sum(-1, keepdim=True)) @ v


def test_attention_with_a_written_out_softmax_is_fused_after_recognition():
    q, k, v = (torch.randn(1, 2, 5, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    check(export(WrittenOutAttention(), q, k, v), torch_feeds(q, k, v), fired={"softmax": 1, "attention": 1},
          ops=["Transpose", "Attention"])


def test_softmax_not_on_the_last_axis_is_not_attention():
    net = Net()
    check(net.model(attention(net, scale=("Div", 2.0), axis=2)), fired={"attention": 0},
          ops=["MatMul", "Div", "Softmax", "MatMul"])


def test_probabilities_that_are_also_returned_are_not_fused():
    net = Net()
    y = attention(net, masked=True)
    probs = next(n.input[0] for n in net.nodes if n.op_type == "MatMul" and n.output[0] == y)
    check(net.model(y, probs), fired={"attention": 0}, ops=["MatMul", "Add", "Softmax", "MatMul"])


def test_dropout_that_may_train_between_softmax_and_v_is_not_fused():
    def dropout(net: Net, p: str) -> str:
        return net.op("Dropout", p, net.const(0.1), net.input("training", [], np.bool_))

    net = Net()
    model = net.model(attention(net, scale=("Div", 2.0), probs=dropout))
    feeds = {name: np.random.default_rng(i).standard_normal(shape).astype(np.float32)
             for i, (name, shape) in enumerate((("q", Q), ("k", K), ("v", V)))}
    engine = check(model, {**feeds, "training": np.array(False)}, fired={"attention": 0})
    assert "Attention" not in layer_ops(engine)


def test_a_scale_that_varies_is_not_a_scale():
    net = Net()
    y = attention(net, scale=("Div", np.arange(1.0, 6.0)))
    check(net.model(y), fired={"attention": 0}, ops=["MatMul", "Div", "Softmax", "MatMul"])


@pytest.mark.parametrize("where", ["q", "scores"])
def test_a_scale_that_broadcasts_to_more_dims_is_not_absorbed(where):
    net = Net()
    shape = [2, 1, 1, 1, 1]
    y = attention(net, q_scale=np.full(shape, 0.5) if where == "q" else None,
                  scale=("Mul", np.full(shape, 0.5)) if where == "scores" else None)
    engine = check(net.model(y), fired={"attention": 0})
    assert engine.outputs[0].shape == (2, 2, 3, 5, 4)
