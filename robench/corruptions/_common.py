"""What every corruption shares: the registry, input checks, random draws and batched image ops.

Every op here takes N x C x H x W float tensors and works on whatever device they are on:
filters are depthwise convolutions, resampling is matrix products or gathers, so a batch is
one call per step, never a loop over images. Borders are handled by folding indices back into
the image (`fold_index`) with the border mode the original recipe's library used.

Random numbers are drawn on the generator's device and then moved to the batch (as in
`robench.augment`), so a CPU generator may drive a CUDA batch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from robench.errors import UserError
from robench.registry import CORRUPTIONS

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIZE = 32  # the side the CIFAR-10-C parameters were chosen for

Corruption = Callable[..., torch.Tensor]

def check_severity(severity: object) -> int:
    """`severity` if it is one of 1..5; a user error naming it otherwise."""
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise UserError(
            f"corruption severity {severity!r} is not valid; severities are the integers 1 to 5."
        )
    return severity


def check_images(x: object) -> torch.Tensor:
    """`x` if it is an N x C x H x W floating tensor with 1 or 3 channels."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        got = (
            f"a {str(x.dtype).removeprefix('torch.')} tensor of shape {tuple(x.shape)}"
            if isinstance(x, torch.Tensor)
            else type(x).__name__
        )
        raise UserError(f"corruptions take an N x C x H x W float tensor in [0, 1], got {got}.")
    if x.shape[1] not in (1, 3):
        raise UserError(
            f"corruptions take grey (1 channel) or RGB (3 channel) images, got {x.shape[1]} "
            "channels."
        )
    return x


def corruption(name: str, description: str, *, random: bool) -> Callable[[Corruption], Corruption]:
    """Register a corruption under `name` and give it the common contract.

    The decorated function sees a float32 (or float64) batch and a valid severity; whatever it
    returns is clamped to [0, 1] and cast back to the input's dtype. `random` says whether the
    result depends on the generator (deterministic corruptions ignore it).
    """

    def decorator(fn: Corruption) -> Corruption:
        @functools.wraps(fn)
        def wrapper(
            x: torch.Tensor, severity: int, generator: torch.Generator | None = None
        ) -> torch.Tensor:
            check_images(x)
            check_severity(severity)
            work = x if x.dtype in (torch.float32, torch.float64) else x.float()
            return fn(work, severity, generator).clamp(0, 1).to(x.dtype)

        CORRUPTIONS.add(name, wrapper, description, random=random)
        return wrapper

    return decorator


def pick(table: Sequence, severity: int):
    """The entry of a five-row parameter table for `severity` (1..5)."""
    return table[severity - 1]


# ---- random draws ---------------------------------------------------------------------------


