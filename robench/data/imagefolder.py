"""Datasets read from folders of image files: `imagefolder:<path>` and `tinyimagenet`.

Both are listed into a `Manifest` and decoded once into the image cache (`robench.data.cache`),
so later loads read one file instead of decoding every image again. An image folder is named
by its content, `imagefolder:<first 12 hex digits of its fingerprint>`, not by its path: the
same images copied elsewhere are the same dataset (one leaderboard table, reused records),
and a changed image makes another one; no heading shows where the files lie.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from robench.data.cache import decode_cached
from robench.data.manifest import Manifest, class_folders, image_files, list_split
from robench.data.splits import RawDataset, Split
from robench.errors import UserError
from robench.registry import DATASETS

IMAGEFOLDER_PREFIX = "imagefolder:"

_TENTH = "10%, at most 1000"  # the val_size default of folders of any size


def _imagefolder_manifest(root: Path) -> Manifest:
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise UserError(
            f"image folder {root} does not exist; imagefolder:<path> needs a folder holding "
            "train/ and test/ (or val/) folders of class folders."
        )
    if not (root / "train").is_dir():
        raise UserError(
            f"image folder {root} has no train/ subfolder; it needs train/<class>/<images> "
            "and test/<class>/<images> (or val/ instead of test/)."
        )
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if test_dir is None:
        raise UserError(
            f"image folder {root} has neither a test/ nor a val/ subfolder; put the test "
            f"images in {root / 'test'}/<class>/."
        )
    classes = class_folders(root / "train")
    test_classes = class_folders(test_dir)
    if test_classes != classes:
        raise UserError(
            f"the classes in {test_dir} ({_diff(test_classes, classes)}) do not match those "
            f"in {root / 'train'}; both need the same class folders."
        )
    train_files, train_labels = list_split(root / "train", classes)
    test_files, test_labels = list_split(test_dir, classes)
    return Manifest(
        root,
        tuple(classes),
        train_files,
        train_labels,
        test_files,
        test_labels,
        f"{test_dir.name}/ folder",
    )


def _diff(got: Sequence[str], want: Sequence[str]) -> str:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    parts = [
        f"missing {', '.join(missing)}" if missing else "",
        f"extra {', '.join(extra)}" if extra else "",
    ]
    return "; ".join(p for p in parts if p)


@DATASETS.register(
    "imagefolder",
    "your own images: imagefolder:<path> with train/ and test/ (or val/) folders of class folders",
    val_size=_TENTH,
    augment="crop+flip",
    takes_path=True,
)
def _load_imagefolder(root: Path, download: bool) -> RawDataset:
    """Decoded once into a cache file (see `robench.data.cache`), so later loads are fast."""
    manifest = _imagefolder_manifest(root)
    return _raw_from_manifest(manifest, lambda found: f"{IMAGEFOLDER_PREFIX}{found[:12]}")


@DATASETS.register(
    "tinyimagenet",
    "Tiny ImageNet, 3x64x64, 200 classes, 100k train / 10k test (the official val set)",
    val_size=_TENTH,
    augment="crop+flip",
)
def _load_tinyimagenet(data_dir: Path, download: bool) -> RawDataset:
    """Classes are the sorted wnids, as an ImageFolder over train/ would number them."""
    root = (data_dir / "tiny-imagenet-200").expanduser().resolve()
    needed = ("wnids.txt", "train", "val/images", "val/val_annotations.txt")
    missing = [n for n in needed if not (root / n).exists()]
    if missing:
        raise UserError(
            f"tinyimagenet is not in {data_dir.as_posix()}/ (missing {', '.join(missing)} in "
            f"{root}): unzip http://cs231n.stanford.edu/tiny-imagenet-200.zip there so that "
            "tiny-imagenet-200/ holds wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG "
            "and val/val_annotations.txt."
        )
    classes = sorted((root / "wnids.txt").read_text().split())
    train_files: list[str] = []
    train_labels: list[int] = []
    for label, wnid in enumerate(classes):
        found = image_files(root / "train" / wnid / "images")
        train_files += found
        train_labels += [label] * len(found)
    test_files, test_labels = _tinyimagenet_val(root, classes)
    manifest = Manifest(
        root,
        tuple(classes),
        train_files,
        train_labels,
        test_files,
        test_labels,
        "official val set",
    )
    return _raw_from_manifest(manifest, lambda found: "tinyimagenet")


def _tinyimagenet_val(root: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    index = {wnid: i for i, wnid in enumerate(classes)}
    annotations = root / "val" / "val_annotations.txt"
    rows = []
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise UserError(
                f"line {number} of {annotations} does not name a file and a wnid from "
                f"wnids.txt: {line!r}."
            )
        rows.append((fields[0], index[fields[1]]))
    rows.sort()
    images = root / "val" / "images"
    return [os.path.join(images, f) for f, _ in rows], [label for _, label in rows]


def _raw_from_manifest(manifest: Manifest, name: Callable[[str], str]) -> RawDataset:
    """`name` makes the dataset's name from the folder's content fingerprint."""
    train_x, test_x, found = decode_cached(manifest)
    return RawDataset(
        train=Split(train_x, torch.tensor(manifest.train_labels, dtype=torch.long)),
        test=Split(test_x, torch.tensor(manifest.test_labels, dtype=torch.long)),
        classes=manifest.classes,
        name=name(found),
        test_source=manifest.test_source,
    )
