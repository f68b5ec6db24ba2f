"""The benchmark's corruptions by name, in the paper's order, and the seeded door to them."""

from __future__ import annotations

import zlib

import torch

from robench.corruptions._common import CORRUPTIONS, Corruption, check_images, check_severity
from robench.errors import UserError

BENCHMARK = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")


def names(extra: bool = False) -> tuple[str, ...]:
    """The 15 benchmark corruptions in the paper's order, then the 4 extra ones if asked."""
    return BENCHMARK + EXTRA if extra else BENCHMARK


def get(name: str) -> Corruption:
    """The corruption function called `name`; a user error naming the closest one otherwise."""
    return CORRUPTIONS.get(name)


def seed_for(seed: int, name: str, severity: int) -> int:
    """The generator seed for one (seed, corruption, severity): a stable CRC of the name and
    severity (Python's hash() changes between runs) mixed into the user's seed."""
    offset = zlib.crc32(f"{name}/{severity}".encode())
    return (seed * 0x9E3779B1 + offset) % 2**63


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """`x` corrupted by `name` at `severity`, reproducibly from `seed`.

    The generator lives on x's device, so the random draws happen where the batch is; the same
    (seed, name, severity) on the same device gives the same result, and different settings
    draw different noise.
    """
    fn = get(name)
    check_severity(severity)
    check_images(x)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"corruption seed {seed!r} is not valid; give an integer.")
    generator = torch.Generator(device=x.device)
    generator.manual_seed(seed_for(seed, name, severity))
    return fn(x, severity, generator)
