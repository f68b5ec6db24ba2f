"""Weather corruptions (and spatter): a random layer laid over the image.

Each layer is made on the reference grid (32 pixels on the shorter side, where the CIFAR-10-C
parameters were chosen) and resized to the image, so flakes, fog banks and drops cover the
same share of an 8x8 digit or a 64x64 Tiny-ImageNet image as of a CIFAR image (robench's
interpretation). At 32x32 nothing is resized.

Where the recipe uses tools torch lacks, robench approximates them and says so: ImageMagick's
motion blur (snow), OpenCV's Canny / distance transform / histogram equalisation (spatter),
and the frost photographs, which are replaced by a procedural texture (`frost_texture`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robench.corruptions import _common
from robench.corruptions._common import (
    blur,
    box_blur3,
    colour,
    corruption,
    grey,
    normal,
    pick,
    reference_grid,
    resize,
    uniform,
)

# mean, std, zoom, threshold, blur radius, blur sigma, blend
SNOW = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # image, frost weights
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # strength, roughness decay
# mean, std, blur sigma, threshold, strength (water) or mud blur sigma, mud?
SPATTER = (
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)
FROST_TINT = (0.86, 0.93, 1.0)  # ice is bluish white
WATER = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise
MUD = (63 / 255, 42 / 255, 20 / 255)


@corruption("snow", "falling snow: streaked flakes over a whitened image", random=True)
def snow(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise, zoomed, thresholded into flakes, streaked by a motion blur at an angle
    in [-135, -45) degrees, added twice (once turned by 180 degrees) to an image pulled towards
    max(x, 1.5 * grey + 0.5).

    The streaks use robench's torch version of ImageMagick's motion blur, an approximation.
    """
    mean, std, zoom, threshold, radius, sigma, keep = pick(SNOW, severity)
    n = x.shape[0]
    layer = normal((n, 1, *reference_grid(x)), mean, std, generator, x)
    layer = _common.zoom(layer, zoom)
    layer = torch.where(layer < threshold, 0.0, layer).clamp(0, 1)
    angles = uniform((n,), -135.0, -45.0, generator, x).cpu()
    layer = _common.motion_blur(layer, radius, sigma, angles)
    layer = resize(layer + layer.flip(-2, -1), x.shape[-2:])
    whitened = torch.maximum(x, grey(x) * 1.5 + 0.5)
    return keep * x + (1 - keep) * whitened + layer


def fractal_noise(
    n: int, size: tuple[int, int], cells: tuple[int, ...], generator: torch.Generator | None,
    like: torch.Tensor,
) -> torch.Tensor:
    """n x 1 x H x W value noise: uniform grids of cells x cells, bilinearly enlarged, with
    amplitude halving from one grid to the next finer one; scaled to [0, 1] per image."""
    total = torch.zeros(n, 1, *size, device=like.device, dtype=like.dtype)
    for octave, c in enumerate(cells):
        grid = uniform((n, 1, c, c), 0.0, 1.0, generator, like)
        total += 0.5**octave * F.interpolate(grid, size=size, mode="bilinear",
                                             align_corners=False)
    low = total.amin((2, 3), keepdim=True)
    high = total.amax((2, 3), keepdim=True)
    return (total - low) / (high - low).clamp_min(1e-12)


