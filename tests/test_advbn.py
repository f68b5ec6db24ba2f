"""AdvBN (Shu et al. 2021) against methods.md, Seed 5.

The attack is checked against a plain loop written here from the method's description, run on
an unconverted copy of the same model (a freshly converted model's adversarial BatchNorm *is*
the original one, so the two must agree bit for bit); the restyled features' moments are
computed here with torch's own mean and std. Models are CIFAR-shaped (3x32x32) at width 0.125.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench import api
from robench.defenses import StepContext, resolve_defense
from robench.defenses.advbn import AdvBNParams, attack_statistics, restyle
from robench.errors import UserError
from robench.models import create_model
from robench.models.layers import DualBatchNorm2d, FrozenBatchNorm2d, branch

CIFAR = dict(in_channels=3, num_classes=10, image_size=32, mean=(0.49, 0.48, 0.45),
             std=(0.25, 0.24, 0.26))
CTX = StepContext(epoch=1, iteration=0, label_smoothing=0.1)
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(16, 3, 32, 32, generator=gen), torch.randint(0, 10, (16,), generator=gen)


def plain(arch: str, seed: int = 0) -> nn.Module:
    """An unconverted model whose BatchNorm running statistics are no longer the initial 0/1."""
    torch.manual_seed(seed)
    model = create_model(arch, **CIFAR, width=0.125)
    with torch.no_grad():
        model.train()(torch.rand(16, 3, 32, 32))
    return model


def converted(model: nn.Module, **params) -> nn.Module:
    """A converted copy of `model`, built the way `robench train` applies a defense."""
    defense = resolve_defense("advbn", {"advbn": params}, dataset="cifar10")
    return defense.apply(copy.deepcopy(model))


def objective(**params):
    return resolve_defense("advbn", {"advbn": params}, dataset="cifar10").objective


def duals(model: nn.Module) -> list[DualBatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, DualBatchNorm2d)]


def first_stage_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    stage = model.net.stage_names[0]
    return model.net.forward_to(model.net_input(x), stage).detach()


def reference_attack(model: nn.Module, f: torch.Tensor, y: torch.Tensor, steps: int = 6,
                     step: float = 0.2, bound: float = 1.1):
    """methods.md's PGD on the multipliers, on an eval-mode copy of an unconverted model."""
    head = copy.deepcopy(model).eval()
    for p in head.parameters():
        p.requires_grad_(False)
    mu = f.mean(dim=(0, 2, 3), keepdim=True)
    s_mu, s_sigma = torch.ones_like(mu), torch.ones_like(mu)
    for _ in range(steps):
        s_mu.requires_grad_(True)
        s_sigma.requires_grad_(True)
        f_adv = F.relu((f - mu) * s_sigma + mu * s_mu)
        loss = F.cross_entropy(head.net.forward_from(f_adv, "layer1"), y)
        g_mu, g_sigma = torch.autograd.grad(loss, (s_mu, s_sigma))
        s_mu = torch.clamp(s_mu.detach() + step * g_mu.sign(), 1 - bound, 1 + bound)
        s_sigma = torch.clamp(s_sigma.detach() + step * g_sigma.sign(), 1 - bound, 1 + bound)
    return F.relu((f - mu) * s_sigma + mu * s_mu), s_mu, s_sigma


# ------------------------------------------------------------------------------------------
# The attack on the feature statistics


@pytest.mark.parametrize("bound", [1.1, 0.3])
def test_the_multipliers_move_and_stay_within_one_plus_or_minus_the_bound(batch, bound):
    x, y = batch
    model = converted(plain("resnet18"))
    f = first_stage_features(model, x)
    _, s_mu, s_sigma = attack_statistics(model, f, y, "layer1", AdvBNParams(bound=bound))
    for s in (s_mu, s_sigma):
        assert s.shape == (1, 8, 1, 1)  # one per channel of layer1 (64 * 0.125)
        assert s.min() >= 1 - bound - 1e-6 and s.max() <= 1 + bound + 1e-6
        assert not torch.all(s == 1)
    if bound == 0.3:  # six steps of 0.2 overshoot 1 +- 0.3: some multiplier is held there
        both = torch.cat([s_mu, s_sigma]).flatten()
        assert torch.isclose((both - 1).abs(), torch.tensor(bound)).any()


