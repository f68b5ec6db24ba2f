"""ResNet-18/34/50 in CIFAR form (He et al. 2016): 3x3 stem, no stem max-pool, GAP, linear.

Module names follow the widely used CIFAR code (kuangliu/pytorch-cifar): `conv1`, `bn1`,
`layer1..layer4`, blocks with `conv*`/`bn*`/`shortcut`, and `linear`, so weights published in
that layout map one to one. Stages: `layer1..layer4`; one stride digit per stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robench.models.base import StagedNet, kaiming_init, parse_strides, scaled, shortcut
from robench.registry import ARCHS


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = shortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (carries the stride) -> 1x1 x4, the layout of kuangliu's CIFAR code."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = shortcut(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(StagedNet):
    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depths: tuple[int, int, int, int],
        *,
        in_channels: int,
        num_classes: int,
        strides: tuple[int, ...],
        width: float,
    ):
        super().__init__()
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        in_planes = planes[0]
        for i, (p, n, s) in enumerate(zip(planes, depths, strides, strict=True), start=1):
            blocks = []
            for stride in (s,) + (1,) * (n - 1):
                blocks.append(block(in_planes, p, stride))
                in_planes = p * block.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)
        kaiming_init(self)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1(self.conv1(x)))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(self.avgpool(x), 1))


def _resnet(arch: str, block, depths, in_channels, num_classes, strides, width) -> ResNet:
    return ResNet(
        block,
        depths,
        in_channels=in_channels,
        num_classes=num_classes,
        strides=parse_strides(strides, arch),
        width=width,
    )


@ARCHS.register(
    "resnet18",
    "ResNet-18: 3x3 stem, BasicBlock [2,2,2,2], widths 64-512, GAP (He et al. 2016, CIFAR form)",
    default_strides="1222",
    rcm_strides="1122",
)
def resnet18(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _resnet("resnet18", BasicBlock, (2, 2, 2, 2), in_channels, num_classes, strides, width)


@ARCHS.register(
    "resnet34",
    "ResNet-34: 3x3 stem, BasicBlock [3,4,6,3], widths 64-512, GAP (He et al. 2016, CIFAR form)",
    default_strides="1222",
    rcm_strides="1122",
)
def resnet34(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _resnet("resnet34", BasicBlock, (3, 4, 6, 3), in_channels, num_classes, strides, width)


@ARCHS.register(
    "resnet50",
    "ResNet-50: 3x3 stem, Bottleneck [3,4,6,3] x4 expansion, GAP (He et al. 2016, CIFAR form)",
    default_strides="1222",
    rcm_strides="1122",
)
def resnet50(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _resnet("resnet50", Bottleneck, (3, 4, 6, 3), in_channels, num_classes, strides, width)
