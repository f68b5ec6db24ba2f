"""local-balls: robench's reading of Lu & Kumar (methods.md, Seed 4), against its equations.

The reference below is written from the equations in the module docstring and methods.md,
seeded like the objective, on a copy of the same model.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from robench import api
from robench.data import load_dataset
from robench.defenses import StepContext, resolve_defense
from robench.errors import UserError
from robench.models import create_model

EPS = 0.2
CTX = StepContext(epoch=1, iteration=0, label_smoothing=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch():
    train = load_dataset("digits").train
    return train.x[:32].float(), train.y[:32]


def make_model():
    torch.manual_seed(0)
    return create_model("cnn", in_channels=1, num_classes=10, image_size=8, mean=(0.3,),
                        std=(0.37,)).train()


def objective(**params):
    return resolve_defense("local-balls", {"local-balls": params}, dataset="digits").objective


def project(x_adv, x, eps):
    return (x + (x_adv - x).clamp(-eps, eps)).clamp(0.0, 1.0)


def kl(p_logits, q_logits):
    p = F.softmax(p_logits, dim=1)
    return (p * (F.log_softmax(p_logits, dim=1) - F.log_softmax(q_logits, dim=1))).sum(1).mean()


@pytest.mark.parametrize("attack", ["fgsm-rs", "pgd"])
def test_the_local_adversary_lies_in_its_ball_in_the_eps_ball_and_in_0_1(batch, attack):
    x, y = batch
    torch.manual_seed(1)
    rho = 0.5
    x_global, x_local = objective(attack=attack, steps=3, rho=rho).craft(make_model(), x, y)
    for point in (x_global, x_local):
        assert (point - x).abs().max() <= EPS + 1e-6
        assert point.min() >= 0 and point.max() <= 1
    assert (x_local - x_global).abs().max() <= rho * EPS + 1e-6
    assert not torch.equal(x_local, x_global)  # the local step moved


def test_the_loss_equals_the_documented_formula_on_a_fixed_batch(batch):
    x, y = batch
    model = make_model()
    reference = copy.deepcopy(model)
    lam_local, lam_global, rho = 0.7, 4.0, 0.4
    torch.manual_seed(1)
    out = objective(lambda_local=lam_local, lambda_global=lam_global, rho=rho)(model, x, y, CTX)

    # Global adversary: FGSM of 1.25 eps from a uniform start, in eval mode.
    torch.manual_seed(1)
    reference.eval()
    start = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(reference(start), y, reduction="sum"), start)
    x_global = project(start.detach() + 1.25 * EPS * grad.sign(), x, EPS).requires_grad_(True)
    # Local adversary: one signed CE step of rho * eps from x', kept in B(x, eps) and [0, 1].
    (grad,) = torch.autograd.grad(F.cross_entropy(reference(x_global), y, reduction="sum"),
                                  x_global)
    x_local = project(x_global.detach() + rho * EPS * grad.sign(), x, EPS)
    reference.train()
    clean, glob, local = reference(x), reference(x_global.detach()), reference(x_local)
    loss = F.cross_entropy(glob, y) + lam_local * kl(glob, local) + lam_global * kl(clean, glob)
    assert torch.allclose(out.logits, glob, atol=1e-6)  # training accuracy is on x'
    assert torch.allclose(out.loss, loss, rtol=1e-5, atol=1e-6)
    out.loss.backward()
    loss.backward()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-5)


def test_crafting_leaves_batchnorm_statistics_and_parameters_alone(batch):
    x, y = batch
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    objective().craft(model, x, y)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(("params", "message"), [
    ({"attack": "fgsm"}, r"local-balls\.attack 'fgsm' is not one of fgsm-rs, pgd"),
    ({"rho": 0}, r"local-balls\.rho must be in \(0, 2\]"),
    ({"lambda_local": -1}, r"local-balls\.lambda_local and lambda_global must be >= 0"),
    ({"steps": 0}, r"local-balls\.steps must be >= 1"),
    ({"eps": 2}, r"local-balls\.eps must be greater than 0 and at most 1"),
])
def test_bad_parameters_are_one_sentence_errors_naming_the_key(params, message):
    with pytest.raises(UserError, match=message):
        objective(**params)


@pytest.mark.slow
def test_local_balls_trains_on_digits_and_reloads(tmp_path):
    cfg, _ = api.resolve_config([{
        "defense": "local-balls", "data": {"dataset": "digits", "train_subset": 256},
        "optim": {"epochs": 2, "batch_size": 64}, "validation": {"steps": 2},
        "runtime": {"device": "cpu"}}])
    assert cfg.defenses["local-balls"]["eps"] == pytest.approx(0.2)
    result = api.train(cfg, out=tmp_path, quiet=True)
    model, _ = api.load_run_model(result.run_dir)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
