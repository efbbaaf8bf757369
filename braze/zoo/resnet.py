"""ResNet-50 (He et al., 2015), laid out as torchvision's `resnet50`: a 7x7 stem with max pooling,
four stages of bottleneck blocks (3, 4, 6, 3) with the stride on the 3x3 convolution (v1.5),
global average pooling and a 1000-way fully connected head.

Input `input` float32 [batch, 3, 224, 224], output `logits` [batch, 1000]. The export has
Conv, BatchNormalization, Relu, MaxPool, Add, GlobalAveragePool, Flatten and Gemm nodes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .common import ZooInput, ZooModel, build_cnn, image_sample

SEED = 50


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    def __init__(self, num_classes: int = 1000, blocks: tuple[int, ...] = (3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        stages = []
        for i, n in enumerate(blocks):
            width = 64 * 2**i
            layers = []
            for j in range(n):
                layers.append(Bottleneck(channels, width, stride=2 if i > 0 and j == 0 else 1))
                channels = width * Bottleneck.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build() -> ResNet50:
    return build_cnn(ResNet50, SEED)  # type: ignore[return-value]


SPEC = ZooModel(
    name="resnet50",
    summary="ResNet-50 v1.5 image classifier, 224x224, 1000 classes (torchvision layout)",
    build=build,
    inputs=(ZooInput("input", (3, 224, 224), np.dtype(np.float32)),),
    outputs=("logits",),
    sample=image_sample,
    op_types=frozenset({"Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "GlobalAveragePool", "Flatten",
                        "Gemm"}),
)