def _source(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def uniform(
    shape: Sequence[int], low: float, high: float, generator: torch.Generator | None,
    like: torch.Tensor,
) -> torch.Tensor:
    """Uniform numbers in [low, high), drawn on the generator's device, placed like `like`."""
    u = torch.rand(tuple(shape), generator=generator, device=_source(generator))
    return (low + (high - low) * u).to(like.device, like.dtype)


def normal(
    shape: Sequence[int], mean: float, std: float, generator: torch.Generator | None,
    like: torch.Tensor,
) -> torch.Tensor:
    z = torch.randn(tuple(shape), generator=generator, device=_source(generator))
    return (mean + std * z).to(like.device, like.dtype)


def randint(
    shape: Sequence[int], low: int, high: int, generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Integers in [low, high)."""
    n = torch.randint(low, high, tuple(shape), generator=generator, device=_source(generator))
    return n.to(device)


def poisson(rates: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    counts = torch.poisson(rates.to(_source(generator)), generator=generator)
    return counts.to(rates.device)


# ---- geometry -------------------------------------------------------------------------------


def scale_of(x: torch.Tensor) -> float:
    """How large `x`'s images are relative to the 32-pixel images of CIFAR-10-C."""
    return min(x.shape[-2:]) / REFERENCE_SIZE


def reference_grid(x: torch.Tensor) -> tuple[int, int]:
    """The size `x`'s images would have at the reference scale (32 on the shorter side)."""
    s = scale_of(x)
    return max(1, round(x.shape[-2] / s)), max(1, round(x.shape[-1] / s))


def fold_index(index: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Indices outside 0..n-1 mapped inside the way a border mode extends an image.

    "edge" repeats the border pixel (skimage's "nearest"); "symmetric" mirrors including the
    border pixel (scipy's "reflect"); "reflect101" mirrors about it (OpenCV's default).
    """
    if mode == "edge" or n == 1:
        return index.clamp(0, n - 1)
    if mode == "symmetric":
        index = index.remainder(2 * n)
        return torch.where(index >= n, 2 * n - 1 - index, index)
    if mode == "reflect101":
        index = index.remainder(2 * n - 2)
        return torch.where(index >= n, 2 * n - 2 - index, index)
    raise ValueError(f"unknown border mode {mode!r}")


def pad(x: torch.Tensor, ph: int, pw: int, mode: str) -> torch.Tensor:
    """`x` grown by ph rows and pw columns on each side, any amount, any border mode."""
    h, w = x.shape[-2:]
    rows = fold_index(torch.arange(-ph, h + ph, device=x.device), h, mode)
    cols = fold_index(torch.arange(-pw, w + pw, device=x.device), w, mode)
    return x.index_select(-2, rows).index_select(-1, cols)


def filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Each channel cross-correlated with one odd-sized 2-D kernel (OpenCV's filter2D)."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    padded = pad(x, kh // 2, kw // 2, mode).reshape(n * c, 1, h + kh - 1, w + kw - 1)
    weight = kernel.to(x.device, x.dtype)[None, None]
    return F.conv2d(padded, weight).reshape(n, c, h, w)


def gaussian_taps(sigma: float, truncate: float) -> torch.Tensor:
    """The normalised 1-D Gaussian of scipy's gaussian_filter: radius int(truncate*sigma+0.5)."""
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return torch.ones(1, dtype=torch.float64)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (t / sigma) ** 2)
    return taps / taps.sum()


def blur(
    x: torch.Tensor, sigma: float, mode: str = "edge", truncate: float = 4.0
) -> torch.Tensor:
    """Separable Gaussian blur with skimage.filters.gaussian's defaults (edge border, 4 sigma)."""
    taps = gaussian_taps(sigma, truncate)
    if len(taps) == 1:
        return x
    x = filter2d(x, taps[:, None], mode)
    return filter2d(x, taps[None, :], mode)


def box_blur3(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's blur(img, (3, 3)): the 3x3 mean, mirrored border."""
    return filter2d(x, torch.full((3, 3), 1 / 9, dtype=torch.float64), "reflect101")


def sample(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str) -> torch.Tensor:
    """Bilinear samples of each image at fractional pixel coordinates.

    rows and cols are N x H' x W' (or broadcastable to it); neighbours outside the image are
    folded back in with the border mode, as OpenCV's remap and scipy's map_coordinates do.
    """
    n, c, h, w = x.shape
    rows, cols = torch.broadcast_tensors(rows, cols)
    rows, cols = rows.expand(n, *rows.shape[-2:]), cols.expand(n, *cols.shape[-2:])
    r0, c0 = rows.floor(), cols.floor()
    fr, fc = (rows - r0).unsqueeze(1), (cols - c0).unsqueeze(1)
    r0, c0 = r0.long(), c0.long()
    flat = x.reshape(n, c, h * w)

    def at(r: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        index = fold_index(r, h, mode) * w + fold_index(q, w, mode)
        index = index.reshape(n, 1, -1).expand(n, c, -1)
        return flat.gather(2, index).reshape(n, c, *rows.shape[-2:])

    top = at(r0, c0) * (1 - fc) + at(r0, c0 + 1) * fc
    bottom = at(r0 + 1, c0) * (1 - fc) + at(r0 + 1, c0 + 1) * fc
    return top * (1 - fr) + bottom * fr


def _interp_matrix(n_out: int, sources: torch.Tensor, n_in: int) -> torch.Tensor:
    """The n_out x n_in matrix of linear interpolation at fractional `sources` (edge border)."""
    low = sources.floor()
    frac = sources - low
    low = low.long()
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, low.clamp(0, n_in - 1)), 1 - frac, accumulate=True)
    m.index_put_((rows, (low + 1).clamp(0, n_in - 1)), frac, accumulate=True)
    return m


def zoom_matrix(n: int, factor: float) -> torch.Tensor:
    """Interpolation matrix of a zoom by `factor` about the image centre, output size n."""
    centre = (n - 1) / 2
    sources = centre + (torch.arange(n, dtype=torch.float64) - centre) / factor
    return _interp_matrix(n, sources, n)


def apply_separable(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """rows @ image @ cols^T for every image and channel: a separable linear resampling."""
    rows = rows.to(x.device, x.dtype)
    cols = cols.to(x.device, x.dtype)
    return rows @ x @ cols.T


def zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """`x` magnified by `factor` about the centre and cropped back to its size (bilinear).

    The continuous form of the recipe's clipped_zoom (crop ceil(H/factor) pixels, resize,
    trim): it is defined for every factor and size, where the integer crop makes small zooms
    of small images a no-op.
    """
    h, w = x.shape[-2:]
    return apply_separable(x, zoom_matrix(h, factor), zoom_matrix(w, factor))


def resize(layer: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A generated layer brought to the image's size: area averaging down, bilinear up."""
    if tuple(layer.shape[-2:]) == tuple(size):
        return layer
    if layer.shape[-2] >= size[0] and layer.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(layer, size)
    return F.interpolate(layer, size=size, mode="bilinear", align_corners=False)


def shift_clamped(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """out[n, :, i, j] = x[n, :, i + dy[n], j + dx[n]], the border pixel repeated outside."""
    n, c, h, w = x.shape
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None]).clamp(0, h - 1)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None]).clamp(0, w - 1)
    index = (rows[:, :, None] * w + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, -1)
    return x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)


def motion_blur(
    x: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor
) -> torch.Tensor:
    """A one-sided Gaussian streak per image, after ImageMagick's MotionBlurImage.

    Tap i (i = 0 .. 2*ceil(radius)) has weight exp(-i^2 / 2 sigma^2) and reads the pixel
    round(i * (cos a, sin a)) away along the image's angle a (degrees, x right, y down); the
    border pixel is repeated outside the image, as ImageMagick's edge virtual pixels.
    """
    width = 2 * math.ceil(radius) + 1
    i = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(i**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).tolist()
    theta = torch.deg2rad(angles.to(torch.float64))
    out = torch.zeros_like(x)
    for tap, weight in enumerate(weights):
        if weight < 1e-7:  # the far tail of a short streak: below float32 resolution
            break
        dx = torch.ceil(tap * torch.cos(theta) - 0.5).long().to(x.device)
        dy = torch.ceil(tap * torch.sin(theta) - 0.5).long().to(x.device)
        out += weight * shift_clamped(x, dy, dx)
    return out


# ---- colour ---------------------------------------------------------------------------------

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB2GRAY and JPEG


def grey(x: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W luminance of RGB images; grey images as they are."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def colour(rgb: Sequence[float], x: torch.Tensor) -> torch.Tensor:
    """An RGB colour in [0, 1] shaped to broadcast over `x` (its luminance for grey images)."""
    if x.shape[1] == 1:
        rgb = (sum(w * v for w, v in zip(LUMA, rgb, strict=True)),)
    return torch.tensor(rgb, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
