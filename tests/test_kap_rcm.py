"""The architecture defenses: Kernel Average Pooling (kap) and larger feature maps (rcm).

The KAP layer is checked against a direct loop over channels written from methods.md's
description (grid layout, borders averaged over the neighbours that exist), and the RCM
feature-map sizes against sizes worked out by hand from each architecture's layers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robench import api
from robench.attacks.view import attack_view
from robench.config import EvalConfig, ModelConfig
from robench.defenses import configure_model, resolve_defense
from robench.defenses.gaussian import GaussianObjective
from robench.defenses.pgd_at import PGDATObjective
from robench.errors import UserError
from robench.models import count_parameters, create_model
from robench.models.layers import KernelAveragePool, Upsample, kap_grid
from robench.registry import ARCHS
from robench.targets import from_run

MISSION_ARCHS = ["alexnet", "vgg11_bn", "vgg16", "resnet18", "preactresnet18", "wrn-28-10"]
CIFAR = dict(in_channels=3, num_classes=10, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)


pytestmark = pytest.mark.usefixtures("one_thread")


def direct_kap(x: torch.Tensor, rows: int, columns: int, k: int) -> torch.Tensor:
    """Channel c = (c // columns, c % columns); mean over the k x k window of existing cells."""
    reach = (k - 1) // 2
    out = torch.empty_like(x)
    for c in range(x.shape[1]):
        i, j = divmod(c, columns)
        members = [a * columns + b
                   for a in range(max(0, i - reach), min(rows, i + reach + 1))
                   for b in range(max(0, j - reach), min(columns, j + reach + 1))]
        out[:, c] = x[:, members].mean(dim=1)
    return out


def build(arch: str, spec: str = "standard", overrides=None, strides=None, width=0.125):
    """`arch` with the defense `spec` applied, the way `robench train` builds it."""
    defense = resolve_defense(spec, overrides or {}, dataset="cifar10")
    model_cfg = ModelConfig(arch=arch, strides=strides, width=width)
    configure_model(defense, model_cfg)
    torch.manual_seed(0)
    model = create_model(arch, **CIFAR, strides=model_cfg.strides, width=width)
    return defense.apply(model), model_cfg


def map_entering_pooling(model: nn.Module) -> tuple[int, int]:
    seen = []
    hook = model.net.avgpool.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, 32, 32))
    hook.remove()
    return tuple(seen[0][-2:])


# ------------------------------------------------------------------------------------------
# The KAP layer


@pytest.mark.parametrize(("channels", "grid"), [
    (64, (8, 8)), (192, (12, 16)), (256, (16, 16)), (12, (3, 4)), (7, (1, 7)), (1, (1, 1)),
])
def test_kap_lays_channels_on_the_most_square_exact_grid(channels, grid):
    assert kap_grid(channels) == grid


def test_kap_of_a_2x2_grid_with_a_3x3_window_is_the_mean_of_all_four_channels():
    x = torch.tensor([1.0, 2.0, 3.0, 10.0]).view(1, 4, 1, 1).expand(2, 4, 3, 3).contiguous()
    out = KernelAveragePool(4, kernel_size=3)(x)
    assert torch.allclose(out, torch.full_like(x, 4.0))


def test_kap_2d_equals_the_direct_window_mean_with_borders_over_existing_neighbours():
    torch.manual_seed(0)
    x = torch.randn(3, 12, 4, 5)  # 12 channels: a 3 x 4 grid
    for k in (1, 3, 5):
        out = KernelAveragePool(12, kernel_size=k)(x)
        assert torch.allclose(out, direct_kap(x, 3, 4, k), atol=1e-6)
    # Corner channel 0 of the 3x4 grid with k=3 averages channels 0, 1, 4, 5 only.
    out = KernelAveragePool(12, kernel_size=3)(x)
    assert torch.allclose(out[:, 0], x[:, [0, 1, 4, 5]].mean(dim=1), atol=1e-6)


def test_kap_1d_averages_k_consecutive_channels():
    x = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0]).view(1, 5, 1, 1)
    out = KernelAveragePool(5, kernel_size=3, form="1d")(x).flatten().tolist()
    assert out == pytest.approx([1.5, 7 / 3, 14 / 3, 28 / 3, 12.0])


