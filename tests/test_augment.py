"""Batched crop and flip: checked against explicit per-image slicing of a padded image."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robench.augment import AUGMENTATIONS, augment_batch, copies
from robench.errors import UserError


def coordinate_images(n: int, channels: int = 2, size: int = 8) -> torch.Tensor:
    """Images whose every pixel value is unique: it encodes (image, channel, row, column)."""
    n_i, c_i, r_i, w_i = torch.meshgrid(
        torch.arange(n), torch.arange(channels), torch.arange(size), torch.arange(size),
        indexing="ij",
    )  # fmt: skip
    return (((n_i * channels + c_i) * size + r_i) * size + w_i + 1).float()


def reference_crops(x: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """All (2p+1)^2 crops of each zero-padded image, by explicit slicing: n -> K x C x H x W."""
    _, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    side = range(2 * padding + 1)
    return [torch.stack([p[:, dy : dy + h, dx : dx + w] for dy in side for dx in side])
            for p in padded]  # fmt: skip


def matching_crop(out: torch.Tensor, crops: torch.Tensor) -> int | None:
    hits = [k for k, crop in enumerate(crops) if torch.equal(out, crop)]
    return hits[0] if hits else None


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_output_keeps_shape_dtype_and_range(kind):
    x = torch.rand(16, 3, 32, 32)
    out = augment_batch(x, kind, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1


def test_none_returns_the_batch_itself():
    x = torch.rand(4, 3, 8, 8)
    assert augment_batch(x, "none", torch.Generator().manual_seed(0)) is x


@pytest.mark.parametrize("padding", [1, 3])
def test_crop_equals_a_crop_of_the_zero_padded_image(padding):
    x = coordinate_images(12)
    out = augment_batch(x, "crop", torch.Generator().manual_seed(1), padding=padding)
    found = [matching_crop(o, crops) for o, crops in zip(out, reference_crops(x, padding),
                                                         strict=True)]  # fmt: skip
    assert None not in found
    assert len(set(found)) > 1  # images get their own offsets


def test_crop_offsets_follow_the_documented_draw_order():
    """Offsets are the generator's first N x 2 integers in [0, 2p], as the module documents."""
    x, padding = coordinate_images(6), 2
    out = augment_batch(x, "crop", torch.Generator().manual_seed(5), padding=padding)
    offsets = torch.randint(0, 2 * padding + 1, (6, 2), generator=torch.Generator().manual_seed(5))
    padded = F.pad(x, (padding,) * 4)
    for n, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(out[n], padded[n, :, dy : dy + 8, dx : dx + 8])


def test_default_padding_is_an_eighth_of_the_side():
    x = coordinate_images(64, channels=1, size=16)
    out = augment_batch(x, "crop", torch.Generator().manual_seed(2))
    found = [matching_crop(o, c) for o, c in zip(out, reference_crops(x, 2), strict=True)]
    assert None not in found
    shifts = {(k // 5 - 2, k % 5 - 2) for k in found}
    assert any(2 in (abs(dy), abs(dx)) for dy, dx in shifts)  # the full 2 pixels occur


def test_crop_and_flip_flips_some_images_and_not_others():
    x = coordinate_images(32)
    out = augment_batch(x, "crop+flip", torch.Generator().manual_seed(3), padding=0)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)]
    unchanged = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f != u for f, u in zip(flipped, unchanged, strict=True))
    assert 0 < sum(flipped) < 32


def test_crop_and_flip_is_a_flipped_or_plain_crop_of_the_padded_image():
    x = coordinate_images(24)
    out = augment_batch(x, "crop+flip", torch.Generator().manual_seed(4), padding=2)
    crops = reference_crops(x, 2)
    for o, c in zip(out, crops, strict=True):
        assert matching_crop(o, c) is not None or matching_crop(o.flip(-1), c) is not None


