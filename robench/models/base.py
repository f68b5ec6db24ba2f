"""What every architecture family shares: stage layout, stride strings, width scaling, init."""

from __future__ import annotations

import torch
from torch import nn

from robench.errors import UserError
from robench.registry import ARCHS


class StagedNet(nn.Module):
    """An architecture run as stem -> named stages in order -> head.

    Several defenses cut a network between two stages (AdvBN after the first, group-wise
    inhibition after the third) and run the two halves separately, so every family exposes the
    same pieces instead of one opaque forward: `stage_names` (attribute names, in forward
    order), `forward_to(x, stage)` and `forward_from(h, stage)`, whose composition is `forward`.
    """

    stage_names: tuple[str, ...] = ()

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stages(self) -> list[nn.Module]:
        return [getattr(self, name) for name in self.stage_names]

    def forward_to(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """The stem and every stage up to and including `stage`."""
        x = self.stem(x)
        for name in self.stage_names[: self._stage_index(stage) + 1]:
            x = getattr(self, name)(x)
        return x

    def forward_from(self, h: torch.Tensor, stage: str) -> torch.Tensor:
        """The stages after `stage`, then the head: the rest of `forward` from `stage`'s output."""
        for name in self.stage_names[self._stage_index(stage) + 1 :]:
            h = getattr(self, name)(h)
        return self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self.stage_names[-1]
        return self.forward_from(self.forward_to(x, last), last)

    def _stage_index(self, stage: str) -> int:
        if stage not in self.stage_names:
            valid = ", ".join(self.stage_names)
            raise UserError(f"unknown stage {stage!r} for {type(self).__name__}; stages: {valid}.")
        return self.stage_names.index(stage)


class Subsample(nn.Module):
    """Parameter-free strided identity shortcut (He et al. 2016, option A).

    Used where a residual stage keeps its width but is given stride 2 by a non-default stride
    string (e.g. resnet18 '2222'): a projection there would add parameters, and robench keeps
    parameter counts independent of strides so that stride configurations compare fairly.
    """

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride]

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


def shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """A residual block's shortcut on its (not activated) input: a projection (1x1 conv + BN)
    where the width changes, else a parameter-free path (ResNet, ResNeXt)."""
    if in_planes != out_planes:
        return nn.Sequential(
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_planes),
        )
    return Subsample(stride) if stride != 1 else nn.Sequential()


def parse_strides(strides: str, arch: str) -> tuple[int, ...]:
    """Digits of a stride string, checked against the arch's registered default length."""
    default = ARCHS.entry(arch).meta["default_strides"]
    text = str(strides)
    if len(text) != len(default) or any(c not in "12" for c in text):
        raise UserError(
            f"strides {text!r} for {arch} must be {len(default)} digits of 1 or 2, "
            f"e.g. {default!r}."
        )
    return tuple(int(c) for c in text)


def scaled(channels: int, width: float) -> int:
    """A reference channel count under the width multiplier; never below one channel."""
    return max(1, round(channels * width))


def kaiming_init(module: nn.Module, linear_std: float | None = None) -> None:
    """He-normal (fan_out) convolutions with zero bias.

    This is the init of torchvision's ResNet and VGG, of the RCM authors' models and of the
    WideResNet of Zagoruyko & Komodakis as TRADES and Rice et al. use it. It is not every
    source's: the ResNet-18 of Pang et al. (kuangliu's CIFAR code) keeps PyTorch's default
    (Kaiming-uniform with a = sqrt(5)), so a robench ResNet-18 starts from other weights than
    theirs. `linear_std` draws linear weights from N(0, std^2) with zero bias (torchvision's
    VGG uses 0.01); without it linear layers keep PyTorch's default.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
