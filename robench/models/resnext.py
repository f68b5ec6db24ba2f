"""ResNeXt-29 (Xie et al. 2017) in CIFAR form: the network of the GWI paper's CIFAR results.

Group-wise inhibition (Liu et al. 2021) reports its CIFAR-10 and CIFAR-10-C numbers on the
CIFAR ResNeXt-29 that AugMix (Hendrycks et al. 2020) made the common-corruption baseline: a
3x3 stem of 64 channels with BN-ReLU, three stages of three bottleneck blocks (1x1 reduce ->
grouped 3x3 carrying the stride -> 1x1 expand, each followed by BN; a 1x1 conv + BN
projection where the width changes), outputs 256 / 512 / 1024 channels, GAP and one linear
layer. He fan-out init for the convolutions, He fan-in for the classifier, zero biases.

The papers call it "ResNeXt-29 (32x4d)", but the code both papers ran (AugMix's
`resnext29()` and the GWI authors' `ResneXt()`) builds cardinality 4 with 32 channels per
group in the first stage (64 and 128 in the next): 4 groups, 128 / 256 / 512 inner channels.
robench builds what was run and names it so: `resnext29-4x32d` (6.8 M parameters).
Module names follow AugMix's code (`conv_1_3x3`, `bn_1`, `stage_1..stage_3`, blocks with
`conv_reduce`/`bn_reduce`, `conv_conv`/`bn`, `conv_expand`/`bn_expand`, `downsample`, and
`classifier`). Stages: `stage_1..stage_3`; one stride digit per stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robench.models.base import StagedNet, kaiming_init, parse_strides, scaled, shortcut
from robench.registry import ARCHS


class ResNeXtBottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, cardinality: int,
                 group_width: int):
        super().__init__()
        inner = cardinality * group_width
        out_planes = planes * self.expansion
        self.conv_reduce = nn.Conv2d(in_planes, inner, 1, bias=False)
        self.bn_reduce = nn.BatchNorm2d(inner)
        self.conv_conv = nn.Conv2d(inner, inner, 3, stride=stride, padding=1,
                                   groups=cardinality, bias=False)
        self.bn = nn.BatchNorm2d(inner)
        self.conv_expand = nn.Conv2d(inner, out_planes, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(out_planes)
        self.downsample = shortcut(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_reduce(self.conv_reduce(x)))
        out = F.relu(self.bn(self.conv_conv(out)))
        out = self.bn_expand(self.conv_expand(out))
        return F.relu(out + self.downsample(x))


class ResNeXt(StagedNet):
    stage_names = ("stage_1", "stage_2", "stage_3")

    def __init__(self, depth: int, cardinality: int, base_width: int, *, in_channels: int,
                 num_classes: int, strides: tuple[int, ...], width: float):
        super().__init__()
        blocks = (depth - 2) // 9
        stem = scaled(64, width)
        self.conv_1_3x3 = nn.Conv2d(in_channels, stem, 3, padding=1, bias=False)
        self.bn_1 = nn.BatchNorm2d(stem)
        in_planes = stem
        for i, (planes, stride) in enumerate(zip((64, 128, 256), strides, strict=True), start=1):
            # The group width doubles with each stage (32, 64, 128 at base width 32).
            group_width = max(1, int(planes * base_width / 64 * width))
            planes = scaled(planes, width)
            stage = []
            for s in (stride,) + (1,) * (blocks - 1):
                stage.append(ResNeXtBottleneck(in_planes, planes, s, cardinality, group_width))
                in_planes = planes * ResNeXtBottleneck.expansion
            setattr(self, f"stage_{i}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_planes, num_classes)
        kaiming_init(self)
        nn.init.kaiming_normal_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_1(self.conv_1_3x3(x)))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))


@ARCHS.register(
    "resnext29-4x32d",
    "ResNeXt-29: 3 stages of 3 bottlenecks, 4 groups of 32-128 channels, outputs 256-1024, "
    "GAP (Xie et al. 2017; the network AugMix's and the GWI authors' CIFAR code build)",
    default_strides="122",
    rcm_strides="112",
)
def resnext29_4x32d(*, in_channels: int, num_classes: int, strides: str,
                    width: float) -> nn.Module:
    return ResNeXt(29, 4, 32, in_channels=in_channels, num_classes=num_classes,
                   strides=parse_strides(strides, "resnext29-4x32d"), width=width)