@pytest.mark.parametrize("arch", ["resnet18", "preactresnet18"])
def test_restyled_features_have_mean_mu_times_s_mu_and_std_sigma_times_s_sigma(batch, arch):
    x, y = batch
    model = converted(plain(arch))
    f = first_stage_features(model, x)
    f_adv, s_mu, s_sigma = attack_statistics(model, f, y, "layer1", AdvBNParams())
    pre = restyle(f, s_mu, s_sigma)
    mu = f.mean(dim=(0, 2, 3))
    sigma = f.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(pre.mean(dim=(0, 2, 3)), mu * s_mu.flatten(), atol=1e-5)
    assert torch.allclose(pre.std(dim=(0, 2, 3), correction=0), sigma * s_sigma.abs().flatten(),
                          rtol=1e-4, atol=1e-6)
    if arch == "resnet18":  # a ResNet stage ends in a ReLU: the restyled features get one too
        assert (f >= 0).all()
        assert torch.equal(f_adv, pre.relu())
    else:  # a pre-activation stage ends in a residual sum: restyled as it is, no ReLU
        assert (f < 0).any()
        assert torch.equal(f_adv, pre)


def test_the_attack_is_the_methods_pgd_on_the_multipliers(batch):
    x, y = batch
    original = plain("resnet18")
    model = converted(original)
    f = first_stage_features(model, x)
    f_adv, s_mu, s_sigma = attack_statistics(model, f, y, "layer1", AdvBNParams())
    ref_adv, ref_mu, ref_sigma = reference_attack(original, f, y)
    assert torch.equal(s_mu, ref_mu) and torch.equal(s_sigma, ref_sigma)
    assert torch.equal(f_adv, ref_adv)


def test_the_attack_runs_the_adv_branch_in_eval_mode_and_leaves_the_model_as_it_was(batch):
    x, y = batch
    model = converted(plain("resnet18"), freeze=True).train()
    f = first_stage_features(model, x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    bn = model.net.layer2[0].bn1
    seen = []
    for part in (bn.clean, bn.adv):
        part.register_forward_pre_hook(lambda m, args: seen.append((m, m.training)))
    attack_statistics(model, f, y, "layer1", AdvBNParams())
    assert seen and all(m is bn.adv and not training for m, training in seen)
    assert all(m.training for m in model.modules() if not isinstance(m, FrozenBatchNorm2d))
    assert all(d.route == "clean" for d in duals(model))
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------------
# Dual BatchNorm


@pytest.mark.parametrize(("arch", "n_duals"), [
    ("resnet18", 15),  # layer2-4: 2 blocks x 2 BN + a projection BN each
    ("preactresnet18", 13),  # layer2-4: 2 blocks x 2 BN, plus the final BN
    ("vgg11_bn", 7),  # layer2-5: 1 + 2 + 2 + 2 convs
    ("wrn-28-10", 17),  # block2-3: 4 blocks x 2 BN, plus the final BN
])
def test_a_freshly_converted_model_is_exactly_the_original_in_its_clean_branch(arch, n_duals):
    original = plain(arch)
    model = converted(original)
    assert len(duals(model)) == n_duals
    assert all(type(m) is nn.BatchNorm2d for m in model.net.stages()[0].modules()
               if isinstance(m, nn.BatchNorm2d))
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), original.eval()(x))
    # Keys after the split gain .clean/.adv; every other key is the original's.
    old, new = set(original.state_dict()), set(model.state_dict())
    moved = {k for k in old if k not in new}
    assert len(moved) == len(BN_KEYS) * n_duals
    first = f"net.{model.net.stage_names[0]}."
    assert not any(k.startswith(first) for k in moved)
    for key in moved:
        stem, name = key.rsplit(".", 1)
        assert {f"{stem}.clean.{name}", f"{stem}.adv.{name}"} <= new


