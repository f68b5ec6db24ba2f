"""`load_dataset`: look a dataset name up, load it and split it into train / val / test.

The validation split is always held out of the training images with a seeded, class
stratified sample (`split_seed`), never taken from the test set: checkpoints are selected on
it, and selecting on the test set would overstate accuracy. The test split is the official
test set where one exists (fixed, independent of `split_seed`), so results stay comparable.
`train_subset` takes a further stratified sample from the same seeded generator, after val,
so changing it never changes the val split.

Mean and std are computed from the training split (after holding out val, before
`train_subset`) for every dataset alike, instead of copying published constants: the published
CIFAR-10 std differs between sources (0.2023 vs 0.2470), the computed value is right for image
folders too, and subsets do not change a model's normalisation.

Default val sizes: digits 144 (of 1,437 after its fixed 360-image test split), the torchvision
datasets 1,000, image folders and Tiny ImageNet a tenth of the training images, at most 1,000.
Each default is the `val_size` meta of the dataset's registry entry, next to its loader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from robench.data.imagefolder import IMAGEFOLDER_PREFIX
from robench.data.resize import resize
from robench.data.sampling import split_indices, take
from robench.data.splits import DatasetInfo, DatasetSplits, RawDataset, Split
from robench.data.stats import channel_stats
from robench.errors import UserError
from robench.registry import DATASETS

DEFAULT_DATA_DIR = "./data"


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    image_size: int | None = None,
    train_subset: int | None = None,
    val_size: int | None = None,
    split_seed: int = 0,
) -> DatasetSplits:
    """Load `name` and split it; see the module docstring for how the splits are chosen.

    `data_dir` (default ./data) is where torchvision datasets and tiny-imagenet-200/ live;
    an `imagefolder:<path>` path is taken as given (relative to the working directory).
    """
    if image_size is not None:  # checked first: a typo should not wait for a decode
        _check_positive("image_size", image_size, "a positive number of pixels")
    loader, meta, root = _resolve(name, data_dir)
    raw = loader(root, download)
    if image_size is not None:
        raw.train = Split(resize(raw.train.x, image_size), raw.train.y)
        raw.test = Split(resize(raw.test.x, image_size), raw.test.y)
    side = _square_side(raw)

    generator = torch.Generator().manual_seed(split_seed)
    n_val = _val_count(raw, meta.get("val_size"), val_size)
    val_idx, train_idx = split_indices(raw.train.y, n_val, generator)
    train = take(raw.train, train_idx)
    val = take(raw.train, val_idx)
    mean, std = channel_stats(train.x)
    pool_size = len(train)
    if train_subset is not None:
        _check_subset(raw.name, train_subset, pool_size, n_val)
        train = take(train, split_indices(train.y, train_subset, generator)[0])

    info = DatasetInfo(
        name=raw.name,
        channels=raw.train.x.shape[1],
        image_size=side,
        num_classes=len(raw.classes),
        mean=mean,
        std=std,
        classes=raw.classes,
        augment=meta["augment"],
    )
    desc = _describe(info, train, val, raw, pool_size, split_seed)
    return DatasetSplits(info, train, val, raw.test, desc)


# --- name lookup and split arithmetic --------------------------------------------------------


def _resolve(name: str, data_dir: str | Path | None) -> tuple[Callable, dict, Path]:
    """The loader, its meta and the root it reads from, for a dataset name."""
    if name.startswith(IMAGEFOLDER_PREFIX):
        path = name[len(IMAGEFOLDER_PREFIX) :]
        if not path:
            raise UserError(
                f"dataset {name!r} names no folder; write imagefolder:<path>, e.g. "
                "imagefolder:data/my-images with train/ and test/ class folders inside."
            )
        entry = DATASETS.entry("imagefolder")
        return entry.obj, entry.meta, Path(path)
    entry = DATASETS.entry(name)
    if entry.meta.get("takes_path"):
        raise UserError(
            f"dataset {name!r} needs a folder: write {name}:<path>, e.g. {name}:data/my-images."
        )
    return entry.obj, entry.meta, Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR)


def _check_positive(what: str, value: int, valid: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{what} must be {valid}, got {value!r}.")


def _val_count(raw: RawDataset, default: int | str, requested: int | None) -> int:
    """The requested val size, else the dataset's default (a number, or a tenth up to 1000)."""
    pool = len(raw.train)
    n = requested
    if n is None:
        n = default if isinstance(default, int) else min(1000, pool // 10)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < pool:
        raise UserError(
            f"val_size {n!r} is not valid for {raw.name}, which has {pool} training "
            f"images: pass a number from 0 to {pool - 1}."
        )
    return n


def _check_subset(name: str, n: int, pool: int, n_val: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= pool:
        raise UserError(
            f"train_subset {n!r} is not valid for {name}, which has {pool} training images after "
            f"holding out {n_val} for validation: pass a number from 1 to {pool}."
        )


def _square_side(raw: RawDataset) -> int:
    height, width = raw.train.x.shape[-2:]
    if height != width:
        raise UserError(
            f"the images of {raw.name} are {height}x{width}, not square; pass --image-size N "
            "to resize them to N x N."
        )
    return int(height)


def _describe(
    info: DatasetInfo, train: Split, val: Split, raw: RawDataset, pool: int, seed: int
) -> str:
    subset = f" (seeded subset of {pool})" if len(train) != pool else ""
    return (
        f"{info.name}: {len(train)} train{subset}, {len(val)} val (stratified random sample of "
        f"the training images, split_seed {seed}), {len(raw.test)} test ({raw.test_source}); "
        f"{info.channels}x{info.image_size}x{info.image_size}, {info.num_classes} classes"
    )
