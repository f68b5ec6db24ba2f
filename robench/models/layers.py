"""Layers shared by every robench model.

Attacks work in [0, 1] pixel space, so normalisation is part of the model, never of the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel `(x - mean) / std`, so a model takes [0, 1] images and eps stays in pixels.

    mean and std are buffers, not parameters: they travel with the weights (so a checkpoint
    normalises the way it was trained) and no optimiser or attack can change them.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        mean = tuple(round(v, 4) for v in self.mean.flatten().tolist())
        std = tuple(round(v, 4) for v in self.std.flatten().tolist())
        return f"mean={mean}, std={std}"


class Classifier(nn.Module):
    """What `create_model` returns: `net(normalize(x))` for x in [0, 1].

    `normalize` and `net` stay separate attributes so a defense can put a module between them
    (RCM's upsampling goes after normalisation and before the network).
    """

    def __init__(self, normalize: Normalize, net: nn.Module):
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))
