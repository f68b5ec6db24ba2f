"""Training augmentations applied to a whole batch at once, on the batch's device.

Per-image transforms in a DataLoader would be the bottleneck for small images on a GPU, so a
batch is cropped and flipped with one gather. All randomness comes from the `generator` the
caller passes: with a generator restored from a checkpoint, a resumed run sees the same
augmented batches as an uninterrupted one. Random numbers are drawn on the generator's
device (a CPU generator may drive a CUDA batch) and then moved to the batch without a host
sync (robench.runtime.to_device).

Draw order per call, which a saved generator state depends on: crop offsets (N x 2 integers
in [0, 2 * padding]), then, for "crop+flip" and "augmix+clean", N flip decisions, then, for
"augmix+clean" with rows to mix, one seed for AugMix's own draws.

"augmix+clean" is the data of the GWI authors' CIFAR runs: every epoch holds the training
set twice, shuffled together, once cropped and flipped and once cropped, flipped and then
AugMix-ed (Hendrycks et al. 2020; severity 3, 3 chains of depth 1-3, Dirichlet/Beta(1)
mixing, the ops that do not overlap CIFAR-10-C's corruptions), with no JSD term. AugMix is
torchvision's implementation, applied image by image (one call on a batch would share its
operations across the batch) on the CPU under its own seeded generator, so runs stay
reproducible and resumable. It mixes in uint8 where the authors mix in float: each mixed
pixel is rounded to the nearest 1/255.
"""

from __future__ import annotations

import torch

from robench.errors import UserError
from robench.runtime import to_device

AUGMENTATIONS = ("crop+flip", "crop", "none", "augmix+clean")
AUGMIX = dict(severity=3, mixture_width=3, chain_depth=-1, alpha=1.0, all_ops=False)


def copies(kind: str) -> int:
    """How many times an epoch holds each training image: twice for "augmix+clean"."""
    return 2 if kind == "augmix+clean" else 1


def check_augment(kind: str) -> str:
    """`kind` if it names an augmentation; a user error listing the valid ones otherwise."""
    if kind not in AUGMENTATIONS:
        raise UserError(f"unknown augmentation {kind!r}; valid ones: {', '.join(AUGMENTATIONS)}.")
    return kind


def augment_batch(
    x: torch.Tensor,
    kind: str,
    generator: torch.Generator | None = None,
    padding: int | None = None,
    mixed: torch.Tensor | None = None,
) -> torch.Tensor:
    """`x` (N x C x H x W) randomly cropped from its zero-padded self and, for "crop+flip"
    and "augmix+clean", mirrored left-right, one independent draw per image; for
    "augmix+clean", the rows where the boolean `mixed` is True are then AugMix-ed. "none"
    returns `x` itself.

    `padding` defaults to H // 8 (4 pixels for 32x32 images, the usual CIFAR recipe).
    """
    check_augment(kind)
    if kind == "none":
        return x
    n, _, height, width = x.shape
    pad = height // 8 if padding is None else padding
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise UserError(f"crop padding must be a whole number of pixels >= 0, got {padding!r}.")
    source = generator.device if generator is not None else torch.device("cpu")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=source)
    flips = None
    if kind in ("crop+flip", "augmix+clean"):
        flips = to_device(torch.rand(n, generator=generator, device=source).lt(0.5), x.device)
    out = _crop(x, to_device(offsets, x.device) - pad, flips)
    if kind == "augmix+clean" and mixed is not None and bool(mixed.any()):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=source))
        out = augmix_rows(out, mixed, seed)
    return out


def augmix_rows(x: torch.Tensor, rows: torch.Tensor, seed: int) -> torch.Tensor:
    """`x` with AugMix applied to each image where `rows` is True, its draws seeded by `seed`."""
    from torchvision.transforms import v2

    mix = v2.AugMix(**AUGMIX)
    picked = rows.to(x.device).nonzero().flatten()
    images = x[picked].detach().cpu().mul(255).round_().to(torch.uint8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        done = torch.stack([mix(image) for image in images])
    out = x.clone()
    out[picked] = done.to(device=x.device, dtype=x.dtype).div_(255)
    return out


def _crop(x: torch.Tensor, shift: torch.Tensor, flips: torch.Tensor | None) -> torch.Tensor:
    """out[n, :, i, j] = x[n, :, i + dy, j' + dx] with j' = W-1-j for flipped images, or 0
    where that falls outside x (the zero padding), for shift[n] = (dy, dx).

    Two gathers (rows, then columns) instead of a padded copy and a loop over images.
    """
    n, channels, height, width = x.shape
    rows = torch.arange(height, device=x.device).expand(n, height) + shift[:, :1]
    cols = torch.arange(width, device=x.device).expand(n, width)
    if flips is not None:
        cols = torch.where(flips[:, None], width - 1 - cols, cols)
    cols = cols + shift[:, 1:]
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None]
    rows = rows.clamp(0, height - 1)[:, None, :, None].expand(n, channels, height, width)
    cols = cols.clamp(0, width - 1)[:, None, None, :].expand(n, channels, height, width)
    out = x.gather(2, rows).gather(3, cols)
    return torch.where(inside[:, None], out, torch.zeros((), dtype=x.dtype, device=x.device))
