"""Each common corruption does what the CIFAR-10-C recipe says, at every severity.

Expected values are computed independently here (colorsys, scipy, PIL, a sequential loop)
from the recipe's parameters, not taken from the code under test.
"""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
import pytest
import torch
from corruption_images import constant, seeded, shapes
from PIL import Image
from scipy import ndimage

from robench import corruptions as C
from robench.corruptions import _common, blur, digital, weather

# ---- exact semantics ------------------------------------------------------------------------

RGB = (0.2, 0.4, 0.6)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_gaussian_noise_adds_the_cifar_sigma(severity):
    x = constant(0.5, size=32, n=64)
    noise = C.get("gaussian_noise")(x, severity, seeded()) - x
    sigma = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    assert noise.std().item() == pytest.approx(sigma, rel=0.02)
    assert abs(noise.mean().item()) < 0.002


@pytest.mark.parametrize("severity", [1, 5])
def test_shot_noise_counts_poisson_photons(severity):
    photons = (500, 250, 100, 75, 50)[severity - 1]
    x = constant(0.4, size=32, n=64)
    out = C.get("shot_noise")(x, severity, seeded())
    counts = out * photons
    assert torch.allclose(counts, counts.round(), atol=1e-3)  # whole photons
    assert counts.mean().item() == pytest.approx(0.4 * photons, rel=0.01)
    assert counts.var().item() == pytest.approx(0.4 * photons, rel=0.05)  # Poisson: var = mean


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_impulse_noise_sets_the_cifar_fraction_of_values_to_black_or_white(severity):
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    x = constant(0.5, size=32, n=64)
    out = C.get("impulse_noise")(x, severity, seeded())
    changed = out != 0.5
    assert changed.float().mean().item() == pytest.approx(amount, rel=0.1)
    assert set(out[changed].unique().tolist()) == {0.0, 1.0}
    assert (out == 1).float().mean().item() == pytest.approx(amount / 2, rel=0.15)


def test_speckle_noise_grows_with_brightness():
    x = torch.cat([constant(0.25, size=32, n=32), constant(0.5, size=32, n=32)])
    noise = C.get("speckle_noise")(x, 5, seeded()) - x
    assert noise[:32].std().item() == pytest.approx(0.25 * 0.2, rel=0.03)
    assert noise[32:].std().item() == pytest.approx(0.5 * 0.2, rel=0.03)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_brightness_raises_the_hsv_value(severity):
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    h, s, v = colorsys.rgb_to_hsv(*RGB)
    expected = colorsys.hsv_to_rgb(h, s, min(v + c, 1.0))
    out = C.get("brightness")(constant(RGB), severity)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(expected), atol=1e-6)
    black = C.get("brightness")(constant((0.0, 0.0, 0.0)), severity)
    assert torch.allclose(black, torch.full_like(black, c))
    grey = C.get("brightness")(constant(0.9), severity)
    assert torch.allclose(grey, torch.full_like(grey, min(0.9 + c, 1.0)))


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_saturate_scales_the_hsv_saturation_and_tints_grey_red_when_lifted(severity):
    gain, lift = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))[severity - 1]
    for rgb in (RGB, (0.5, 0.5, 0.5), (0.9, 0.3, 0.35)):
        h, s, v = colorsys.rgb_to_hsv(*rgb)
        expected = colorsys.hsv_to_rgb(h, min(max(s * gain + lift, 0), 1), v)
        out = C.get("saturate")(constant(rgb), severity)
        assert torch.allclose(out[0, :, 0, 0], torch.tensor(expected), atol=1e-6), rgb
    grey = shapes(2, 1, 8)
    assert torch.equal(C.get("saturate")(grey, severity), grey)


@pytest.mark.parametrize("severity", [1, 5])
def test_contrast_pulls_each_channel_towards_its_mean(severity):
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    x = shapes(2, 3, 16)
    mean = x.mean((2, 3), keepdim=True)
    out = C.get("contrast")(x, severity)
    assert torch.allclose(out, (x - mean) * c + mean, atol=1e-6)
    assert torch.allclose(out.mean((2, 3)), mean[..., 0, 0], atol=1e-6)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_gaussian_blur_matches_scipy_with_skimage_defaults(severity):
    sigma = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    x = shapes(2, 3, 32)
    expected = ndimage.gaussian_filter(x.numpy(), (0, 0, sigma, sigma), mode="nearest")
    out = C.get("gaussian_blur")(x, severity)
    assert np.allclose(out.numpy(), expected, atol=1e-5)


