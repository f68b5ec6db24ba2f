"""PreActResNet-18 (He et al. 2016, identity mappings), the CIFAR form of Rice et al. 2020.

The stem conv has no BN after it (each block normalises its own input) and a final BN-ReLU
precedes GAP. Module names follow that code (`conv1`, `layer1..layer4`, blocks with
`bn1`/`conv1`/`bn2`/`conv2`/`shortcut`, final `bn`, `linear`), so its weights map one to one.
Stages: `layer1..layer4`; one stride digit per stage.

This is Rice et al.'s (robust_overfitting) block, whose projection shortcut takes the
activated input; it is not the PreActResNet-18 file of Wong et al.'s fast_adversarial code, so
the `cifar10-fast-at` recipe trains Wong's method on Rice's network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robench.models.base import StagedNet, Subsample, parse_strides, scaled
from robench.registry import ARCHS


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        # A projection sees the activated input (as in Rice et al.'s code); identity paths see x.
        self.projects = in_planes != planes
        if self.projects:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
            )
        else:
            self.shortcut = Subsample(stride) if stride != 1 else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out if self.projects else x)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(StagedNet):
    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(
        self,
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
        in_planes = planes[0]
        for i, (p, n, s) in enumerate(zip(planes, depths, strides, strict=True), start=1):
            blocks = []
            for stride in (s,) + (1,) * (n - 1):
                blocks.append(PreActBlock(in_planes, p, stride))
                in_planes = p
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(in_planes)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(x))
        return self.linear(torch.flatten(self.avgpool(x), 1))


@ARCHS.register(
    "preactresnet18",
    "PreActResNet-18: 3x3 stem without BN, pre-activation BasicBlock [2,2,2,2], final BN-ReLU, "
    "GAP (He et al. 2016; CIFAR form of Rice et al. 2020)",
    default_strides="1222",
    rcm_strides="1122",
)
def preactresnet18(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return PreActResNet(
        (2, 2, 2, 2),
        in_channels=in_channels,
        num_classes=num_classes,
        strides=parse_strides(strides, "preactresnet18"),
        width=width,
    )
