"""What a loaded dataset is: its splits as tensors, and the facts a model is built from.

Every dataset is held whole in memory as uint8 (or, for digits, float32) N x C x H x W
tensors: the training loop moves a split to the device once and slices batches from it, so
nothing here runs per image at training time. `to_float` turns a batch into [0, 1] floats
on the device, which keeps the host copy four times smaller than float storage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    augment: str


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class DatasetSplits:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    description: str


@dataclass
class RawDataset:
    """What a loader hands to `load_dataset`: the training pool and the test split."""

    train: Split
    test: Split
    classes: tuple[str, ...]
    name: str
    test_source: str  # how the test split was chosen, for the description line


def to_float(x: torch.Tensor) -> torch.Tensor:
    """A batch in [0, 1] as float: uint8 is divided by 255 where it lies (e.g. on the GPU)."""
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    if x.is_floating_point():
        return x.float()
    raise TypeError(f"images must be uint8 or float, got {x.dtype}")
