"""A ResNet-18-sized image model for the large-input rows (imports torch).

torchvision's ResNet-18 layout (basic blocks of two 3x3 convolutions, widths 64→512, 1000
classes) written out here: torchvision's wheels do not load beside this machine's torch build,
and only the cost matters, so the weights are random (fixed seed). Input: one 3x224x224 float32
image per instance, 588 KiB of tensor bytes.
"""

from __future__ import annotations

import torch
from torch import nn


class _Block(nn.Module):
    def __init__(self, fan_in: int, fan_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(fan_in, fan_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(fan_out)
        self.conv2 = nn.Conv2d(fan_out, fan_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(fan_out)
        self.down: nn.Module = nn.Identity()
        if stride != 1 or fan_in != fan_out:
            self.down = nn.Sequential(
                nn.Conv2d(fan_in, fan_out, 1, stride, bias=False), nn.BatchNorm2d(fan_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.down(x))


def resnet18(seed: int = 0, classes: int = 1000) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    fan_in = 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_Block(fan_in, width, stride), _Block(width, width, 1)]
        fan_in = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers).eval()
