"""MobileNetV2 (Sandler et al., 2018), laid out as torchvision's `mobilenet_v2`: a strided 3x3 stem,
17 inverted-residual blocks (1x1 expansion, 3x3 depthwise, linear 1x1 projection; a residual add
where stride and width allow), a 1x1 convolution to 1280 channels, global average pooling and a
1000-way linear classifier. Activations are ReLU6.

Input `input` float32 [batch, 3, 224, 224], output `logits` [batch, 1000]. The export has Conv
(grouped, for the depthwise layers), BatchNormalization, Clip (ReLU6), Add, GlobalAveragePool,
Flatten and Gemm nodes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .common import ZooInput, ZooModel, build_cnn, image_sample

SEED = 2

# expansion t, output channels c, repeats n, first stride s
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))


def conv_bn_relu6(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        layers = [conv_bn_relu6(in_channels, hidden, kernel=1)] if expansion != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, last_channels: int = 1280):
        super().__init__()
        channels = 32
        layers: list[nn.Module] = [conv_bn_relu6(3, channels, stride=2)]
        for t, c, n, s in SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        layers.append(conv_bn_relu6(channels, last_channels, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def build() -> MobileNetV2:
    return build_cnn(MobileNetV2, SEED)  # type: ignore[return-value]


SPEC = ZooModel(
    name="mobilenetv2",
    summary="MobileNetV2 image classifier, 224x224, 1000 classes (torchvision layout)",
    build=build,
    inputs=(ZooInput("input", (3, 224, 224), np.dtype(np.float32)),),
    outputs=("logits",),
    sample=image_sample,
    op_types=frozenset({"Conv", "BatchNormalization", "Clip", "Add", "GlobalAveragePool", "Flatten", "Gemm"}),
)
