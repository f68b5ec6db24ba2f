"""Blur corruptions. Radii and sigmas are CIFAR-10-C's, in pixels of a 32-pixel image, and
are multiplied by (image side / 32) for other sizes (robench's interpretation); zoom factors
are relative and apply unchanged.
"""

from __future__ import annotations

import functools
import math

import torch

from robench.corruptions import _common
from robench.corruptions._common import blur, corruption, pick, randint, scale_of, uniform

DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # disk radius, alias blur
GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # sigma, delta, its
MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # ImageMagick radius, sigma
# The recipe's np.arange(1, 1.06, 0.01) etc. include their end points except for severities 3
# to 5, through floating-point rounding: these are the zoom factors it really averages.
ZOOM_MAX = (1.06, 1.11, 1.15, 1.20, 1.25)
GAUSSIAN_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The recipe's defocus kernel: a normalised disk of `radius`, smoothed by a 3x3 (5x5 for
    radius > 8) Gaussian of sigma `alias_blur` against aliasing.

    Below radius 1 the disk is a single pixel, so severities 1-3 are small Gaussian blurs.
    """
    half = math.ceil(radius) + 2
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).to(torch.float64)
    disk /= disk.sum()
    k = 3 if radius <= 8 else 5
    u = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(u**2) / (2 * alias_blur**2))
    g /= g.sum()
    smooth = torch.nn.functional.conv2d(disk[None, None], (g[:, None] * g[None, :])[None, None],
                                        padding=k // 2)
    return smooth[0, 0]


@corruption("defocus_blur", "out-of-focus lens: a disk-shaped blur", random=False)
def defocus_blur(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Each channel convolved with `disk_kernel` (mirrored border, as OpenCV's filter2D)."""
    radius, alias = pick(DEFOCUS, severity)
    s = scale_of(x)
    return _common.filter2d(x, disk_kernel(radius * s, alias * s), "reflect101")


@functools.lru_cache(maxsize=32)
def _waves(h: int, w: int, delta: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The recipe's swap positions grouped into waves of swaps that touch disjoint pixels.

    The recipe visits rows h = H-delta down to delta+1 and, in each, columns likewise, and
    swaps pixel (h, w) with one up to delta away. A swap only touches pixels within delta of
    its position, so giving position (i-th row visited, j-th column visited) the time
    2*delta*i + j keeps the order of every two swaps that share a pixel and puts in one wave
    only swaps that share none: the waves, run in time order, give the sequential result.
    Returns per wave (row-visit index, column-visit index, flat pixel index).
    """
    rows = torch.arange(h - delta, delta, -1)
    cols = torch.arange(w - delta, delta, -1)
    i, j = torch.meshgrid(torch.arange(len(rows)), torch.arange(len(cols)), indexing="ij")
    time = (2 * delta * i + j).flatten()
    i, j = i.flatten(), j.flatten()
    waves = []
    for t in range(int(time.max()) + 1 if len(time) else 0):
        sel = time == t
        waves.append((i[sel], j[sel], rows[i[sel]] * w + cols[j[sel]]))
    return waves


def shuffle_locally(x: torch.Tensor, offsets: torch.Tensor, delta: int) -> torch.Tensor:
    """One pass of the recipe's local pixel swaps, for all images at once.

    offsets[n, i, j] = (dy, dx), each in [-delta, delta), is the move of the swap at the i-th
    row and j-th column the recipe visits (rows H-delta down to delta+1, columns likewise).
    """
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w).clone()
    offsets = offsets.to(x.device)
    for i, j, here in _waves(h, w, delta):
        here = here.to(x.device)
        there = here[None, :] + offsets[:, i, j, 0] * w + offsets[:, i, j, 1]
        here = here[None, None, :].expand(n, c, -1)
        there = there[:, None, :].expand(n, c, -1)
        a, b = flat.gather(2, here), flat.gather(2, there)
        flat.scatter_(2, here, b)
        flat.scatter_(2, there, a)
    return flat.reshape(n, c, h, w)


@corruption("glass_blur", "frosted glass: blur, local pixel shuffles, blur", random=True)
def glass_blur(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Gaussian blur, `iterations` passes of pixel swaps over at most `delta` pixels, blur.

    The swaps are the recipe's sequential ones, run in parallel waves (`shuffle_locally`); a
    pixel can drift several steps up and left within one pass, as in the original. The swap
    reach stays 1 pixel below 48-pixel images (it cannot be less) and grows with the size
    above. The recipe's rounding to uint8 between the steps is left out.
    """
    sigma, delta, iterations = pick(GLASS, severity)
    s = scale_of(x)
    delta = max(1, round(delta * s))
    n, _, h, w = x.shape
    x = blur(x, sigma * s)
    shape = (iterations, n, max(0, h - 2 * delta), max(0, w - 2 * delta), 2)
    offsets = randint(shape, -delta, delta, generator, x.device)
    for it in range(iterations):
        x = shuffle_locally(x, offsets[it], delta)
    return blur(x, sigma * s)


@corruption("motion_blur", "camera shake: a streak at a random angle", random=True)
def motion_blur(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """ImageMagick's motion blur (radius, sigma) at an angle uniform in [-45, 45) degrees per
    image; a torch re-implementation of it, see `_common.motion_blur`.
    """
    radius, sigma = pick(MOTION, severity)
    s = scale_of(x)
    angles = uniform((x.shape[0],), -45.0, 45.0, generator, x).cpu()
    return _common.motion_blur(x, radius * s, sigma * s, angles)


@corruption("zoom_blur", "moving towards the object: the mean of zooms up to 1.06-1.25",
            random=False)
def zoom_blur(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The mean of x and x zoomed about its centre by 1.00, 1.01, ... up to the maximum.

    Zooms are continuous (`_common.zoom`), not the recipe's integer crops, so they mean the
    same at every image size.
    """
    steps = round((pick(ZOOM_MAX, severity) - 1) / 0.01)
    out = x.clone()
    for k in range(steps + 1):
        out += _common.zoom(x, 1 + 0.01 * k)
    return out / (steps + 2)


@corruption("gaussian_blur", "Gaussian blur, sigma 0.4-1 pixel at 32x32", random=False)
def gaussian_blur(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """skimage.filters.gaussian: edge border, kernel cut at 4 sigma."""
    return blur(x, pick(GAUSSIAN_SIGMA, severity) * scale_of(x))
