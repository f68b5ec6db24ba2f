"""`cnn`: a small, fast CNN for the 8x8 digits demo and 28x28 MNIST-sized data.

Three 3x3 conv-BN-ReLU stages (32, 64, 128 channels), GAP, linear. The first stage keeps the
resolution (an 8x8 digit has no pixels to spare); the two stride digits apply to the second
and third convs. Stages: `layer1..layer3`.
"""

from __future__ import annotations

import torch
from torch import nn

from robench.models.base import StagedNet, parse_strides, scaled
from robench.registry import ARCHS


def _conv_bn_relu(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class SmallCNN(StagedNet):
    stage_names = ("layer1", "layer2", "layer3")

    def __init__(
        self, *, in_channels: int, num_classes: int, strides: tuple[int, ...], width: float
    ):
        super().__init__()
        c1, c2, c3 = (scaled(c, width) for c in (32, 64, 128))
        self.layer1 = _conv_bn_relu(in_channels, c1, 1)
        self.layer2 = _conv_bn_relu(c1, c2, strides[0])
        self.layer3 = _conv_bn_relu(c2, c3, strides[1])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(c3, num_classes)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(self.avgpool(x), 1))


@ARCHS.register(
    "cnn",
    "Small CNN: three 3x3 conv-BN-ReLU (32-64-128), GAP, linear (robench's own, for digits/MNIST)",
    default_strides="12",
    rcm_strides="11",
)
def cnn(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return SmallCNN(
        in_channels=in_channels,
        num_classes=num_classes,
        strides=parse_strides(strides, "cnn"),
        width=width,
    )