def frost_texture(
    n: int, size: tuple[int, int], generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """n x 1 x H x W grey frost in [0, 1]: robench's stand-in for the recipe's photographs.

    A hazy base of value noise plus ice-crystal veins, the thin ridges where two other noises
    cross their middle value ((1 - |2 v - 1|)^8); mean about 0.5, like a bright frost photo.
    """
    cells = (2, 4, 8, 16)
    haze = fractal_noise(n, size, cells, generator, like)
    veins = 0.0
    for _ in range(2):
        v = fractal_noise(n, size, (4, 8, 16, 32), generator, like)
        veins = veins + (1 - (2 * v - 1).abs()) ** 8
    return (0.2 + 0.45 * haze + 0.5 * veins).clamp(0, 1)


@corruption("frost", "ice crystals on the lens (a procedural texture)", random=True)
def frost(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """a * x + b * frost, with the recipe's weights (a, b) and robench's procedural, seeded
    `frost_texture` tinted bluish white in place of the recipe's random crop of one of six
    frost photographs (which robench does not ship): an interpretation, not the original.
    """
    weight_x, weight_frost = pick(FROST, severity)
    texture = frost_texture(x.shape[0], reference_grid(x), generator, x)
    texture = resize(texture, x.shape[-2:]) * colour(FROST_TINT, x)
    return weight_x * x + weight_frost * texture


def plasma_fractal(
    n: int, size: int, decay: float, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """n x size x size diamond-square height maps in [0, 1] (size a power of two), wrapping.

    Each finer level adds uniform noise decay^2 times weaker than the last, as in the recipe
    (its `wibble * uniform(-wibble, wibble)` shrinks by decay^2 per level); a larger decay
    gives smoother fog.
    """
    maps = torch.zeros(n, size, size, device=like.device, dtype=like.dtype)
    step, amplitude = size, 1.0
    while step >= 2:
        half = step // 2
        corners = maps[:, ::step, ::step]
        square = corners + corners.roll(-1, 1)
        square = square + square.roll(-1, 2)
        maps[:, half::step, half::step] = square / 4 + amplitude * uniform(
            square.shape, -1.0, 1.0, generator, like)
        centres = maps[:, half::step, half::step]
        # Edge midpoints: two corners along the edge, two centres across it.
        across = corners + corners.roll(-1, 2) + centres + centres.roll(1, 1)
        maps[:, ::step, half::step] = across / 4 + amplitude * uniform(
            across.shape, -1.0, 1.0, generator, like)
        down = corners + corners.roll(-1, 1) + centres + centres.roll(1, 2)
        maps[:, half::step, ::step] = down / 4 + amplitude * uniform(
            down.shape, -1.0, 1.0, generator, like)
        step, amplitude = half, amplitude / decay**2
    low = maps.amin((1, 2), keepdim=True)
    high = maps.amax((1, 2), keepdim=True)
    return (maps - low) / (high - low).clamp_min(1e-12)


@corruption("fog", "fog: a fractal haze that lowers contrast", random=True)
def fog(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(x + t * plasma) * m / (m + t), m the image's maximum, t the fog's strength: the fog
    brightens unevenly and the image's brightest point stays where it was at most."""
    strength, decay = pick(FOG, severity)
    h, w = reference_grid(x)
    size = 1 << (max(h, w, 2) - 1).bit_length()  # a power of two >= the grid
    plasma = plasma_fractal(x.shape[0], size, decay, generator, x)[:, None, :h, :w]
    peak = x.amax((1, 2, 3), keepdim=True)
    return (x + strength * resize(plasma, x.shape[-2:])) * peak / (peak + strength)


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(_common.pad(mask, 1, 1, "edge"), 3, stride=1)


def _equalise(values: torch.Tensor, levels: int) -> torch.Tensor:
    """OpenCV's equalizeHist per image, for integer values 0..levels-1 (an N x 1 x H x W)."""
    n = values.shape[0]
    flat = values.reshape(n, -1).long()
    counts = F.one_hot(flat, levels).sum(1).to(values.dtype)
    cdf = counts.cumsum(1)
    total = flat.shape[1]
    below = cdf.gather(1, flat.amin(1, keepdim=True))  # pixels at the lowest value
    lut = ((cdf - below) * 255 / (total - below).clamp_min(1)).round()
    lut = torch.where(below == total, torch.arange(levels, device=values.device), lut)
    return lut.gather(1, flat).reshape(values.shape)


def _water_shading(liquid: torch.Tensor) -> torch.Tensor:
    """An embossed "distance to the drop's rim" map: robench's approximation of the recipe's
    Canny edges -> distance transform (cut at 20) -> 3x3 blur -> histogram equalisation ->
    emboss -> 3x3 blur. Rims are the drop pixels next to a dry one; distances are chessboard
    distances by repeated dilation, not OpenCV's Euclidean ones.
    """
    wet = (liquid > 0).to(liquid.dtype)
    rim = wet * (1 - (-_dilate(-wet)))  # wet pixels with a dry neighbour
    reached, distance = rim, torch.zeros_like(rim)
    for _ in range(20):
        distance += 1 - reached
        reached = _dilate(reached)
    distance = _equalise(box_blur3(distance).floor(), 21)
    emboss = torch.tensor([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=torch.float64)
    shaded = _common.filter2d(distance, emboss, "reflect101").round().clamp(0, 255)
    return box_blur3(shaded)


@corruption("spatter", "water drops (severities 1-3) or mud (4-5) on the lens", random=True)
def spatter(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Drops are the blurred Gaussian noise above a threshold. Water adds pale turquoise
    shaded by `_water_shading` (an approximation of the recipe's OpenCV pipeline); mud paints
    the drops (blurred again, kept where >= 0.8) in brown over the image.
    """
    mean, std, sigma, threshold, strength, mud = pick(SPATTER, severity)
    liquid = blur(normal((x.shape[0], 1, *reference_grid(x)), mean, std, generator, x), sigma)
    liquid = torch.where(liquid < threshold, 0.0, liquid)
    if not mud:
        m = liquid * _water_shading(liquid)
        m = strength * m / m.amax((2, 3), keepdim=True).clamp_min(1e-12)
        return x + resize(m, x.shape[-2:]) * colour(WATER, x)
    m = blur((liquid > threshold).to(x.dtype), strength)
    m = resize(torch.where(m < 0.8, 0.0, m), x.shape[-2:])
    return x * (1 - m) + m * colour(MUD, x)
