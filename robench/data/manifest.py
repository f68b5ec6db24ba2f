"""Listing an image folder's files and labels, before any decoding."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from robench.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class Manifest:
    """The files of an image folder and their labels, before any decoding."""

    root: Path
    classes: tuple[str, ...]
    train_files: list[str]
    train_labels: list[int]
    test_files: list[str]
    test_labels: list[int]
    test_source: str


def image_files(folder: Path) -> list[str]:
    """The images directly in `folder`, sorted by name; other files are ignored.

    Plain strings, not Paths: for 100k files, Path objects alone cost a second per load.
    """
    with os.scandir(folder) as entries:
        files = [
            e.path
            for e in entries
            if e.is_file()
            and not e.name.startswith(".")
            and e.name.lower().endswith(IMAGE_SUFFIXES)
        ]
    if not files:
        raise UserError(
            f"class folder {folder} has no images; put files ending in "
            f"{', '.join(IMAGE_SUFFIXES)} in it or remove it."
        )
    return sorted(files)


def class_folders(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise UserError(
            f"{folder} is an image folder with no classes: it needs one subfolder per class "
            "holding that class's images."
        )
    return names


def list_split(folder: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    files: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        found = image_files(folder / cls)
        files += found
        labels += [label] * len(found)
    return files, labels


def fingerprint(manifest: Manifest) -> str:
    """sha256 over the folder's content: its classes, then each split's files by path
    relative to the folder, label, size and the sha256 of their bytes. The same images at
    another path have the same fingerprint; a changed, added or relabelled image does not."""
    digest = hashlib.sha256(b"robench-imagefolder-v1\0")
    digest.update("\0".join(manifest.classes).encode() + b"\n")
    root = str(manifest.root)
    for tag, files, labels in (
        ("train", manifest.train_files, manifest.train_labels),
        ("test", manifest.test_files, manifest.test_labels),
    ):
        for path, label in zip(files, labels, strict=True):
            try:
                data = Path(path).read_bytes()
            except OSError as err:
                raise UserError(f"cannot read image {path}: {err.strerror}.") from None
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            content = hashlib.sha256(data).hexdigest()
            digest.update(f"{tag}\0{relative}\0{label}\0{len(data)}\0{content}\n".encode())
    return digest.hexdigest()
