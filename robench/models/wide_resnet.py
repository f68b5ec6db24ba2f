"""WideResNet-d-k (Zagoruyko & Komodakis 2016) as defined in the TRADES / RobustBench code.

Pre-activation BasicBlocks, dropout 0, widths 16 / 16k / 32k / 64k, final BN-ReLU, GAP, fc.
Module names follow that code (`conv1`, `block1..block3` each holding `layer`, blocks with
`bn1`/`conv1`/`bn2`/`conv2`/`convShortcut`, final `bn1`, `fc`), so weights published in that
layout map one to one. Stages: `block1..block3` (the reference's names, kept for that reason,
rather than the `layerN` of the other families); one stride digit per group.
The reference's unused `sub_block1` is left out: it holds parameters that never get a gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robench.models.base import StagedNet, Subsample, kaiming_init, parse_strides, scaled
from robench.registry import ARCHS


class WideBasicBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, padding=1, bias=False)
        # The projection sees the activated input (as in TRADES' WRN); identity paths see x.
        self.equal_in_out = in_planes == out_planes
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
        else:
            self.convShortcut = Subsample(stride) if stride != 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        shortcut = self.convShortcut(x if self.equal_in_out else act)
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return out + shortcut


class NetworkBlock(nn.Module):
    """One group of blocks; a wrapper only so parameter names match the reference."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        blocks = [WideBasicBlock(in_planes, out_planes, stride)]
        blocks += [WideBasicBlock(out_planes, out_planes, 1) for _ in range(n - 1)]
        self.layer = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(StagedNet):
    stage_names = ("block1", "block2", "block3")

    def __init__(
        self,
        depth: int,
        widen: int,
        *,
        in_channels: int,
        num_classes: int,
        strides: tuple[int, ...],
        width: float,
    ):
        super().__init__()
        n = (depth - 4) // 6
        planes = [scaled(c, width) for c in (16, 16 * widen, 32 * widen, 64 * widen)]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, padding=1, bias=False)
        self.block1 = NetworkBlock(n, planes[0], planes[1], strides[0])
        self.block2 = NetworkBlock(n, planes[1], planes[2], strides[1])
        self.block3 = NetworkBlock(n, planes[2], planes[3], strides[2])
        self.bn1 = nn.BatchNorm2d(planes[3])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes[3], num_classes)
        kaiming_init(self)
        nn.init.zeros_(self.fc.bias)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _wrn(arch, depth, widen, in_channels, num_classes, strides, width) -> WideResNet:
    return WideResNet(
        depth,
        widen,
        in_channels=in_channels,
        num_classes=num_classes,
        strides=parse_strides(strides, arch),
        width=width,
    )


@ARCHS.register(
    "wrn-28-10",
    "WideResNet-28-10: pre-activation blocks 4 per group, widths 160-640, final BN-ReLU, GAP "
    "(Zagoruyko & Komodakis 2016; TRADES/RobustBench definition)",
    default_strides="122",
    rcm_strides="112",
)
def wrn_28_10(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _wrn("wrn-28-10", 28, 10, in_channels, num_classes, strides, width)


@ARCHS.register(
    "wrn-34-10",
    "WideResNet-34-10: pre-activation blocks 5 per group, widths 160-640, final BN-ReLU, GAP "
    "(Zagoruyko & Komodakis 2016; TRADES/RobustBench definition)",
    default_strides="122",
    rcm_strides="112",
)
def wrn_34_10(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _wrn("wrn-34-10", 34, 10, in_channels, num_classes, strides, width)