def test_defocus_is_a_small_gaussian_below_radius_1_and_a_3x3_box_at_radius_1_5():
    delta = torch.zeros(1, 1, 32, 32)  # at 32x32 the radii are the recipe's, unscaled
    delta[..., 4, 4] = 1
    for severity, alias in ((1, 0.4), (2, 0.5), (3, 0.6)):
        g = torch.exp(-torch.tensor([1.0, 0.0, 1.0]) / (2 * alias**2))
        g /= g.sum()
        out = C.get("defocus_blur")(delta, severity)[0, 0]
        assert torch.allclose(out[3:6, 3:6], g[:, None] * g[None, :], atol=1e-6)
        assert out.sum().item() == pytest.approx(1.0, abs=1e-6)
    box = C.get("defocus_blur")(delta, 5)[0, 0]
    assert torch.allclose(box[3:6, 3:6], torch.full((3, 3), 1 / 9), atol=1e-6)
    assert box.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_motion_blur_spreads_a_point_along_one_straight_streak():
    delta = torch.zeros(4, 1, 32, 32)
    delta[..., 16, 16] = 1
    out = C.get("motion_blur")(delta, 5, seeded())
    assert torch.allclose(out.sum((2, 3)), torch.ones(4, 1), atol=1e-5)
    for image in out[:, 0]:
        points = image.nonzero().float() - 16
        assert 2 <= len(points) <= 2 * 9 + 1  # width 2 * ceil(radius) + 1
        # Collinear through the point, within rounding, and on one side of it (one-sided).
        direction = points[points.norm(dim=1).argmax()]
        across = (points @ torch.tensor([-direction[1], direction[0]])) / direction.norm()
        assert across.abs().max() <= 1.0
        assert (points @ direction >= 0).all()


def test_zoom_is_an_exact_magnification_about_the_centre():
    t = torch.arange(16, dtype=torch.float64)
    ramp = (0.3 * t.view(-1, 1) + 0.2 * t.view(1, -1)).expand(1, 1, 16, 16)
    zoomed = _common.zoom(ramp, 1.25)
    centre = 0.5 * 7.5
    assert torch.allclose(zoomed, centre + (ramp - centre) / 1.25, atol=1e-9)


def _sequential_swaps(img: torch.Tensor, offsets: torch.Tensor, delta: int) -> torch.Tensor:
    """The recipe's loop over rows H-delta..delta+1, columns likewise, one swap at a time."""
    out = img.clone()
    h, w = img.shape[-2:]
    for i, r in enumerate(range(h - delta, delta, -1)):
        for j, c in enumerate(range(w - delta, delta, -1)):
            dy, dx = offsets[i, j].tolist()
            kept = out[:, r, c].clone()
            out[:, r, c] = out[:, r + dy, c + dx]
            out[:, r + dy, c + dx] = kept
    return out


@pytest.mark.parametrize("delta", [1, 2])
def test_glass_blur_parallel_swaps_equal_the_sequential_loop(delta):
    x = torch.rand(3, 2, 13, 11, generator=seeded())
    shape = (3, 13 - 2 * delta, 11 - 2 * delta, 2)
    offsets = torch.randint(-delta, delta, shape, generator=seeded(1))
    out = blur.shuffle_locally(x, offsets, delta)
    for n in range(3):
        assert torch.equal(out[n], _sequential_swaps(x[n], offsets[n], delta))
    assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