def test_the_adv_copy_starts_as_the_clean_one_and_only_it_learns_on_the_adv_branch(batch):
    x, y = batch
    model = converted(plain("resnet18")).train()
    for d in duals(model):
        for (name, adv), clean in zip(d.adv.state_dict().items(), d.clean.state_dict().values(),
                                      strict=True):
            assert torch.equal(adv, clean), name
            assert adv.data_ptr() != clean.data_ptr()  # copies, not shared storage
    clean_before = [copy.deepcopy(d.clean.state_dict()) for d in duals(model)]
    adv_before = [copy.deepcopy(d.adv.state_dict()) for d in duals(model)]
    conv_before = model.net.layer3[0].conv1.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        f = model.net.forward_to(model.net_input(x), "layer1")
        with branch(model, "adv"):
            loss = F.cross_entropy(model.net.forward_from(f, "layer1"), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for d, clean, adv in zip(duals(model), clean_before, adv_before, strict=True):
        assert all(torch.equal(v, clean[k]) for k, v in d.clean.state_dict().items())
        assert not torch.equal(d.adv.running_mean, adv["running_mean"])
        assert not torch.equal(d.adv.weight, adv["weight"])
    assert not torch.equal(model.net.layer3[0].conv1.weight, conv_before)  # convs are shared


def test_a_state_dict_from_before_the_conversion_loads_into_both_branches():
    original = plain("resnet18")
    model = converted(plain("resnet18", seed=1))
    result = model.load_state_dict(original.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    bn = original.net.layer4[1].bn2
    for part in (model.net.layer4[1].bn2.clean, model.net.layer4[1].bn2.adv):
        assert all(torch.equal(v, bn.state_dict()[k]) for k, v in part.state_dict().items())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), original.eval()(x))


def test_branch_switches_every_dual_batchnorm_and_restores_it_even_on_error():
    model = converted(plain("resnet18"))
    with pytest.raises(RuntimeError, match="inside"):
        with branch(model, "adv"):
            assert all(d.route == "adv" for d in duals(model))
            raise RuntimeError("inside")
    assert all(d.route == "clean" for d in duals(model))
    with pytest.raises(ValueError, match="route"):
        with branch(model, "noisy"):
            pass
    with pytest.raises(ValueError, match="no DualBatchNorm2d"):
        with branch(plain("resnet18"), "adv"):
            pass


# ------------------------------------------------------------------------------------------
# The objective and the transform's options


