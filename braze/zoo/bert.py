"""BERT-base encoder (Devlin et al., 2018), laid out as HuggingFace's `BertModel` without the pooler:
word, position and token-type embeddings summed and LayerNorm'ed, then 12 post-LayerNorm encoder
layers (hidden 768, 12 heads, intermediate 3072, GELU in its exact erf form). The attention mask
becomes an additive mask, (1 - mask) * float32.min broadcast over heads and queries, as
HuggingFace does. Vocabulary 30522, 512 positions, sequence length 128.

Inputs `input_ids` and `attention_mask`, int64 [batch, 128]; output `last_hidden_state` float32
[batch, 128, 768]. The export has Gather (embeddings), MatMul+Add (every linear layer), Reshape
and Transpose (heads), Div, Softmax, LayerNormalization and Erf-GELU nodes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .common import ZooInput, ZooModel, init_transformer, seeded

SEED = 768
VOCAB, MAX_POSITIONS, TYPE_VOCAB = 30522, 512, 2
HIDDEN, LAYERS, HEADS, INTERMEDIATE = 768, 12, 12, 3072
SEQUENCE = 128
EPS = 1e-12
CLS, SEP, PAD = 101, 102, 0


class Embeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, HIDDEN)
        self.position_embeddings = nn.Embedding(MAX_POSITIONS, HIDDEN)
        self.token_type_embeddings = nn.Embedding(TYPE_VOCAB, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=EPS)
        self.dropout = nn.Dropout(0.1)
        self.register_buffer("position_ids", torch.arange(MAX_POSITIONS).unsqueeze(0), persistent=False)
        self.register_buffer("token_type_ids", torch.zeros(1, MAX_POSITIONS, dtype=torch.long), persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        x = (self.word_embeddings(input_ids)
             + self.token_type_embeddings(self.token_type_ids[:, :length])
             + self.position_embeddings(self.position_ids[:, :length]))
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.head_dim = HIDDEN // HEADS
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.dropout = nn.Dropout(0.1)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size()[:-1] + (HEADS, self.head_dim)).permute(0, 2, 1, 3)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = self.split_heads(self.query(hidden))
        k = self.split_heads(self.key(hidden))
        v = self.split_heads(self.value(hidden))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
        probs = self.dropout(nn.functional.softmax(scores, dim=-1))
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return context.view(context.size()[:-2] + (HIDDEN,))


class AddNorm(nn.Module):
    """Projection, dropout, residual add and LayerNorm: HuggingFace's BertSelfOutput and BertOutput."""

    def __init__(self, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, HIDDEN)
        self.dropout = nn.Dropout(0.1)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=EPS)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = SelfAttention()
        self.attention_output = AddNorm(HIDDEN)
        self.intermediate = nn.Sequential(nn.Linear(HIDDEN, INTERMEDIATE), nn.GELU())
        self.output = AddNorm(INTERMEDIATE)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attended = self.attention_output(self.attention(hidden, mask), hidden)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = Embeddings()
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(input_ids)
        mask = attention_mask[:, None, None, :].to(hidden.dtype)
        mask = (1.0 - mask) * torch.finfo(hidden.dtype).min
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return hidden


def build() -> BertEncoder:
    with seeded(SEED):
        model = BertEncoder()
        init_transformer(model)
    return model.eval()


def sample(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """[CLS] random tokens [SEP], then [PAD] with mask 0 for the last 8 to 32 positions of each row."""
    ids = rng.integers(1000, VOCAB, size=(batch, SEQUENCE), dtype=np.int64)
    mask = np.ones((batch, SEQUENCE), dtype=np.int64)
    for row, length in enumerate(rng.integers(SEQUENCE - 32, SEQUENCE - 8, size=batch, endpoint=True)):
        ids[row, 0], ids[row, length - 1], ids[row, length:] = CLS, SEP, PAD
        mask[row, length:] = 0
    return {"input_ids": ids, "attention_mask": mask}


SPEC = ZooModel(
    name="bert",
    summary="BERT-base encoder, 12 layers, hidden 768, sequence 128; last hidden state (HuggingFace layout)",
    build=build,
    inputs=(ZooInput("input_ids", (SEQUENCE,), np.dtype(np.int64)),
            ZooInput("attention_mask", (SEQUENCE,), np.dtype(np.int64))),
    outputs=("last_hidden_state",),
    sample=sample,
    op_types=frozenset({"Gather", "MatMul", "Add", "Reshape", "Transpose", "Div", "Softmax", "LayerNormalization",
                        "Erf", "Mul", "Sub", "Cast", "Unsqueeze"}),
)