@pytest.mark.parametrize("size", [8, 32])
def test_pixelate_is_pil_box_resizing_down_and_back(size):
    x = (torch.rand(2, 3, size, size, generator=seeded()) * 255).round() / 255
    for severity, c in ((1, 0.95), (5, 0.65)):
        out = C.get("pixelate")(x, severity) * 255
        small = int(size * c)
        for img, got in zip(x, out, strict=True):
            pil = Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            pil = pil.resize((small, small), Image.BOX).resize((size, size), Image.BOX)
            expected = torch.from_numpy(np.asarray(pil).astype(np.float32)).permute(2, 0, 1)
            assert (got - expected).abs().max() <= 1.001  # PIL rounds its intermediate image


def test_pixelate_keeps_a_constant_image():
    x = constant(RGB, size=32)
    assert torch.allclose(C.get("pixelate")(x, 5), x, atol=1e-6)


def _pil_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    out = []
    for img in x:
        array = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(
            buffer, "JPEG", quality=quality
        )
        decoded = np.asarray(Image.open(buffer)).astype(np.float32)
        out.append(torch.from_numpy(decoded.reshape(*array.shape)).permute(2, 0, 1) / 255)
    return torch.stack(out)


@pytest.mark.parametrize("channels,size", [(3, 32), (1, 28), (3, 30)])
@pytest.mark.parametrize("severity", [1, 5])
def test_jpeg_compression_is_close_to_libjpeg_through_pil(channels, size, severity):
    quality = (80, 65, 58, 50, 40)[severity - 1]
    x = (shapes(8, channels, size) * 255).round() / 255
    ours = C.get("jpeg_compression")(x, severity)
    libjpeg = _pil_jpeg(x, quality)
    # Float DCTs flip a few near-tie roundings of libjpeg's integer DCT: small against the
    # artefacts themselves.
    assert (ours - libjpeg).abs().mean() < 0.1 * (libjpeg - x).abs().mean()
    assert (ours - libjpeg).abs().mean() * 255 < 1.0


def test_jpeg_quality_tables_follow_libjpeg_scaling():
    assert digital.quantisation_table(digital._LUMA_TABLE, 50)[0, 0] == 16  # the base table
    assert digital.quantisation_table(digital._LUMA_TABLE, 80)[0, 0] == 6  # (16*40+50)//100
    assert digital.quantisation_table(digital._LUMA_TABLE, 40)[7, 0] == 90  # (72*125+50)//100
    assert digital.quantisation_table(digital._CHROMA_TABLE, 10)[7, 7] == 255  # clipped


def test_fog_brightens_unevenly_and_keeps_the_maximum():
    for severity, strength in ((1, 0.2), (5, 1.5)):
        v = 0.6
        out = C.get("fog")(constant(v, size=32, n=3), severity, seeded())
        # The height map spans [0, 1]: its top meets the image maximum, its bottom is darkest.
        assert torch.allclose(out.amax((1, 2, 3)), torch.full((3,), v), atol=1e-6)
        assert torch.allclose(out.amin((1, 2, 3)), torch.full((3,), v * v / (v + strength)),
                              atol=1e-6)


def test_frost_on_black_is_the_frost_layer_growing_with_severity():
    black = torch.zeros(4, 3, 32, 32)
    means = []
    for severity, weight in enumerate((0.2, 0.3, 0.4, 0.4, 0.45), start=1):
        out = C.get("frost")(black, severity, seeded())
        assert out.max() <= weight + 1e-6 and out.mean() > 0.3 * weight
        assert (out[:, 2] >= out[:, 0]).all()  # bluish white
        means.append(out.mean().item())
    assert means == sorted(means)


def test_frost_texture_is_seeded_and_textured():
    a = weather.frost_texture(2, (32, 32), seeded(3), torch.zeros(1))
    assert torch.equal(a, weather.frost_texture(2, (32, 32), seeded(3), torch.zeros(1)))
    assert 0.35 < a.mean() < 0.65 and a.std() > 0.08
    assert not torch.equal(a[0], a[1])


@pytest.mark.parametrize("severity", [1, 5])
def test_snow_only_adds_flakes_to_the_whitened_image(severity):
    keep = (0.95, 0.9, 0.9, 0.85, 0.8)[severity - 1]
    x = shapes(4, 3, 32)
    grey = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    base = (keep * x + (1 - keep) * torch.maximum(x, grey * 1.5 + 0.5)).clamp(0, 1)
    out = C.get("snow")(x, severity, seeded())
    assert (out >= base - 1e-6).all()
    assert (out > base + 0.05).float().mean() > 0.01  # some flakes


