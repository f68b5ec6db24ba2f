"""Training objectives (gaussian, pgd-at, trades, fast-at) against their papers' formulas.

Each objective's loss is recomputed here by a plain reference loop written from the paper
(or the authors' code), seeded the same way, on a copy of the same model: the two must agree
to float rounding. Projections are written as x + clamp(x_adv - x, -eps, eps), then clamped
to [0, 1] (the textbook form), so the crafted points agree bit for bit.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import robench.config
import robench.targets
from robench import api
from robench.data import load_dataset
from robench.defenses import StepContext, resolve_defense
from robench.defenses.base import DefenseSpec
from robench.defenses.trades import TRADESObjective
from robench.errors import UserError
from robench.models import create_model
from robench.registry import DEFENSES, Entry

ADVERSARIAL = ("pgd-at", "trades", "fast-at")
EPS = 0.2
CTX = StepContext(epoch=1, iteration=0, label_smoothing=0.1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch():
    """32 digits: real images, with many pixels at exactly 0 and 1 for the clamps to bite."""
    train = load_dataset("digits").train
    return train.x[:32].float(), train.y[:32]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("cnn", in_channels=1, num_classes=10, image_size=8, mean=(0.3,),
                         std=(0.37,))
    return model.train()


def objective_for(name: str, **params):
    return resolve_defense(name, {name: params}, dataset="digits").objective


def project(x_adv, x, eps):
    return (x + (x_adv - x).clamp(-eps, eps)).clamp(0.0, 1.0)


def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()
            if "running" in k or "num_batches" in k}


def run(objective, model, x, y, seed=1):
    torch.manual_seed(seed)
    return objective(model, x, y, CTX)


# ------------------------------------------------------------------------------------------
# Each loss equals its paper's formula


def test_gaussian_loss_is_ce_on_unclipped_gaussian_noise(batch):
    x, y = batch
    model = make_model()
    reference = copy.deepcopy(model)
    out = run(objective_for("gaussian", sigma=0.3), model, x, y)

    torch.manual_seed(1)
    noisy = x + 0.3 * torch.randn_like(x)
    assert noisy.min() < 0 and noisy.max() > 1  # clipping would change the loss below
    logits = reference(noisy)
    assert torch.equal(out.logits, logits)
    assert torch.allclose(out.loss, F.cross_entropy(logits, y, label_smoothing=0.1),
                          rtol=1e-6, atol=0)


def reference_pgd(model, x, y, eps, step, steps, mode):
    """Madry et al.: uniform start, signed CE-gradient steps, project; no label smoothing."""
    model.train(mode == "train")
    x_adv = project(x + torch.empty_like(x).uniform_(-eps, eps), x, eps)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        x_adv = project(x_adv.detach() + step * grad.sign(), x, eps)
    model.train()
    return x_adv


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_pgd_at_loss_is_ce_on_the_textbook_pgd_example(batch, mode):
    x, y = batch
    model = make_model()
    reference = copy.deepcopy(model)
    objective = objective_for("pgd-at", steps=4, craft_mode=mode)
    torch.manual_seed(1)
    x_adv = objective.craft(model, x, y)
    out = run(objective, copy.deepcopy(reference), x, y)

    torch.manual_seed(1)
    ref_adv = reference_pgd(reference, x, y, EPS, EPS / 4, 4, mode)
    logits = reference(ref_adv)
    assert torch.equal(x_adv, ref_adv)
    assert torch.allclose(out.logits, logits, rtol=1e-6, atol=1e-6)
    assert torch.allclose(out.loss, F.cross_entropy(logits, y, label_smoothing=0.1),
                          rtol=1e-6, atol=0)


def test_trades_loss_is_ce_plus_beta_times_the_kl_of_the_reference_code(batch):
    x, y = batch
    model = make_model()
    reference = copy.deepcopy(model)
    eps, step, steps, beta = EPS, 0.03, 5, 3.0
    out = run(objective_for("trades", beta=beta, step_size=step, steps=steps), model, x, y)

    # Zhang et al.'s trades_loss: eval mode, start x + 0.001 N(0, 1), ascend the summed KL.
    torch.manual_seed(1)
    reference.eval()
    x_adv = x + 0.001 * torch.randn_like(x)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(reference(x_adv), dim=1),
                      F.softmax(reference(x), dim=1), reduction="sum")
        (grad,) = torch.autograd.grad(kl, x_adv)
        x_adv = project(x_adv.detach() + step * grad.sign(), x, eps)
    reference.train()
    logits = reference(x)
    loss = (F.cross_entropy(logits, y, label_smoothing=0.1)
            + beta * F.kl_div(F.log_softmax(reference(x_adv), dim=1),
                              F.softmax(logits, dim=1), reduction="batchmean"))
    assert torch.equal(out.logits, logits)  # training accuracy is clean accuracy
    assert torch.allclose(out.loss, loss, rtol=1e-6, atol=0)
    # The KL's gradient flows through p(x) as well as p(x_adv), as in the reference.
    out.loss.backward()
    loss.backward()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_fast_at_loss_is_ce_on_one_fgsm_step_from_a_random_start(batch):
    x, y = batch
    model = make_model()
    reference = copy.deepcopy(model)
    objective = objective_for("fast-at")
    out = run(objective, model, x, y)

    # Wong et al.: delta ~ U(-eps, eps) kept inside [0, 1], one step of 1.25 eps, in train mode.
    torch.manual_seed(1)
    alpha = 1.25 * EPS
    x_adv = project(x + torch.empty_like(x).uniform_(-EPS, EPS), x, EPS).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(reference(x_adv), y), x_adv)
    x_adv = project(x_adv.detach() + alpha * grad.sign(), x, EPS)
    logits = reference(x_adv)
    assert torch.allclose(out.logits, logits, rtol=1e-6, atol=1e-6)
    assert torch.allclose(out.loss, F.cross_entropy(logits, y, label_smoothing=0.1),
                          rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", ["gaussian", *ADVERSARIAL])
def test_a_fixed_seed_reproduces_a_step_and_another_seed_does_not(batch, name):
    x, y = batch
    model = make_model()
    objective = objective_for(name)
    first = run(objective, copy.deepcopy(model), x, y, seed=1).loss
    again = run(objective, copy.deepcopy(model), x, y, seed=1).loss
    other = run(objective, copy.deepcopy(model), x, y, seed=2).loss
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


# ------------------------------------------------------------------------------------------
# Crafting: where the points lie, and what it does to the model


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_training_adversarial_examples_stay_in_the_eps_ball_and_in_0_1(batch, name):
    x, y = batch
    model = make_model()
    params = {} if name == "fast-at" else {"step_size": 0.15, "steps": 3}
    torch.manual_seed(1)
    x_adv = objective_for(name, **params).craft(model, x, y)
    assert not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    size = (x_adv - x).abs().amax()
    assert size <= EPS + 1e-6
    assert size >= EPS - 1e-6  # the steps reach the boundary: the ball is what limits them


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_crafting_in_eval_mode_leaves_batchnorm_statistics_alone(batch, name):
    x, y = batch
    model = make_model()
    before = bn_buffers(model)
    objective_for(name, craft_mode="eval", **({} if name == "fast-at" else {"steps": 2})
                  ).craft(model, x, y)
    after = bn_buffers(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_crafting_in_train_mode_updates_batchnorm_statistics(batch, name):
    x, y = batch
    model = make_model()
    before = bn_buffers(model)
    objective_for(name, craft_mode="train").craft(model, x, y)
    after = bn_buffers(model)
    assert not torch.equal(before["net.layer1.1.running_mean"],
                           after["net.layer1.1.running_mean"])
    assert model.training


@pytest.mark.parametrize("name", ["gaussian", *ADVERSARIAL])
def test_no_parameter_gets_a_gradient_before_the_loops_backward(batch, name):
    x, y = batch
    model = make_model()
    out = run(objective_for(name), model, x, y)
    params = list(model.parameters())
    assert all(p.grad is None and p.requires_grad for p in params)
    assert model.training
    out.loss.backward()
    assert all(p.grad is not None for p in params)


@pytest.mark.parametrize("name", ["gaussian", *ADVERSARIAL])
def test_under_bf16_autocast_the_loss_is_fp32_and_the_points_stay_valid(batch, name):
    x, y = batch
    model = make_model()
    objective = objective_for(name, **({} if name in ("gaussian", "fast-at") else {"steps": 2}))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run(objective, model, x, y)
        if name != "gaussian":
            x_adv = objective.craft(model, x, y)
            assert x_adv.dtype == torch.float32
            assert x_adv.min() >= 0 and x_adv.max() <= 1
            assert (x_adv - x).abs().amax() <= EPS + 1e-6
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_crafting_works_when_the_caller_has_gradients_off(batch):
    x, y = batch
    model = make_model()
    torch.manual_seed(1)
    expected = objective_for("pgd-at").craft(model, x, y)
    torch.manual_seed(1)
    with torch.no_grad():
        assert torch.equal(objective_for("pgd-at").craft(model, x, y), expected)


# ------------------------------------------------------------------------------------------
# Parameters: defaults, checks, overrides, composition


def test_eps_and_step_defaults_follow_the_dataset():
    digits = objective_for("pgd-at")
    assert (digits.eps, digits.step_size) == (0.2, 0.05)
    cifar = resolve_defense("pgd-at", {}, dataset="cifar10").objective
    assert math.isclose(cifar.eps, 8 / 255) and math.isclose(cifar.step_size, 2 / 255)
    assert cifar.params.steps == 10 and cifar.params.random_start
    assert cifar.params.craft_mode == "eval"

    trades = resolve_defense("trades", {}, dataset="cifar10").objective
    assert trades.step_size == 0.007
    assert trades.params.beta == 6.0 and trades.params.steps == 10
    assert trades.params.craft_mode == "eval"
    assert math.isclose(objective_for("trades").step_size, 0.007 * 0.2 / (8 / 255))

    fast = objective_for("fast-at")
    assert fast.alpha == 1.25 * 0.2 and fast.params.craft_mode == "train"
    assert objective_for("gaussian").params.sigma == 0.1


def test_the_resolved_params_record_the_dataset_eps():
    defense = resolve_defense("trades", {}, dataset="cifar10")
    assert defense.params_dict() == {"trades": {"beta": 6.0, "eps": 8 / 255,
                                                "step_size": None, "steps": 10,
                                                "craft_mode": "eval"}}


@pytest.mark.parametrize(("name", "params", "message"), [
    ("pgd-at", {"steps": 0}, "pgd-at.steps must be >= 1, got 0."),
    ("trades", {"steps": 0}, "trades.steps must be >= 1"),
    ("pgd-at", {"step_size": 0}, "pgd-at.step_size must be > 0"),
    ("pgd-at", {"craft_mode": "test"}, "pgd-at.craft_mode 'test' is not one of eval, train"),
    ("trades", {"craft_mode": "Eval"}, "trades.craft_mode"),
    ("fast-at", {"eps": 0}, "fast-at.eps must be greater than 0"),
    ("trades", {"eps": 1.5}, "trades.eps must be greater than 0 and at most 1"),
    ("gaussian", {"sigma": -0.1}, "gaussian.sigma must be >= 0, got -0.1."),
    ("trades", {"beta": -1}, "trades.beta must be >= 0"),
    ("fast-at", {"alpha_ratio": 0}, "fast-at.alpha_ratio must be > 0"),
    ("pgd-at", {"stpes": 5}, "unknown config key 'pgd-at.stpes'"),
])
def test_bad_parameters_are_user_errors_naming_the_key(name, params, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.").replace("(", r"\(")):
        resolve_defense(name, {name: params}, dataset="digits")


def test_an_eps_no_dataset_filled_in_is_a_user_error_when_used(batch):
    objective = resolve_defense("pgd-at").objective
    with pytest.raises(UserError, match=r"pgd-at\.eps is not set"):
        objective.craft(make_model(), *batch)


def test_overrides_reach_the_params_and_a_stray_defense_is_refused():
    defense = resolve_defense("trades", {"trades": {"beta": 3}}, dataset="digits")
    assert defense.objective.params.beta == 3.0
    with pytest.raises(UserError, match="'pgd-at'.*not in the defense spec"):
        resolve_defense("trades", {"pgd-at": {"steps": 3}}, dataset="digits")


def test_two_training_objectives_cannot_be_combined():
    with pytest.raises(UserError, match=r"pgd-at and trades"):
        resolve_defense("pgd-at+trades", dataset="digits")


class Counting(nn.Module):
    """A stand-in for a model transform (such as rcm): wraps the model, counts its calls."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_a_transform_composes_with_a_training_objective(batch, monkeypatch):
    spec = DefenseSpec(transform=lambda model, params: Counting(model))
    monkeypatch.setitem(DEFENSES._entries, "dummy", Entry("dummy", spec, "test transform"))
    defense = resolve_defense("dummy+trades", {"trades": {"steps": 2}}, dataset="digits")
    assert isinstance(defense.objective, TRADESObjective)
    model = defense.apply(make_model())
    assert isinstance(model, Counting)
    run(defense.objective, model, *batch)
    assert model.calls == 1 + 2 + 2  # p(x), two attack steps, then clean and adversarial


# ------------------------------------------------------------------------------------------
# End to end


@pytest.mark.slow
def test_pgd_at_on_digits_is_far_more_robust_than_standard_training(tmp_path, digits_run):
    cfg, _ = api.resolve_config([{"defense": "pgd-at", "optim": {"epochs": 15},
                                  "runtime": {"device": "cpu"}}])
    adversarial = api.train(cfg, out=tmp_path, quiet=True).run_dir
    protocol = dict(attacks=["pgd"], params={"pgd": {"steps": 20}}, eps=["0.2"],
                    n_examples=200, device="cpu")
    acc = {}
    for name, run_dir in (("standard", digits_run), ("pgd-at", adversarial)):
        target = robench.targets.from_run(run_dir)
        (outcome,) = api.evaluate(target, robench.config.EvalConfig(**protocol), quiet=True)
        acc[name] = outcome.record.clean_acc, outcome.record.robust_acc
    # Measured (1 thread, ~22 s with the evaluations): standard 0.995 clean / 0.000 PGD-20,
    # pgd-at 0.965 / 0.575.
    assert acc["pgd-at"][0] >= 0.9
    assert acc["pgd-at"][1] >= 0.4
    assert acc["pgd-at"][1] >= acc["standard"][1] + 0.35
