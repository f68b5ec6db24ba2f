"""Model architectures: one module per family, each builder registered in `ARCHS` where defined.

`create_model` is the one door: it looks the arch up, builds it for the data's channels,
classes and image size, and puts a `Normalize` in front so every model takes [0, 1] images.
Each arch is a `StagedNet`, so a defense can cut it between named stages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from robench.errors import UserError
from robench.models import (  # noqa: F401  (importing a family registers its archs)
    alexnet,
    preact_resnet,
    resnet,
    resnext,
    small,
    vgg,
    wide_resnet,
)
from robench.models.base import StagedNet
from robench.models.layers import Classifier, Normalize
from robench.registry import ARCHS

__all__ = [
    "Classifier",
    "Normalize",
    "StagedNet",
    "check_image_size",
    "count_parameters",
    "create_model",
]

# Largest image side tried when looking for the smallest size an arch accepts.
_MAX_PROBE_SIZE = 4096


def create_model(
    arch: str,
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    strides: str | None = None,
    width: float = 1.0,
) -> Classifier:
    """Build `arch` for C x S x S inputs in [0, 1]; `strides=None` is the arch's default."""
    entry = ARCHS.entry(arch)
    strides = entry.meta["default_strides"] if strides is None else strides
    mean, std = _check_arguments(in_channels, num_classes, image_size, mean, std, width)
    net = entry.obj(in_channels=in_channels, num_classes=num_classes, strides=strides, width=width)
    model = Classifier(Normalize(mean, std), net)
    check_image_size(
        model,
        arch=arch,
        strides=str(strides),
        in_channels=in_channels,
        image_size=image_size,
        num_classes=num_classes,
    )
    return model


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters; Normalize's mean/std are buffers and never count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_arguments(
    in_channels: int,
    num_classes: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    width: float,
) -> tuple[list[float], list[float]]:
    if not width > 0:
        raise UserError(
            f"width {width} must be greater than 0 (a multiplier on channel widths, e.g. 1.0)."
        )
    if in_channels < 1:
        raise UserError(f"in_channels {in_channels} must be at least 1.")
    if num_classes < 2:
        raise UserError(f"num_classes {num_classes} must be at least 2.")
    if image_size < 1:
        raise UserError(f"image size {image_size} must be at least 1 pixel.")
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != in_channels:
            raise UserError(
                f"{name} {tuple(values)} has {len(values)} values; it needs one per input "
                f"channel ({in_channels})."
            )
    if any(not s > 0 for s in std):
        raise UserError(f"std {tuple(std)} must be greater than 0 in every channel.")
    return mean, std


def check_image_size(
    model: nn.Module,
    *,
    arch: str,
    strides: str,
    in_channels: int,
    image_size: int,
    num_classes: int,
) -> None:
    """Fail now, with the size that would work, if the model cannot take S x S images.

    Too many downsampling steps make a feature map vanish deep inside the network; the
    resulting shape error would otherwise surface mid-training with no hint of the cause.
    The smallest working size is found by trying sizes, since pools and padding make a
    formula per family fragile. A failure that no image size cures is a bug and is re-raised.
    """

    def runs(size: int) -> bool:
        return _try_forward(model, in_channels, size, num_classes) is None

    error = _try_forward(model, in_channels, image_size, num_classes)
    if error is None:
        return
    smallest = _smallest_working_size(runs, image_size)
    if smallest is None:
        raise error
    raise UserError(
        f"arch {arch!r} with strides {strides!r} needs images of at least {smallest}x{smallest}, "
        f"got {image_size}x{image_size}; pass --image-size {smallest} "
        "(or choose strides with more 1s)."
    )


def _try_forward(
    model: nn.Module, in_channels: int, size: int, num_classes: int
) -> RuntimeError | None:
    """None if a zero image of side `size` gives (1, num_classes) logits, else the error."""
    x = torch.zeros(1, in_channels, size, size)
    with _eval_mode(model), torch.no_grad():
        try:
            out = model(x)
        except RuntimeError as err:
            return err
    if out.shape != (1, num_classes):
        shape = tuple(out.shape)
        return RuntimeError(f"logits of shape {shape} at {size}x{size}, not (1, {num_classes})")
    return None


def _smallest_working_size(runs: Callable[[int], bool], failing: int) -> int | None:
    """Smallest side above `failing` that works, assuming larger images never break a net."""
    works = failing * 2
    while not runs(works):
        if works >= _MAX_PROBE_SIZE:
            return None
        failing, works = works, works * 2
    while works - failing > 1:
        middle = (failing + works) // 2
        failing, works = (failing, middle) if runs(middle) else (middle, works)
    return works


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for a probe (BN running stats stay untouched), then the caller's mode back."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