def test_spatter_water_only_adds_and_mud_paints_brown_or_nothing():
    white = torch.ones(4, 3, 32, 32)
    dark = torch.full((4, 3, 32, 32), 0.1)
    water = C.get("spatter")(dark, 3, seeded())
    assert (water >= dark - 1e-6).all() and (water > dark + 0.05).any()
    mud = C.get("spatter")(white, 5, seeded())
    changed = (mud < 1).any(1)
    assert changed.any()
    # Mud is laid where its mask is >= 0.8: red at most 1 - 0.8 * (1 - 63/255).
    assert (mud[:, 0][changed] <= 1 - 0.8 * (1 - 63 / 255) + 1e-5).all()


def _ramp(size: int = 32) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float32)
    return (0.1 + 0.8 * (0.6 * t.view(-1, 1) + 0.4 * t.view(1, -1)) / (size - 1)).expand(
        4, 3, size, size
    ).contiguous()


def _roughness(img: torch.Tensor) -> float:
    """Mean |Laplacian| away from the border: 0 for an affine image."""
    lap = 4 * img[..., 1:-1, 1:-1] - img[..., 2:, 1:-1] - img[..., :-2, 1:-1]
    lap = lap - img[..., 1:-1, 2:] - img[..., 1:-1, :-2]
    return lap[..., 5:-5, 5:-5].abs().mean().item()


def test_elastic_severity_1_is_a_random_affine_warp_only():
    ramp = _ramp()
    out = C.get("elastic_transform")(ramp, 1, seeded())
    assert _roughness(out) < 1e-5  # an affine map of an affine image is affine
    assert (out - ramp).abs().mean() > 0.005  # but it moved


def test_elastic_local_displacements_grow_with_severity():
    roughness = [_roughness(C.get("elastic_transform")(_ramp(), s, seeded())) for s in (2, 3, 4, 5)]
    assert roughness == sorted(roughness) and roughness[-1] > 100 * roughness[0]


SPATIAL = ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur", "pixelate",
           "elastic_transform")


@pytest.mark.parametrize("name", SPATIAL)
def test_a_constant_image_stays_constant_under_spatial_corruptions(name):
    x = constant(RGB, size=16)
    assert torch.allclose(C.get(name)(x, 4, seeded()), x, atol=1e-5)


@pytest.mark.parametrize("mode,numpy_mode", [("edge", "edge"), ("symmetric", "symmetric"),
                                             ("reflect101", "reflect")])
def test_border_modes_extend_like_numpy_pad(mode, numpy_mode):
    row = torch.arange(5.0).view(1, 1, 1, 5)
    padded = _common.pad(row, 0, 7, mode)
    assert padded.flatten().tolist() == np.pad(np.arange(5.0), 7, mode=numpy_mode).tolist()


def test_other_sizes_scale_blurs_and_keep_relative_parameters():
    # A 64-pixel image blurs with twice the 32-pixel sigma: downsampling the blurred large
    # image by 2 is close to blurring the downsampled one.
    big = shapes(2, 3, 64)
    small = torch.nn.functional.avg_pool2d(big, 2)
    blurred_big = torch.nn.functional.avg_pool2d(C.get("gaussian_blur")(big, 5), 2)
    blurred_small = C.get("gaussian_blur")(small, 5)
    # Blurring the 64-pixel image with the 32-pixel sigma (1) would be much further off.
    unscaled = ndimage.gaussian_filter(big.numpy(), (0, 0, 1, 1), mode="nearest")
    unscaled = torch.nn.functional.avg_pool2d(torch.from_numpy(unscaled), 2)
    error = (blurred_big - blurred_small).abs().mean()
    assert error < 0.5 * (unscaled - blurred_small).abs().mean()
    assert _common.reference_grid(big) == (32, 32)
    assert math.isclose(_common.scale_of(torch.zeros(1, 1, 8, 8)), 0.25)