def test_the_loss_is_clean_ce_plus_adv_ce_and_the_logits_are_the_clean_ones(batch):
    x, y = batch
    original = plain("resnet18")
    model = converted(original).train()
    out = objective()(model, x, y, CTX)
    ref = copy.deepcopy(original).train()
    f = ref.net.forward_to(ref.net_input(x), "layer1")
    f_adv, _, _ = reference_attack(ref, f.detach(), y)
    clean_logits = ref.net.forward_from(f, "layer1")
    adv_logits = ref.net.forward_from(f_adv, "layer1")  # a fresh adv BN is the original BN
    expected = (F.cross_entropy(clean_logits, y, label_smoothing=0.1)
                + F.cross_entropy(adv_logits, y, label_smoothing=0.1))
    assert torch.allclose(out.loss, expected, rtol=1e-6, atol=1e-6)
    assert torch.allclose(out.logits, clean_logits, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("freeze", [True, False])
@pytest.mark.parametrize(("arch", "early"), [
    ("resnet18", ("net.conv1.", "net.bn1.", "net.layer1.")),  # the stem has a BN
    ("wrn-28-10", ("net.conv1.", "net.block1.")),  # net.bn1 is the head's final BN
])
def test_freeze_stops_gradients_at_the_stem_and_the_first_stage(batch, arch, early, freeze):
    x, y = batch
    model = converted(plain(arch), freeze=freeze).train()
    objective(freeze=freeze)(model, x[:8], y[:8], CTX).loss.backward()
    for name, p in model.named_parameters():
        if freeze and name.startswith(early):
            assert p.grad is None and not p.requires_grad, name
        else:
            assert p.grad is not None, name


@pytest.mark.parametrize(("arch", "early"), [
    ("resnet18", ("net.conv1.", "net.bn1.", "net.layer1.")),
    ("preactresnet18", ("net.conv1.", "net.layer1.")),
    ("wrn-28-10", ("net.conv1.", "net.block1.")),
])
def test_fine_tuning_leaves_the_frozen_part_bit_identical_running_statistics_included(
        batch, arch, early):
    """The authors put every BatchNorm of the frozen part in eval mode: it normalises with its
    running statistics, which no step moves, and `model.train()` does not wake it."""
    x, y = batch
    model = converted(plain(arch), freeze=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen_bns = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen_bns and all(type(m) is nn.BatchNorm2d or isinstance(m, FrozenBatchNorm2d)
                              for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1, momentum=0.9, weight_decay=1e-4)
    for step in range(3):
        model.train()
        assert not any(m.training for m in frozen_bns)
        loss = objective(freeze=True)(model, x[8 * (step % 2):][:8], y[8 * (step % 2):][:8],
                                      CTX).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    early_keys = [k for k in before if k.startswith(early)]
    assert any("running_mean" in k for k in early_keys)
    for key in early_keys:
        assert torch.equal(after[key], before[key]), key
    later = [k for k in before if "running_mean" in k and not k.startswith(early)]
    assert later and all(not torch.equal(after[k], before[k]) for k in later)


def test_without_freeze_the_first_stage_batchnorm_follows_the_data(batch):
    x, y = batch
    model = converted(plain("resnet18"), freeze=False).train()
    before = model.net.layer1[0].bn1.running_mean.clone()
    objective()(model, x[:8], y[:8], CTX)
    assert not torch.equal(model.net.layer1[0].bn1.running_mean, before)


@pytest.mark.parametrize("arch", ["alexnet", "vgg11"])
def test_archs_without_batchnorm_after_the_split_are_refused_in_one_sentence(arch):
    with pytest.raises(UserError, match=r"^advbn needs BatchNorm layers after its split point "
                                        r"\(layer1\)") as err:
        converted(plain(arch))
    message = str(err.value)
    assert "resnet18" in message and "vgg*_bn" in message
    assert message.endswith(".") and ". " not in message


@pytest.mark.parametrize(("params", "message"), [
    ({"split": "layer4"}, r"advbn needs BatchNorm layers after its split point \(layer4\)"),
    ({"split": "block1"}, r"advbn\.split 'block1' is not a stage of ResNet; stages: layer1"),
    ({"steps": 0}, r"advbn\.steps must be >= 1"),
    ({"step_size": 0}, r"advbn\.step_size must be > 0"),
    ({"bound": 0}, r"advbn\.bound must be > 0"),
    ({"eps": 1.1}, r"unknown config key 'advbn\.eps'"),
])
def test_bad_parameters_name_the_key(params, message):
    with pytest.raises(UserError, match=message):
        converted(plain("resnet18"), **params)


def test_a_later_split_converts_only_what_follows_it(batch):
    x, y = batch
    model = converted(plain("resnet18"), split="layer3")
    assert len(duals(model)) == 5  # layer4 only
    out = objective(split="layer3")(model.train(), x[:8], y[:8], CTX)
    assert torch.isfinite(out.loss)


# ------------------------------------------------------------------------------------------
# End to end


@pytest.mark.slow
def test_advbn_trains_on_digits_and_reloads_like_any_model_in_the_clean_branch(tmp_path):
    cfg, _ = api.resolve_config([{
        "defense": "advbn",
        "data": {"dataset": "digits", "train_subset": 192, "image_size": 32},
        "model": {"arch": "resnet18", "width": 0.125},
        "optim": {"epochs": 1, "batch_size": 64},
        "validation": {"steps": 2},
        "runtime": {"device": "cpu"},
    }])
    assert "eps" not in cfg.defenses["advbn"]  # the bound is not filled as a pixel budget
    result = api.train(cfg, out=tmp_path, quiet=True)
    model, _ = api.load_run_model(result.run_dir)
    again, _ = api.load_run_model(result.run_dir)
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert not model.training
    assert len(duals(model)) == 15 and all(d.route == "clean" for d in duals(model))
    # Both branches were trained and saved: they no longer agree.
    assert any(not torch.equal(d.clean.weight, d.adv.weight) for d in duals(model))
