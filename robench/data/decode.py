"""Decoding image files into one uint8 N x C x H x W tensor, on every core.

All images must have one size (the error names the first that differs: guessing a resize
would silently change the data); a folder of grey images keeps one channel, anything else
becomes RGB with alpha dropped.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch

from robench.errors import UserError

_DECODE_CHUNK = 512  # images per decode task: large enough to amortise the thread hand-off


def _worker_count() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, cpus or 1))


def decode_all(files: list[str]) -> torch.Tensor:
    """All files as one N x C x H x W uint8 tensor, decoded in parallel chunks.

    torchvision's decoders release the GIL, so threads use every core without the cost of
    shipping tensors between processes. Every image is decoded as RGB (grey, palette, alpha
    and CMYK handled by torchvision; alpha is dropped); a folder whose images are all grey
    is stored with one channel. All images must have the same size.
    """
    chunks = [files[i : i + _DECODE_CHUNK] for i in range(0, len(files), _DECODE_CHUNK)]
    pool = ThreadPoolExecutor(_worker_count())
    try:
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its decoders (for torchcodec) with a warning per
            # call; they still work, and 60,000 copies of one warning would swamp any log.
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            stacks = list(pool.map(_decode_chunk, chunks))
    finally:  # after a bad file, do not decode the rest of the folder first
        pool.shutdown(cancel_futures=True)
    first = tuple(stacks[0].shape[-2:])
    for chunk, stack in zip(chunks, stacks, strict=True):
        if tuple(stack.shape[-2:]) != first:
            _raise_size(chunk[0], tuple(stack.shape[-2:]), chunks[0][0], first)
    images = torch.cat(stacks) if len(stacks) > 1 else stacks[0]
    if torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2]):
        images = images[:, :1].contiguous()
    return images


def _decode_chunk(files: list[str]) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image, read_file
    from torchvision.transforms.v2.functional import to_dtype

    images = []
    for path in files:
        try:
            image = decode_image(read_file(path), mode=ImageReadMode.RGB)
        except RuntimeError as err:
            reason = " ".join(str(err).split())
            raise UserError(f"could not decode image {path} ({reason}).") from None
        if image.dtype != torch.uint8:  # e.g. 16-bit PNG
            image = to_dtype(image, torch.uint8, scale=True)
        if images and image.shape != images[0].shape:
            _raise_size(path, tuple(image.shape[-2:]), files[0], tuple(images[0].shape[-2:]))
        images.append(image)
    return torch.stack(images)


def _raise_size(path: str, size: tuple, first_path: str, first: tuple) -> None:
    raise UserError(
        f"image {path} is {size[0]}x{size[1]} but {first_path} is {first[0]}x{first[1]}; all "
        "images of an image folder must have the same size (resize them first)."
    )
