"""Reading the official pre-made corrupted test sets instead of corrupting on the fly.

Two layouts exist:

- CIFAR-10-C / CIFAR-100-C: a folder of `<corruption>.npy` files, each uint8 of shape
  (5 * N) x 32 x 32 x 3 holding the N test images at severity 1, then 2, ... 5, and one
  `labels.npy` (5 * N labels, the test labels repeated per severity).
- Tiny-ImageNet-C: `<corruption>/<severity>/<wnid>/*.JPEG`, one folder per class.

Published numbers use these files, so they are what to compare with; `robench.corruptions`
reproduces the recipe on any dataset, but not these exact pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robench.corruptions._common import CORRUPTIONS, SEVERITIES, check_severity
from robench.errors import UserError

PREMADE_FOLDERS = {
    "cifar10": "CIFAR-10-C",
    "cifar100": "CIFAR-100-C",
    "tinyimagenet": "Tiny-ImageNet-C",
}


def find_premade(data_dir: Path, dataset: str) -> Path | None:
    """The pre-made corrupted folder of `dataset` under data_dir (e.g. CIFAR-10-C for
    cifar10), or None if it is not there or no such folder exists for the dataset."""
    name = PREMADE_FOLDERS.get(dataset)
    if name is None:
        return None
    folder = Path(data_dir).expanduser() / name
    return folder if folder.is_dir() else None


def load_premade(
    folder: Path, name: str, severity: int, n: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images (all if None) of corruption `name` at `severity` from a pre-made
    folder, as float N x C x H x W in [0, 1] and long labels.

    Reads `<name>.npy` memory-mapped (only the block asked for is read) or, failing that, the
    image-folder layout `<name>/<severity>/<class>/`.
    """
    CORRUPTIONS.entry(name)
    check_severity(severity)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise UserError(f"the number of pre-made images must be a positive integer, got {n!r}.")
    folder = Path(folder).expanduser()
    if (folder / name).is_dir():
        return _load_image_folder(folder / name / str(severity), n)
    return _load_npy(folder, name, severity, n)


def _load_npy(
    folder: Path, name: str, severity: int, n: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    images_file, labels_file = folder / f"{name}.npy", folder / "labels.npy"
    for path in (images_file, labels_file):
        if not path.is_file():
            raise UserError(
                f"{path} does not exist; a CIFAR-10-C-style folder holds <corruption>.npy files "
                "and labels.npy (from https://zenodo.org/records/2535967)."
            )
    images = _open(images_file)
    labels = _open(labels_file)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) % len(SEVERITIES):
        raise UserError(
            f"{images_file} holds an array of shape {images.shape}; expected 5 * N x H x W x 3 "
            "uint8 images (the 5 severities stacked)."
        )
    per = len(images) // len(SEVERITIES)
    if len(labels) not in (per, len(images)):
        raise UserError(
            f"{labels_file} has {len(labels)} labels but {images_file} holds {per} images per "
            f"severity; expected {per} or {len(images)} labels."
        )
    count = per if n is None else n
    if count > per:
        raise UserError(f"asked for {count} images but {images_file} has {per} per severity.")
    start = (severity - 1) * per
    block = np.array(images[start : start + count])  # a writable copy of just this block
    first = start if len(labels) == len(images) else 0
    y = torch.from_numpy(np.asarray(labels[first : first + count]).astype(np.int64))
    x = torch.from_numpy(block).permute(0, 3, 1, 2).float().div_(255)
    return x, y


def _open(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} as a .npy array ({err}).") from None


def _load_image_folder(folder: Path, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes are the sorted class folders (for Tiny-ImageNet-C the sorted wnids, as robench's
    tinyimagenet numbers them). Images are taken round-robin over the classes (the first of
    each class, then the second, ...), so the first n are balanced over the classes."""
    from robench.data.decode import decode_all
    from robench.data.manifest import class_folders, image_files

    if not folder.is_dir():
        raise UserError(
            f"{folder} does not exist; a Tiny-ImageNet-C-style folder holds "
            "<corruption>/<severity>/<class>/ image folders."
        )
    classes = class_folders(folder)
    per_class = [image_files(folder / c) for c in classes]
    order = sorted(
        (i, label, path)
        for label, files in enumerate(per_class)
        for i, path in enumerate(files)
    )
    if n is not None:
        if n > len(order):
            raise UserError(f"asked for {n} images but {folder} has {len(order)}.")
        order = order[:n]
    x = decode_all([path for _, _, path in order]).float().div_(255)
    y = torch.tensor([label for _, label, _ in order], dtype=torch.long)
    return x, y