def test_the_same_generator_seed_gives_the_same_batch():
    x = torch.rand(32, 3, 16, 16)
    a = augment_batch(x, "crop+flip", torch.Generator().manual_seed(9))
    b = augment_batch(x, "crop+flip", torch.Generator().manual_seed(9))
    c = augment_batch(x, "crop+flip", torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generator_state_advances_so_resuming_reproduces_the_sequence():
    x = torch.rand(8, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    augment_batch(x, "crop+flip", g)
    saved = g.get_state()
    expected = augment_batch(x, "crop+flip", g)
    resumed = torch.Generator()
    resumed.set_state(saved)
    assert torch.equal(augment_batch(x, "crop+flip", resumed), expected)


def test_without_a_generator_the_global_rng_is_used():
    x = torch.rand(8, 3, 8, 8)
    torch.manual_seed(0)
    a = augment_batch(x, "crop+flip")
    torch.manual_seed(0)
    assert torch.equal(augment_batch(x, "crop+flip"), a)


def test_unknown_kind_is_a_user_error_listing_the_valid_ones():
    with pytest.raises(UserError, match=r"'crop\+rotate'.*crop\+flip, crop, none, augmix\+clean"):
        augment_batch(torch.rand(2, 3, 8, 8), "crop+rotate")


def test_negative_padding_is_a_user_error():
    with pytest.raises(UserError, match="padding.*-1"):
        augment_batch(torch.rand(2, 3, 8, 8), "crop", padding=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_drives_a_cuda_batch_like_a_cpu_one():
    x = torch.rand(16, 3, 16, 16)
    cpu = augment_batch(x, "crop+flip", torch.Generator().manual_seed(1))
    cuda = augment_batch(x.cuda(), "crop+flip", torch.Generator().manual_seed(1))
    assert cuda.device.type == "cuda" and torch.equal(cuda.cpu(), cpu)


# --- augmix+clean: the GWI authors' CIFAR data -------------------------------------------------


def uint8_images(n: int, seed: int = 0) -> torch.Tensor:
    """Images on the 1/255 grid, as a CIFAR batch is after to_float."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=gen).float().div(255)


def test_an_augmix_clean_epoch_holds_every_image_twice():
    assert copies("augmix+clean") == 2
    assert [copies(k) for k in ("crop+flip", "crop", "none")] == [1, 1, 1]


def test_unmixed_rows_are_the_crop_and_flip_of_the_same_draws():
    x = uint8_images(12)
    mixed = torch.arange(12) % 3 == 0
    out = augment_batch(x, "augmix+clean", torch.Generator().manual_seed(5), mixed=mixed)
    plain = augment_batch(x, "crop+flip", torch.Generator().manual_seed(5))
    assert torch.equal(out[~mixed], plain[~mixed])
    assert all(not torch.equal(out[i], plain[i]) for i in mixed.nonzero().flatten())


def test_mixed_rows_stay_on_the_pixel_grid_in_range_and_reproduce_from_the_seed():
    x = uint8_images(8)
    mixed = torch.ones(8, dtype=torch.bool)
    a = augment_batch(x, "augmix+clean", torch.Generator().manual_seed(2), mixed=mixed)
    b = augment_batch(x, "augmix+clean", torch.Generator().manual_seed(2), mixed=mixed)
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a.mul(255).round(), a.mul(255).round().clamp(0, 255))
    assert torch.allclose(a * 255, (a * 255).round(), atol=1e-4)


def test_augmix_draws_its_operations_per_image_not_per_batch():
    """Eight copies of one image, mixed in one call, come out as eight different images."""
    x = uint8_images(1).expand(8, -1, -1, -1).clone()
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x, "augmix+clean", gen, padding=0, mixed=torch.ones(8, dtype=torch.bool))
    distinct = {tuple(img.flatten().tolist()) for img in out}
    assert len(distinct) == 8


def test_augmix_leaves_the_global_generator_alone():
    x = uint8_images(4)
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    augment_batch(x, "augmix+clean", torch.Generator().manual_seed(0),
                  mixed=torch.ones(4, dtype=torch.bool))
    assert torch.equal(torch.rand(3), expected)
