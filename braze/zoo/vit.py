"""ViT-Tiny/16 (Dosovitskiy et al., 2020), laid out as timm's `vit_tiny_patch16_224`: 16x16 patches
embedded by a strided convolution, a class token and a learned position embedding, 12 pre-norm
blocks (dim 192, 3 heads, MLP 768 with erf GELU, LayerNorm eps 1e-6), a final LayerNorm, and a
1000-way head on the class token.

Input `input` float32 [batch, 3, 224, 224], output `logits` [batch, 1000]. The export has Conv
(patch embedding), Concat (class token), MatMul+Add, Split (q, k, v), Softmax,
LayerNormalization, Erf-GELU and Gemm nodes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .common import ZooInput, ZooModel, init_transformer, random_images, seeded

SEED = 16
IMAGE, PATCH, DIM, DEPTH, HEADS, MLP = 224, 16, 192, 12, 3, 768
EPS = 1e-6


class PatchEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, DIM, PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.head_dim = DIM // HEADS
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(DIM, MLP)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(MLP, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM, eps=EPS)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(DIM, eps=EPS)
        self.mlp = Mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.patch_embed = PatchEmbed()
        self.cls_token = nn.Parameter(torch.empty(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.empty(1, (IMAGE // PATCH) ** 2 + 1, DIM))
        self.blocks = nn.Sequential(*(Block() for _ in range(DEPTH)))
        self.norm = nn.LayerNorm(DIM, eps=EPS)
        self.head = nn.Linear(DIM, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def build() -> VisionTransformer:
    with seeded(SEED):
        model = VisionTransformer()
        init_transformer(model)
        nn.init.normal_(model.cls_token, std=0.02)
        nn.init.normal_(model.pos_embed, std=0.02)
    return model.eval()


def sample(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"input": random_images(batch, rng)}


SPEC = ZooModel(
    name="vit",
    summary="ViT-Tiny/16 image classifier, 224x224, 1000 classes (timm layout)",
    build=build,
    inputs=(ZooInput("input", (3, IMAGE, IMAGE), np.dtype(np.float32)),),
    outputs=("logits",),
    sample=sample,
    op_types=frozenset({"Conv", "Concat", "MatMul", "Add", "Softmax", "LayerNormalization", "Erf", "Gemm"}),
)
