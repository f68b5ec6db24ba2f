"""Tiny image folders and split fingerprints for the dataset tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from robench.data import Split

# Three colour classes and one grey class for the tiny image folders below.
COLOURS = {"apple": (200, 20, 20), "grass": (20, 200, 20), "sky": (20, 20, 200)}
GREY = 90


def image_hashes(split: Split) -> list[str]:
    return [hashlib.sha256(img.numpy().tobytes()).hexdigest() for img in split.x]


def write_image(path: Path, colour, size=(8, 8), mode="RGB", marker: int | None = None) -> None:
    """A constant image; `marker` sets the bottom-right pixel so images of a class differ."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fill = (*colour, 128) if mode == "RGBA" else colour if mode == "L" else tuple(colour)
    image = Image.new(mode, size[::-1], fill)
    if marker is not None:
        image.putpixel((size[1] - 1, size[0] - 1), marker if mode == "L" else (marker,) * 3)
    image.save(path)


def make_folder(root: Path, n_train=10, n_test=3, test_name="test", grey_class=True) -> Path:
    """train/ and test/ with one constant colour per class, plus a grey class if asked."""
    for split, count in (("train", n_train), (test_name, n_test)):
        for cls, colour in COLOURS.items():
            for i in range(count):
                write_image(root / split / cls / f"{i:03d}.png", colour, marker=i)
        if grey_class:
            for i in range(count):
                write_image(root / split / "stone" / f"{i:03d}.png", GREY, mode="L", marker=i)
    return root


def class_of_pixel(pixel: tuple[int, ...]) -> str:
    if pixel == (GREY, GREY, GREY):
        return "stone"
    return next(cls for cls, colour in COLOURS.items() if colour == pixel)
