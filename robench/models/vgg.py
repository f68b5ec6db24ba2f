"""VGG-11/13/16/19 (Simonyan & Zisserman 2015), with and without BN, in the RCM CIFAR form.

Standard configurations of 3x3 convs; each of the 5 max-pools (k2) is one stage boundary and
one stride digit: '2' keeps the pool, '1' removes it (a k2 stride-1 pool would only shave a
pixel; the RCM code drops it). Then GAP and the RCM head fc 512-256-256-classes with dropout.
Stages: `layer1..layer5`, each the convs of one block followed by its pool (if kept).
"""

from __future__ import annotations

import torch
from torch import nn

from robench.models.base import StagedNet, kaiming_init, parse_strides, scaled
from robench.registry import ARCHS

# Conv widths of each block, one tuple per pool (configurations A, B, D, E of the paper).
BLOCKS: dict[int, tuple[tuple[int, ...], ...]] = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def _block(in_ch: int, widths: list[int], batch_norm: bool, stride: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for out_ch in widths:
        layers.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
        in_ch = out_ch
    if stride == 2:
        layers.append(nn.MaxPool2d(2, stride=2))
    return nn.Sequential(*layers)


class VGG(StagedNet):
    stage_names = ("layer1", "layer2", "layer3", "layer4", "layer5")

    def __init__(
        self,
        depth: int,
        batch_norm: bool,
        *,
        in_channels: int,
        num_classes: int,
        strides: tuple[int, ...],
        width: float,
    ):
        super().__init__()
        in_ch = in_channels
        for i, (widths, stride) in enumerate(zip(BLOCKS[depth], strides, strict=True), start=1):
            chans = [scaled(c, width) for c in widths]
            setattr(self, f"layer{i}", _block(in_ch, chans, batch_norm, stride))
            in_ch = chans[-1]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(in_ch, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(256, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(256, num_classes),
        )
        kaiming_init(self, linear_std=0.01)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))


def _vgg(arch: str, depth: int, batch_norm: bool, in_channels, num_classes, strides, width) -> VGG:
    return VGG(
        depth,
        batch_norm,
        in_channels=in_channels,
        num_classes=num_classes,
        strides=parse_strides(strides, arch),
        width=width,
    )


def _describe(depth: int, batch_norm: bool) -> str:
    kind = " with BN" if batch_norm else ""
    return (
        f"VGG-{depth}{kind}: standard 3x3 config, 5 max-pools, GAP, fc 512-256-256 "
        "(Simonyan & Zisserman 2015; RCM CIFAR form)"
    )


@ARCHS.register("vgg11", _describe(11, batch_norm=False), default_strides="22222",
                rcm_strides="11222")
def vgg11(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _vgg("vgg11", 11, False, in_channels, num_classes, strides, width)


@ARCHS.register("vgg13", _describe(13, batch_norm=False), default_strides="22222",
                rcm_strides="11222")
def vgg13(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _vgg("vgg13", 13, False, in_channels, num_classes, strides, width)


@ARCHS.register("vgg16", _describe(16, batch_norm=False), default_strides="22222",
                rcm_strides="11222")
def vgg16(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _vgg("vgg16", 16, False, in_channels, num_classes, strides, width)


@ARCHS.register("vgg19", _describe(19, batch_norm=False), default_strides="22222",
                rcm_strides="11222")
def vgg19(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _vgg("vgg19", 19, False, in_channels, num_classes, strides, width)


@ARCHS.register("vgg11_bn", _describe(11, batch_norm=True), default_strides="22222",
                rcm_strides="11222")
def vgg11_bn(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _vgg("vgg11_bn", 11, True, in_channels, num_classes, strides, width)


@ARCHS.register("vgg13_bn", _describe(13, batch_norm=True), default_strides="22222",
                rcm_strides="11222")
def vgg13_bn(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _vgg("vgg13_bn", 13, True, in_channels, num_classes, strides, width)


@ARCHS.register("vgg16_bn", _describe(16, batch_norm=True), default_strides="22222",
                rcm_strides="11222")
def vgg16_bn(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _vgg("vgg16_bn", 16, True, in_channels, num_classes, strides, width)


@ARCHS.register("vgg19_bn", _describe(19, batch_norm=True), default_strides="22222",
                rcm_strides="11222")
def vgg19_bn(*, in_channels: int, num_classes: int, strides: str, width: float) -> nn.Module:
    return _vgg("vgg19_bn", 19, True, in_channels, num_classes, strides, width)