def test_kap_keeps_the_shape_passes_gradients_and_has_no_parameters_or_saved_state():
    layer = KernelAveragePool(16, kernel_size=3)
    x = torch.randn(2, 16, 5, 5, requires_grad=True)
    out = layer(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert list(layer.parameters()) == [] and layer.state_dict() == {}


def test_kap_works_in_channels_last_layout_and_under_bf16():
    torch.manual_seed(0)
    x = torch.randn(2, 12, 4, 4)
    layer = KernelAveragePool(12)
    expected = direct_kap(x, 3, 4, 3)
    assert torch.allclose(layer(x.contiguous(memory_format=torch.channels_last)), expected,
                          atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.allclose(layer(x).float(), expected, atol=0.05)


def test_kap_activation_noise_is_on_at_test_time_and_off_by_default():
    x = torch.randn(2, 9, 3, 3)
    quiet, noisy = KernelAveragePool(9).eval(), KernelAveragePool(9, noise=0.1).eval()
    assert torch.equal(quiet(x), quiet(x))
    a, b = noisy(x), noisy(x)
    assert not torch.equal(a, b)
    assert 0.05 < (a - quiet(x)).std().item() < 0.2


@pytest.mark.parametrize("arch", MISSION_ARCHS)
def test_kap_follows_every_convolution_shortcuts_included(arch):
    model, _ = build(arch, "kap")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    pairs = [m for m in model.modules()
             if isinstance(m, nn.Sequential) and len(m) == 2
             and isinstance(m[0], nn.Conv2d) and isinstance(m[1], KernelAveragePool)]
    assert len(convs) == len(pairs) > 0
    assert all(pair[1].channels == pair[0].out_channels for pair in pairs)
    if arch == "resnet18":  # 1 stem + 16 block convs + 3 shortcut 1x1 convs
        assert len(pairs) == 20
        assert sum(pair[0].kernel_size == (1, 1) for pair in pairs) == 3


# ------------------------------------------------------------------------------------------
# Every arch with each transform


@pytest.mark.parametrize("arch", MISSION_ARCHS)
@pytest.mark.parametrize(("spec", "overrides", "strides"), [
    ("kap", {}, None),
    ("kap", {"kap": {"form": "1d", "kernel_size": 5, "noise": 0.1}}, None),
    ("rcm", {}, None),
    ("rcm", {"rcm": {"scale": 2}}, "base"),
    ("rcm+kap", {}, None),
])
def test_every_arch_takes_each_transform_without_new_parameters(arch, spec, overrides, strides):
    base, _ = build(arch)
    strides = ARCHS.entry(arch).meta["default_strides"] if strides == "base" else None
    model, _ = build(arch, spec, overrides, strides=strides)
    assert count_parameters(model) == count_parameters(base)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = model.train()(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


# Sizes worked out by hand at 32x32: ResNet stages halve at each '2' (32/8 = 4, 32/4 = 8);
# WRN has 3 stages (32/4 = 8, 32/2 = 16); VGG removes one 2x2 pool per '1' (32/32 = 1,
# 32/8 = 4, 64/32 = 2); AlexNet: conv1 (stride d1) then 2x2 pools of stride d2..d4, a stride-1
# pool taking one pixel: 2222: 16 -> 8 -> 4 -> 2; 1122: 32 -> 31 -> 15 -> 7; x2 + 2222: 64 ->
# 32 -> 16 -> 8 -> 4.
@pytest.mark.parametrize(("arch", "base", "rcm_strides", "upsampled"), [
    ("resnet18", 4, 8, 8),
    ("preactresnet18", 4, 8, 8),
    ("wrn-28-10", 8, 16, 16),
    ("vgg16", 1, 4, 2),
    ("vgg11_bn", 1, 4, 2),
    ("alexnet", 2, 7, 4),
])
def test_the_map_entering_global_pooling_follows_methods_table(arch, base, rcm_strides,
                                                                upsampled):
    default = ARCHS.entry(arch).meta["default_strides"]
    assert map_entering_pooling(build(arch)[0]) == (base, base)
    assert map_entering_pooling(build(arch, "rcm")[0]) == (rcm_strides, rcm_strides)
    model, _ = build(arch, "rcm", {"rcm": {"scale": 2}}, strides=default)
    assert map_entering_pooling(model) == (upsampled, upsampled)


@pytest.mark.parametrize(("arch", "strides"), [
    ("resnet18", "1122"), ("preactresnet18", "1122"), ("vgg16", "11222"), ("alexnet", "1122"),
])
def test_rcm_strides_are_the_papers_per_architecture(arch, strides):
    _, model_cfg = build(arch, "rcm")
    assert model_cfg.strides == strides


def test_rcm_upsampling_sits_after_normalisation_so_eps_stays_on_the_original_image():
    model, _ = build("resnet18", "rcm", {"rcm": {"scale": 2}}, strides="1222")
    assert isinstance(model.resize, Upsample)
    seen = []
    model.net.register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
    x = torch.rand(1, 3, 32, 32)
    model.eval()(x)
    normalised = (x - 0.5) / 0.25
    assert torch.allclose(seen[0], normalised.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_rcm_takes_the_strides_flag_and_refuses_two_different_stride_settings():
    _, model_cfg = build("resnet18", "rcm", strides="1112")
    assert model_cfg.strides == "1112"
    _, model_cfg = build("resnet18", "rcm", {"rcm": {"strides": "1112"}})
    assert model_cfg.strides == "1112"
    with pytest.raises(UserError, match="--strides 1222 conflicts with rcm.strides=1122"):
        build("resnet18", "rcm", {"rcm": {"strides": "1122"}}, strides="1222")


@pytest.mark.parametrize(("spec", "params", "message"), [
    ("rcm", {"scale": 0}, r"rcm\.scale must be an integer >= 1"),
    ("rcm", {"mode": "cubic"}, r"rcm\.mode 'cubic' is not one of nearest"),
    ("kap", {"kernel_size": 2}, r"kap\.kernel_size must be an odd number >= 1"),
    ("kap", {"form": "3d"}, r"kap\.form '3d' is not one of 2d, 1d"),
    ("kap", {"noise": -1}, r"kap\.noise must be >= 0"),
])
def test_bad_parameters_name_the_key_and_what_is_valid(spec, params, message):
    with pytest.raises(UserError, match=message):
        build("resnet18", spec, {spec: params})


def test_kap_trains_on_gaussian_noise_unless_another_defense_owns_the_objective():
    alone = resolve_defense("kap", {}, dataset="digits")
    assert isinstance(alone.objective, GaussianObjective)
    assert alone.objective.params.sigma == 0.1
    assert resolve_defense("kap", {"kap": {"input_sigma": 0.2}}).objective.params.sigma == 0.2
    composed = resolve_defense("kap+pgd-at", {}, dataset="digits")
    assert isinstance(composed.objective, PGDATObjective)
    assert composed.objective_owner == "pgd-at"
    assert resolve_defense("rcm", {}, dataset="digits").objective_owner == "standard"


@pytest.mark.parametrize("spec", ["kap", "rcm+kap"])
def test_the_attack_view_of_a_transformed_model_computes_the_same_function(spec):
    model, _ = build("resnet18", spec, {"rcm": {"scale": 2}} if "rcm" in spec else {})
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 32, 32))  # BN statistics to fold
    model.eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(attack_view(model)(x), model(x), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------
# End to end


def run_layers(spec: str, arch: str, image_size: int, **defenses) -> list[dict]:
    return [{
        "defense": spec, "defenses": defenses,
        "data": {"dataset": "digits", "train_subset": 192, "image_size": image_size},
        "model": {"arch": arch, "width": 0.125},
        "optim": {"epochs": 1, "batch_size": 64},
        "validation": {"steps": 2},
        "runtime": {"device": "cpu"},
    }]


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "strides"), [("kap", "1222"), ("rcm+pgd-at", "1122")])
def test_kap_and_rcm_with_pgd_at_train_on_digits_at_32_and_reload_identically(
        tmp_path, spec, strides):
    cfg, _ = api.resolve_config(run_layers(spec, "resnet18", 32))
    result = api.train(cfg, out=tmp_path, quiet=True)
    model, saved = api.load_run_model(result.run_dir)
    assert saved.model.strides == (None if spec == "kap" else strides)
    x = torch.rand(4, 1, 32, 32)
    again, _ = api.load_run_model(result.run_dir)
    model.eval(), again.eval()
    assert torch.equal(model(x), again(x))
    assert sum(isinstance(m, KernelAveragePool) for m in model.modules()) == \
        (20 if spec == "kap" else 0)


@pytest.mark.slow
def test_a_kap_model_with_test_time_noise_is_evaluated_as_a_stochastic_model(tmp_path):
    cfg, _ = api.resolve_config(run_layers("kap", "cnn", 8, kap={"noise": 0.1}))
    run_dir = api.train(cfg, out=tmp_path, quiet=True).run_dir
    config = EvalConfig(attacks=["autoattack"], eps=["0.2"], n_examples=8, device="cpu")
    (outcome,) = api.evaluate(from_run(run_dir), config, quiet=True)
    record = outcome.record
    assert "stochastic-model" in record.flags
    assert record.per_attack[0].params["suite"]["version"] == "rand"
