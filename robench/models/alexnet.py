"""AlexNet (Krizhevsky 2014, "one weird trick" widths) in the RCM CIFAR form.

conv k5 (stride digit 1) -> max-pool k2 (digit 2) -> conv k5 -> max-pool k2 (digit 3) ->
three 3x3 convs -> max-pool k2 (digit 4) -> GAP -> dropout, fc 256-512, dropout, fc 512-512,
fc -> classes. A stride-1 pool is kept (it shrinks the map by one pixel), as in the RCM code.
Stages: `layer1` (conv1 + pool), `layer2` (conv2 + pool), `layer3` (conv3-5 + pool).
"""

from __future__ import annotations

import torch
from torch import nn

from robench.models.base import StagedNet, parse_strides, scaled
from robench.registry import ARCHS


def _conv_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2), nn.ReLU(True)]


class AlexNet(StagedNet):
    stage_names = ("layer1", "layer2", "layer3")

    def __init__(
        self, *, in_channels: int, num_classes: int, strides: tuple[int, ...], width: float
    ):
        super().__init__()
        c1, c2, c3, c4, c5 = (scaled(c, width) for c in (64, 192, 384, 256, 256))
        self.layer1 = nn.Sequential(
            *_conv_relu(in_channels, c1, 5, stride=strides[0]), nn.MaxPool2d(2, stride=strides[1])
        )
        self.layer2 = nn.Sequential(*_conv_relu(c1, c2, 5), nn.MaxPool2d(2, stride=strides[2]))
        self.layer3 = nn.Sequential(
            *_conv_relu(c2, c3, 3),
            *_conv_relu(c3, c4, 3),
            *_conv_relu(c4, c5, 3),
            nn.MaxPool2d(2, stride=strides[3]),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(c5, 512),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(512, 512),
            nn.ReLU(True),
            nn.Linear(512, num_classes),
        )

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))


@ARCHS.register(
    "alexnet",
    "AlexNet: k5 conv + 4 convs, 3 max-pools, GAP, fc 256-512-512 "
    "(Krizhevsky 2014; RCM CIFAR form)",
    default_strides="2222",
    rcm_strides="1122",
)
def alexnet(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return AlexNet(
        in_channels=in_channels,
        num_classes=num_classes,
        strides=parse_strides(strides, "alexnet"),
        width=width,
    )
