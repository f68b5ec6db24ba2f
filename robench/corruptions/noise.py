"""Noise corruptions: per-pixel, so the CIFAR-10-C parameters apply at every image size.

Each pixel and channel gets its own draw, as in the recipe (which draws over H x W x 3).
"""

from __future__ import annotations

import torch

from robench.corruptions._common import corruption, normal, pick, poisson, uniform

GAUSSIAN_SIGMA = (0.04, 0.06, 0.08, 0.09, 0.10)
SHOT_PHOTONS = (500, 250, 100, 75, 50)
IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)
SPECKLE_SIGMA = (0.06, 0.10, 0.12, 0.16, 0.20)


@corruption("gaussian_noise", "additive Gaussian noise (sensor noise in low light)", random=True)
def gaussian_noise(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x + N(0, sigma^2) per pixel and channel, sigma = 0.04 .. 0.10."""
    return x + normal(x.shape, 0.0, pick(GAUSSIAN_SIGMA, severity), generator, x)


@corruption("shot_noise", "Poisson (photon counting) noise", random=True)
def shot_noise(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Poisson(x * lam) / lam: a pixel is a count of lam = 500 .. 50 photons at full scale."""
    photons = pick(SHOT_PHOTONS, severity)
    return poisson(x * photons, generator) / photons


@corruption("impulse_noise", "salt-and-pepper noise (bit errors)", random=True)
def impulse_noise(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A fraction `amount` (0.01 .. 0.07) of pixel values set to 0 or 1, half each.

    Channels are hit independently, as skimage's random_noise(mode="s&p") does on an
    H x W x 3 array.
    """
    amount = pick(IMPULSE_AMOUNT, severity)
    hit = uniform(x.shape, 0.0, 1.0, generator, x) < amount
    salt = uniform(x.shape, 0.0, 1.0, generator, x) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


@corruption("speckle_noise", "multiplicative Gaussian noise", random=True)
def speckle_noise(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x + x * N(0, sigma^2), sigma = 0.06 .. 0.20: noise that grows with brightness."""
    return x + x * normal(x.shape, 0.0, pick(SPECKLE_SIGMA, severity), generator, x)
