"""The common-corruption library: contract, severity ordering, pre-made sets.

Exact semantics are in test_corruption_semantics.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from corruption_images import constant, seeded, shapes
from PIL import Image

from robench import corruptions as C
from robench.errors import UserError

ALL = C.names(extra=True)
RANDOM = {e.name for e in C.CORRUPTIONS if e.meta["random"]}


# ---- registry and contract ------------------------------------------------------------------


def test_the_benchmark_is_the_15_corruptions_in_the_paper_order_plus_4_extra():
    assert C.names() == C.BENCHMARK == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
        "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
        "elastic_transform", "pixelate", "jpeg_compression",
    )  # fmt: skip
    assert C.EXTRA == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert set(C.CORRUPTIONS.names()) == set(ALL) and len(ALL) == 19


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("severity", [1, 5])
@pytest.mark.parametrize("channels,size", [(3, 32), (1, 8)])
def test_output_is_a_clamped_batch_like_the_input_and_reproducible(
    name, severity, channels, size
):
    x = shapes(3, channels, size)
    out = C.corrupt(x, name, severity, seed=1)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, C.corrupt(x, name, severity, seed=1))
    other = C.corrupt(x, name, severity, seed=2)
    # At 8x8 the severity-1 streak of motion_blur (sigma 1/4 pixel) is too short to show its
    # random angle.
    if name in RANDOM and (name, severity, size) != ("motion_blur", 1, 8):
        assert not torch.equal(out, other)
    else:
        assert torch.equal(out, other)


@pytest.mark.parametrize("name", ALL)
def test_a_generator_drives_the_functions_directly_and_other_float_dtypes_come_back(name):
    fn = C.get(name)
    x = shapes(2, 3, 16).double()
    a = fn(x, 3, seeded(5))
    assert a.dtype == torch.float64 and torch.equal(a, fn(x, 3, seeded(5)))
    assert fn(x.half(), 3, seeded(5)).dtype == torch.float16


def test_the_corruptions_that_ignore_the_generator_are_exactly_the_non_random_ones():
    assert RANDOM == {
        "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur",
        "motion_blur", "snow", "frost", "fog", "spatter", "elastic_transform",
    }  # fmt: skip


def test_each_setting_draws_its_own_noise_from_a_stable_seed():
    x = constant(0.5, n=1)
    a = C.corrupt(x, "gaussian_noise", 1, seed=0)
    b = C.corrupt(x, "speckle_noise", 1, seed=0)
    c = C.corrupt(x, "gaussian_noise", 2, seed=0)
    # Same standard normal draws would make these exact multiples of each other.
    assert not torch.allclose((a - 0.5) / 0.04, (b - 0.5) / 0.03, atol=1e-3)
    assert not torch.allclose((a - 0.5) / 0.04, (c - 0.5) / 0.06, atol=1e-3)
    # Pinned: changing the seed scheme changes every recorded corruption result.
    assert C.seed_for(0, "fog", 3) == 1396774523
    assert C.seed_for(7, "fog", 3) != C.seed_for(0, "fog", 3)


@pytest.mark.parametrize("severity", [0, 6, -1, "3", 2.0, True])
def test_a_severity_outside_1_to_5_is_a_user_error_naming_it(severity):
    with pytest.raises(UserError, match=r"severity .* not valid; severities are the integers 1"):
        C.corrupt(constant(0.5), "fog", severity)


def test_an_unknown_corruption_is_a_user_error_with_the_closest_name():
    with pytest.raises(UserError, match=r"unknown corruption 'fogg'; did you mean 'fog'\?"):
        C.corrupt(constant(0.5), "fogg", 1)


@pytest.mark.parametrize(
    "bad", [torch.zeros(3, 8, 8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8),
            torch.zeros(1, 4, 8, 8)]
)  # fmt: skip
def test_anything_but_a_float_batch_of_grey_or_rgb_images_is_a_user_error(bad):
    with pytest.raises(UserError, match="corruptions take"):
        C.corrupt(bad, "contrast", 1)


# ---- severity ordering ----------------------------------------------------------------------

# Severities along which the mean L2 distance to the clean image does not decrease. Most
# corruptions grow over 1..5; where the recipe's parameters do not, the chains say what holds:
GROWS_ALONG = {
    # Later severities blur more, which smooths the pixel shuffles away; only a second
    # shuffle pass at the same blur (2 -> 4, 3 -> 5) is always further from the original.
    "glass_blur": [(2, 4), (3, 5)],
    # Severities 3-5 dim the image (weight 0.9 -> 0.75) as they add frost (0.4 -> 0.45); the
    # frost itself grows at every step (see the black-image test).
    "frost": [(1, 2, 3)],
    # The random affine jitter shrinks (8% -> 3% of the side) while the local displacements
    # grow, so the distance falls; see the elastic tests for what grows.
    "elastic_transform": [],
    # Water drops at 1-3, mud at 4-5: two corruptions in one.
    "spatter": [(1, 2, 3), (4, 5)],
    # 1-2 desaturate (gain 0.3, 0.1), 3-5 oversaturate (1.5, 2, 2.5).
    "saturate": [(1, 2), (3, 4, 5)],
}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("channels,size", [(3, 32), (1, 8)])
def test_distance_to_the_clean_image_grows_with_severity(name, channels, size):
    x = shapes(12, channels, size)
    fn = C.get(name)
    distance = {
        s: (fn(x, s, seeded(0)) - x).flatten(1).norm(dim=1).mean().item() for s in C.SEVERITIES
    }
    for chain in GROWS_ALONG.get(name, [(1, 2, 3, 4, 5)]):
        for lower, higher in zip(chain[:-1], chain[1:], strict=True):
            assert distance[higher] >= distance[lower] - 1e-4, (lower, higher, distance)
    if name not in GROWS_ALONG and (channels, size) == (3, 32):
        assert distance[5] > distance[1]


# ---- pre-made sets --------------------------------------------------------------------------


@pytest.fixture
def cifar_c(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {}
    for name in ("gaussian_noise", "fog"):
        arrays[name] = rng.integers(0, 256, (5 * 4, 32, 32, 3), dtype=np.uint8)
        np.save(folder / f"{name}.npy", arrays[name])
    labels = np.tile(rng.integers(0, 10, 4, dtype=np.uint8), 5)
    np.save(folder / "labels.npy", labels)
    return tmp_path, folder, arrays, labels


def test_find_premade_looks_for_the_official_folder_name(cifar_c):
    data_dir, folder, _, _ = cifar_c
    assert C.find_premade(data_dir, "cifar10") == folder
    assert C.find_premade(data_dir, "cifar100") is None
    assert C.find_premade(data_dir, "digits") is None


def test_load_premade_takes_the_first_points_of_the_severity_block(cifar_c):
    _, folder, arrays, labels = cifar_c
    x, y = C.load_premade(folder, "fog", 3, n=2)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    expected = torch.from_numpy(arrays["fog"][8:10].astype(np.float32) / 255).permute(0, 3, 1, 2)
    assert torch.equal(x, expected)
    assert y.dtype == torch.long and y.tolist() == labels[8:10].tolist()
    x_all, y_all = C.load_premade(folder, "gaussian_noise", 5)
    assert len(x_all) == 4 and torch.equal(x_all[0] * 255, torch.from_numpy(
        arrays["gaussian_noise"][16].astype(np.float32)).permute(2, 0, 1))
    assert y_all.tolist() == labels[16:20].tolist()


def test_load_premade_errors_name_the_missing_file_or_the_bad_value(cifar_c):
    _, folder, _, _ = cifar_c
    with pytest.raises(UserError, match=r"snow\.npy does not exist"):
        C.load_premade(folder, "snow", 1)
    with pytest.raises(UserError, match="asked for 5 images"):
        C.load_premade(folder, "fog", 1, n=5)
    with pytest.raises(UserError, match="unknown corruption 'mist'"):
        C.load_premade(folder, "mist", 1)
    with pytest.raises(UserError, match="severity 6"):
        C.load_premade(folder, "fog", 6)
    (folder / "labels.npy").unlink()
    with pytest.raises(UserError, match=r"labels\.npy does not exist"):
        C.load_premade(folder, "fog", 1)


def test_load_premade_reads_the_image_folder_layout_balanced_over_classes(tmp_path):
    folder = tmp_path / "Tiny-ImageNet-C"
    images = {}
    for wnid in ("n02", "n01"):
        for name in ("a", "b"):
            img = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=seeded(len(images)))
            path = folder / "fog" / "2" / wnid / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)
            images[wnid, name] = img
    assert C.find_premade(tmp_path, "tinyimagenet") == folder
    x, y = C.load_premade(folder, "fog", 2, n=3)
    assert y.tolist() == [0, 1, 0]  # n01 is class 0; first images of each class come first
    for got, key in zip(x, [("n01", "a"), ("n02", "a"), ("n01", "b")], strict=True):
        assert torch.equal(got * 255, images[key].float())
    with pytest.raises(UserError, match=r"Tiny-ImageNet-C/fog/3 does not exist"):
        C.load_premade(folder, "fog", 3)
