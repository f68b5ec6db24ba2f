"""Digital corruptions: colour changes, elastic warps, pixelation and JPEG.

Brightness and saturate change HSV value and saturation as skimage's rgb2hsv / hsv2rgb round
trip does, computed directly in RGB: for a fixed hue and saturation every channel is
proportional to the value, and for a fixed hue and value it is affine in the saturation.
"""

from __future__ import annotations

import torch

from robench.corruptions._common import (
    apply_separable,
    blur,
    corruption,
    pick,
    reference_grid,
    resize,
    sample,
    scale_of,
    uniform,
)

BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to the HSV value
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)  # factor on the deviation from the channel mean
SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))  # S -> S * gain + lift
# displacement strength, its smoothing sigma, affine jitter: fractions of the image side
ELASTIC = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
           (0.1, 0.03, 0.03))
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # side of the coarse image, as a fraction
JPEG_QUALITY = (80, 65, 58, 50, 40)

_EPS = 1e-12


@corruption("brightness", "brighter: HSV value raised by 0.05-0.3", random=False)
def brightness(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """HSV value V = max over channels raised to min(V + c, 1), hue and saturation kept: every
    channel scaled by the new V over the old; black becomes grey V. Grey images: x + c."""
    value = x.amax(1, keepdim=True)
    lifted = (value + pick(BRIGHTNESS, severity)).clamp(max=1)
    return torch.where(value > 0, x * lifted / value.clamp_min(_EPS), lifted)


@corruption("contrast", "lower contrast: pulled towards the channel means", random=False)
def contrast(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(x - m) * c + m, m each image's mean per channel, c = 0.75 .. 0.15."""
    means = x.mean((2, 3), keepdim=True)
    return (x - means) * pick(CONTRAST, severity) + means


@corruption("saturate", "HSV saturation scaled (down at 1-2, up at 3-5)", random=False)
def saturate(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """HSV saturation S -> clip(S * gain + lift), hue and value kept.

    Grey pixels have hue 0 (red) in skimage, so a positive lift (severities 4, 5) tints them
    red, as in CIFAR-10-C. Grey (1-channel) images have no saturation and are returned as they
    are (robench's interpretation). Severities 1-2 desaturate and 3-5 oversaturate, so the
    change is not monotone in the severity (2 is further from the original than 3).
    """
    if x.shape[1] == 1:
        return x
    gain, lift = pick(SATURATE, severity)
    value = x.amax(1, keepdim=True)
    spread = value - x.amin(1, keepdim=True)
    sat = torch.where(value > 0, spread / value.clamp_min(_EPS), 0.0)
    new_sat = (sat * gain + lift).clamp(0, 1)
    # channel = value * (1 - sat * k) with k in [0, 1] fixed by the hue; (0, 1, 1) at hue 0.
    red = torch.tensor([0.0, 1.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.where(spread > 0, (value - x) / spread.clamp_min(_EPS), red)
    return value * (1 - new_sat * k)


@corruption("elastic_transform", "a random affine warp plus smooth local displacements",
            random=True)
def elastic_transform(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Simard-style elastic warp after a random affine one (both bilinear).

    Affine: three anchor points around the centre each moved by up to jitter * side pixels
    (OpenCV's warpAffine, mirrored border). Elastic: uniform(-1, 1) noise smoothed by a
    Gaussian (cut at 3 sigma, symmetric border) times the strength, as pixel displacements
    (scipy's map_coordinates, symmetric border). The displacement field is made on the 32-pixel
    reference grid and resized, so it is as smooth relative to the image at every size.
    """
    strength, sigma, jitter = pick(ELASTIC, severity)
    n, _, h, w = x.shape
    side, s = min(h, w), scale_of(x)
    cx, cy, r = w // 2, h // 2, side // 3
    anchors = torch.tensor([[cx + r, cy + r], [cx + r, cy - r], [cx - r, cy - r]],
                           dtype=torch.float64, device=x.device)
    moved = anchors + uniform((n, 3, 2), -jitter * side, jitter * side, generator, anchors)
    # The affine map taking the moved anchors back to the originals gives, for each output
    # pixel, where to read the input (warpAffine's inverse mapping).
    ones = torch.ones(n, 3, 1, dtype=torch.float64, device=x.device)
    inverse = torch.linalg.solve(torch.cat([moved, ones], 2), anchors.expand(n, 3, 2))
    ys = torch.arange(h, dtype=torch.float64, device=x.device).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float64, device=x.device).view(1, 1, w)
    a = inverse.view(n, 3, 2, 1, 1)
    cols = xs * a[:, 0, 0] + ys * a[:, 1, 0] + a[:, 2, 0]
    rows = xs * a[:, 0, 1] + ys * a[:, 1, 1] + a[:, 2, 1]
    x = sample(x, rows.to(x.dtype), cols.to(x.dtype), "reflect101")

    noise = uniform((n, 2, *reference_grid(x)), -1.0, 1.0, generator, x)
    field = blur(noise, sigma * 32, mode="symmetric", truncate=3.0) * (strength * 32)
    field = resize(field, (h, w)) * s
    rows = ys.to(x.dtype) + field[:, 0]
    cols = xs.to(x.dtype) + field[:, 1]
    return sample(x, rows, cols, "symmetric")


def box_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """n_out x n_in weights of PIL's BOX resampling: output pixel i averages the input pixels
    whose centres fall in its footprint (i*r, (i+1)*r], r = n_in / n_out; upscaling picks the
    one input pixel under the output pixel's centre."""
    scale = n_in / n_out
    footprint = max(scale, 1.0)
    centres = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale
    offset = (torch.arange(n_in, dtype=torch.float64)[None, :] + 0.5 - centres[:, None])
    inside = ((offset / footprint > -0.5) & (offset / footprint <= 0.5)).to(torch.float64)
    return inside / inside.sum(1, keepdim=True)


@corruption("pixelate", "pixelation: box-shrunk to 95-65% and box-enlarged back", random=False)
def pixelate(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """PIL BOX resize to int(side * c) pixels and back; c is relative, so it applies at every
    image size as it is."""
    c = pick(PIXELATE, severity)
    h, w = x.shape[-2:]
    small_h, small_w = max(1, int(h * c)), max(1, int(w * c))
    down = apply_separable(x, box_matrix(h, small_h), box_matrix(w, small_w))
    return apply_separable(down, box_matrix(small_h, h), box_matrix(small_w, w))


# The example tables of the JPEG standard (ITU T.81, Annex K), which libjpeg scales by quality.
_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)


def quantisation_table(base: tuple, quality: int) -> torch.Tensor:
    """libjpeg's jpeg_quality_scaling: 5000 / q percent below quality 50, 200 - 2q above,
    rounded, kept in 1..255 (baseline JPEG)."""
    percent = 5000 // quality if quality < 50 else 200 - 2 * quality
    table = torch.tensor(base, dtype=torch.float64)
    return ((table * percent + 50) // 100).clamp(1, 255)


def _dct_matrix() -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float64)[:, None]
    n = torch.arange(8, dtype=torch.float64)[None, :]
    d = torch.cos((2 * n + 1) * k * torch.pi / 16) * (2 / 8) ** 0.5
    d[0] /= 2**0.5
    return d


def _extend(plane: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """A plane grown down to a multiple of `rows` and right to a multiple of `cols` by
    repeating its last row and column, as libjpeg pads partial blocks."""
    h, w = plane.shape[-2:]
    down = torch.arange(-(-h // rows) * rows, device=plane.device).clamp(max=h - 1)
    right = torch.arange(-(-w // cols) * cols, device=plane.device).clamp(max=w - 1)
    return plane.index_select(-2, down).index_select(-1, right)


def _code_plane(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """An N x H x W plane of 0..255 samples through 8x8 DCT, quantisation and back."""
    n, h, w = plane.shape
    padded = _extend(plane, 8, 8) - 128
    ph, pw = padded.shape[-2:]
    d = _dct_matrix().to(plane.device, plane.dtype)
    q = table.to(plane.device, plane.dtype)[:, None, :]
    blocks = padded.reshape(n, ph // 8, 8, pw // 8, 8)
    coef = torch.einsum("uh,nahbw,vw->naubv", d, blocks, d) / q
    coef = coef.sign() * (coef.abs() + 0.5).floor() * q  # libjpeg rounds halves away from 0
    blocks = torch.einsum("uh,naubv,vw->nahbw", d, coef, d)
    samples = blocks.reshape(n, ph, pw)[:, :h, :w] + 128
    return samples.round().clamp(0, 255)


def jpeg_roundtrip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """`x` encoded and decoded as a baseline JPEG of `quality`, in torch.

    What PIL's defaults do through libjpeg: samples rounded to 8 bits, BT.601 YCbCr, chroma
    averaged over 2x2 pixels (4:2:0), the standard tables scaled by quality, decoding with
    libjpeg's "fancy" (triangular, i.e. bilinear) chroma upsampling. Grey images are coded as
    one luminance plane. DCTs are exact float ones, so a pixel can differ from libjpeg's
    integer DCT by a level or two of 255.
    """
    samples = (x * 255).round()
    luma = quantisation_table(_LUMA_TABLE, quality)
    if x.shape[1] == 1:
        return _code_plane(samples[:, 0], luma)[:, None] / 255
    chroma = quantisation_table(_CHROMA_TABLE, quality)
    h, w = x.shape[-2:]
    r, g, b = samples.unbind(1)
    y = _code_plane((0.299 * r + 0.587 * g + 0.114 * b).round(), luma)
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    # libjpeg repeats the last column to a whole block of chroma and the last row to an even
    # count before averaging 2x2; the DCT padding repeats the last averaged row.
    full = _extend(torch.stack([cb, cr], 1), 2, 16)
    small = torch.nn.functional.avg_pool2d(full, 2).round()
    small = torch.stack([_code_plane(p, chroma) for p in small.unbind(1)], 1)
    # Decoding upsamples only the chroma of real pixels, repeating its border.
    small = small[..., : -(-h // 2), : -(-w // 2)]
    cb, cr = torch.nn.functional.interpolate(small, scale_factor=2, mode="bilinear",
                                             align_corners=False).round().unbind(1)
    rgb = torch.stack([
        y + 1.402 * (cr - 128),
        y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
        y + 1.772 * (cb - 128),
    ], 1)
    return rgb[..., :h, :w].round().clamp(0, 255) / 255


@corruption("jpeg_compression", "JPEG artefacts at quality 80-40", random=False)
def jpeg_compression(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """`jpeg_roundtrip` at quality 80, 65, 58, 50, 40: a batched torch codec, so it runs on
    the batch's device without a loop over images (robench's re-implementation of libjpeg)."""
    return jpeg_roundtrip(x, pick(JPEG_QUALITY, severity))
