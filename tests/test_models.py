"""Behaviour of robench's model architectures and of `create_model`, the one door to them."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from robench.errors import UserError
from robench.models import Classifier, Normalize, count_parameters, create_model
from robench.registry import ARCHS

ALL_ARCHS = [
    "cnn",
    "alexnet",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "resnet18",
    "resnet34",
    "resnet50",
    "preactresnet18",
    "wrn-28-10",
    "wrn-34-10",
    "resnext29-4x32d",
]
# Archs whose default strides downsample little enough for 8x8 digits.
SMALL_IMAGE_ARCHS = [
    "cnn",
    "resnet18",
    "resnet34",
    "resnet50",
    "preactresnet18",
    "wrn-28-10",
    "wrn-34-10",
    "resnext29-4x32d",
]
# Five stride-2 pools (VGG) or conv1 + three pools (AlexNet) need more than 8x8.
LARGE_IMAGE_ARCHS = [a for a in ALL_ARCHS if a not in SMALL_IMAGE_ARCHS]

CIFAR = dict(
    in_channels=3, num_classes=10, image_size=32, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26)
)
DIGITS = dict(in_channels=1, num_classes=10, image_size=8, mean=(0.3,), std=(0.4,))


pytestmark = pytest.mark.usefixtures("one_thread")


def build(arch: str, strides: str | None = None, width: float = 1.0) -> nn.Module:
    """The bare network from its registered builder: no Normalize, no image-size probe."""
    entry = ARCHS.entry(arch)
    return entry.obj(
        in_channels=3,
        num_classes=10,
        width=width,
        strides=entry.meta["default_strides"] if strides is None else strides,
    )


# --- hand-written layer formulas, independent of the model code -------------------------------


def conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def linear(i: int, o: int) -> int:
    return i * o + o


VGG_CFGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}


def vgg_expected(depth: int, batch_norm: bool, classes: int = 10) -> int:
    total, cin = 0, 3
    for v in VGG_CFGS[depth]:
        if v == "M":
            continue
        total += conv(3, cin, v) + (bn(v) if batch_norm else 0)
        cin = v
    return total + linear(512, 256) + linear(256, 256) + linear(256, classes)


ALEXNET_EXPECTED = (
    conv(5, 3, 64)
    + conv(5, 64, 192)
    + conv(3, 192, 384)
    + conv(3, 384, 256)
    + conv(3, 256, 256)
    + linear(256, 512)
    + linear(512, 512)
    + linear(512, 10)
)
CNN_EXPECTED = (
    conv(3, 3, 32, bias=False)
    + bn(32)
    + conv(3, 32, 64, bias=False)
    + bn(64)
    + conv(3, 64, 128, bias=False)
    + bn(128)
    + linear(128, 10)
)

def grouped_conv(k: int, cin: int, cout: int, groups: int) -> int:
    return k * k * (cin // groups) * cout


def resnext29_expected(cardinality: int = 4, group_width: int = 32, classes: int = 10) -> int:
    """AugMix's / the GWI authors' CIFAR ResNeXt-29: stem 64, 3 stages x 3 bottlenecks."""
    total, cin = conv(3, 3, 64, bias=False) + bn(64), 64
    for stage, out in enumerate((256, 512, 1024)):
        inner = cardinality * group_width * 2**stage
        for block in range(3):
            total += (conv(1, cin, inner, bias=False) + bn(inner)
                      + grouped_conv(3, inner, inner, cardinality) + bn(inner)
                      + conv(1, inner, out, bias=False) + bn(out))
            if block == 0:  # the width changes: a 1x1 projection with BN
                total += conv(1, cin, out, bias=False) + bn(out)
            cin = out
    return total + linear(1024, classes)


REFERENCE_COUNTS = {
    "resnext29-4x32d": resnext29_expected(),  # 6,807,882: AugMix's "6.8M"
    "resnet18": 11_173_962,
    "preactresnet18": 11_172_170,
    "wrn-28-10": 36_479_194,
    "wrn-34-10": 46_160_474,
    "resnet34": 21_282_122,
    "resnet50": 23_520_842,
    "alexnet": ALEXNET_EXPECTED,
    "cnn": CNN_EXPECTED,
    **{f"vgg{d}": vgg_expected(d, False) for d in VGG_CFGS},
    **{f"vgg{d}_bn": vgg_expected(d, True) for d in VGG_CFGS},
}


# --- registry ---------------------------------------------------------------------------------


def test_every_arch_is_registered_with_a_stride_default_and_one_line_description():
    assert sorted(ARCHS.names()) == sorted(ALL_ARCHS)
    for entry in ARCHS:
        assert re.fullmatch(r"[12]+", entry.meta["default_strides"]), entry.name
        assert entry.description and "\n" not in entry.description


@pytest.mark.parametrize(
    ("arch", "strides"),
    [
        ("cnn", "12"),
        ("alexnet", "2222"),
        ("vgg16", "22222"),
        ("resnet18", "1222"),
        ("preactresnet18", "1222"),
        ("wrn-28-10", "122"),
    ],
)
def test_default_strides_are_the_reference_baselines(arch, strides):
    assert ARCHS.entry(arch).meta["default_strides"] == strides


# --- parameter counts -------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_parameter_count_at_width_1_matches_the_reference(arch):
    assert count_parameters(build(arch)) == REFERENCE_COUNTS[arch]


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_strides_change_spatial_sizes_not_parameter_counts(arch):
    n = len(ARCHS.entry(arch).meta["default_strides"])
    counts = {count_parameters(build(arch, strides=s)) for s in ("1" * n, "2" * n)}
    assert counts == {REFERENCE_COUNTS[arch]}


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_width_below_one_gives_a_smaller_network(arch):
    assert count_parameters(build(arch, width=0.5)) < REFERENCE_COUNTS[arch]


def test_count_parameters_counts_only_trainable_parameters():
    model = create_model("cnn", **DIGITS)
    total = count_parameters(model)
    model.net.linear.weight.requires_grad_(False)
    assert count_parameters(model) == total - 128 * 10


# --- forward and backward ---------------------------------------------------------------------


def _check_forward_backward(model: nn.Module, in_channels: int, size: int) -> None:
    x = torch.rand(2, in_channels, size, size)
    out = model(x)
    assert out.shape == (2, 10)
    out.square().sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]}"


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_every_arch_trains_on_cifar_sized_images(arch):
    _check_forward_backward(create_model(arch, **CIFAR), 3, 32)


@pytest.mark.parametrize("arch", SMALL_IMAGE_ARCHS)
def test_archs_with_little_downsampling_train_on_8x8_digits(arch):
    _check_forward_backward(create_model(arch, **DIGITS), 1, 8)


@pytest.mark.parametrize("arch", LARGE_IMAGE_ARCHS)
def test_too_small_images_fail_early_naming_the_smallest_size_that_works(arch):
    with pytest.raises(UserError, match="--image-size") as info:
        create_model(arch, **DIGITS)
    smallest = int(re.search(r"--image-size (\d+)", str(info.value)).group(1))
    assert f"at least {smallest}x{smallest}, got 8x8" in str(info.value)
    # The size named is exactly the threshold (width does not change spatial sizes).
    create_model(arch, **{**DIGITS, "image_size": smallest}, width=0.125)
    with pytest.raises(UserError):
        create_model(arch, **{**DIGITS, "image_size": smallest - 1}, width=0.125)


def test_vgg_needs_32x32_with_five_pools_and_less_with_a_pool_removed():
    with pytest.raises(UserError, match=r"'22222' needs images of at least 32x32"):
        create_model("vgg11", **{**CIFAR, "image_size": 31})
    create_model("vgg11", **{**CIFAR, "image_size": 16}, strides="11222")


def _map_entering_pooling(model: Classifier, size: int = 32) -> tuple[int, int]:
    seen = []
    hook = model.net.avgpool.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    with torch.no_grad():
        model(torch.rand(1, 3, size, size))
    hook.remove()
    return tuple(seen[0][-2:])


@pytest.mark.parametrize(("strides", "side"), [("1222", 4), ("1122", 8), ("2222", 2)])
def test_resnet18_map_before_global_pooling_follows_the_strides(strides, side):
    model = create_model("resnet18", **CIFAR, strides=strides)
    assert _map_entering_pooling(model) == (side, side)


@pytest.mark.parametrize(
    ("arch", "strides", "side"),
    [
        ("vgg16", "22222", 1),
        ("vgg16", "11222", 4),
        ("alexnet", "2222", 2),
        ("alexnet", "1122", 7),
        ("wrn-28-10", "122", 8),
    ],
)
def test_map_before_global_pooling_for_other_families(arch, strides, side):
    model = create_model(arch, **CIFAR, strides=strides, width=0.125)
    assert _map_entering_pooling(model) == (side, side)


# --- stages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_running_the_network_in_two_halves_at_any_stage_equals_forward(arch):
    net = build(arch, width=0.125).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        full = net(x)
        for stage in net.stage_names:
            halves = net.forward_from(net.forward_to(x, stage), stage)
            torch.testing.assert_close(halves, full)
    assert net.stages() == [getattr(net, name) for name in net.stage_names]


@pytest.mark.parametrize(
    ("arch", "keys"),
    [
        (
            "resnet18",
            [
                "conv1.weight",
                "bn1.running_mean",
                "layer2.0.shortcut.0.weight",
                "layer2.0.shortcut.1.weight",
                "layer4.1.bn2.bias",
                "linear.weight",
            ],
        ),
        (
            "preactresnet18",
            [
                "conv1.weight",
                "layer1.0.bn1.weight",
                "layer3.0.shortcut.0.weight",
                "bn.weight",
                "linear.bias",
            ],
        ),
        (
            "wrn-28-10",
            [
                "conv1.weight",
                "block1.layer.0.convShortcut.weight",
                "block3.layer.3.conv2.weight",
                "bn1.weight",
                "fc.weight",
            ],
        ),
    ],
)
def test_parameter_names_follow_the_reference_code_so_published_weights_map(arch, keys):
    state = build(arch, width=0.125).state_dict()
    assert set(keys) <= set(state)


def test_resnet18_third_stage_is_256_channels_at_8x8():
    with torch.no_grad():
        features = build("resnet18").eval().forward_to(torch.rand(1, 3, 32, 32), "layer3")
    assert features.shape == (1, 256, 8, 8)


def test_an_unknown_stage_is_a_user_error_listing_the_stages():
    with pytest.raises(UserError, match="layer4"):
        build("resnet18").forward_to(torch.rand(1, 3, 32, 32), "layer5")


# --- Normalize and the Classifier wrapper -----------------------------------------------------


def test_normalize_maps_known_values():
    norm = Normalize(mean=(0.5, 0.25), std=(0.5, 0.25))
    x = torch.tensor([[[[1.0, 0.0]], [[0.5, 0.0]]]])  # 1 x 2 x 1 x 2
    expected = torch.tensor([[[[1.0, -1.0]], [[1.0, -1.0]]]])
    torch.testing.assert_close(norm(x), expected)


def test_normalize_keeps_mean_and_std_as_saved_buffers_not_parameters():
    norm = Normalize(mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    assert list(norm.parameters()) == []
    assert norm.state_dict()["mean"].shape == (1, 3, 1, 1)
    assert "std=(0.4, 0.5, 0.6)" in repr(norm)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_every_model_starts_with_normalize_so_it_takes_0_1_inputs(arch):
    model = create_model(arch, **CIFAR, width=0.125)
    first = next(iter(model.children()))
    assert isinstance(first, Normalize)
    torch.testing.assert_close(first.mean.flatten(), torch.tensor(CIFAR["mean"]))


def test_classifier_is_the_network_applied_to_normalized_input():
    model = create_model("cnn", **DIGITS).eval()
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net((x - 0.3) / 0.4))


def test_creating_a_model_leaves_it_in_train_mode_with_untouched_batchnorm_statistics():
    model = create_model("resnet18", **CIFAR)
    assert all(m.training for m in model.modules())
    assert torch.count_nonzero(model.net.bn1.running_mean) == 0
    assert model.net.bn1.num_batches_tracked.item() == 0


# --- user errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("strides", ["122", "12222", "1232", "12a2", ""])
def test_a_bad_strides_string_names_the_value_and_the_expected_form(strides):
    with pytest.raises(
        UserError,
        match=rf"strides '{strides}' for resnet18 must be 4 digits "
        r"of 1 or 2, e\.g\. '1222'",
    ):
        create_model("resnet18", **CIFAR, strides=strides)


def test_an_unknown_arch_suggests_the_closest_name():
    with pytest.raises(UserError, match="resnet18"):
        create_model("resnet19", **CIFAR)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"width": 0}, "width 0"),
        ({"width": -1.0}, "width -1.0"),
        ({"num_classes": 1}, "num_classes 1"),
        ({"in_channels": 0}, "in_channels 0"),
        ({"mean": (0.5,)}, r"mean \(0.5,\)"),
        ({"std": (0.2, 0.0, 0.2)}, r"std \(0.2, 0.0, 0.2\)"),
        ({"image_size": 0}, "image size 0"),
    ],
)
def test_bad_model_arguments_are_user_errors_naming_the_value(override, named):
    with pytest.raises(UserError, match=named):
        create_model("cnn", **{**CIFAR, **override})
