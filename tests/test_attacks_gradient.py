"""Gradient attacks (fgsm, pgd, cw) and the gaussian-noise baseline: PGD against a plain
reference, strength on a trained model, seeds and precision. The contract every attack keeps,
the losses and the parameters are in test_attack_contract.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from attack_cases import EPS, NORMS, digits_cnn
from torch import nn

from robench.attacks import attack_mode, create_attack
from robench.attacks.losses import LOSSES
from robench.attacks.steps import ascend
from robench.data import load_dataset

# ------------------------------------------------------------------------------------------
# Fixtures


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")



@pytest.fixture(scope="module")
def trained(digits):
    """A cnn trained for 15 epochs on digits (about 1.5 s on 2 cores), in eval mode."""
    torch.manual_seed(0)
    model = digits_cnn(digits)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = digits.train.x, digits.train.y
    order = torch.Generator().manual_seed(0)
    for _ in range(15):
        perm = torch.randperm(len(y), generator=order)
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


@pytest.fixture(scope="module")
def test_points(digits):
    """The first 200 test points (the RobustBench convention: first N in dataset order)."""
    return digits.test.x[:200], digits.test.y[:200]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def attacked_accuracy(model, x, y, name, *, norm="Linf", eps=0.2, seed=0, **params):
    x_adv = create_attack(name, norm=norm, eps=eps, seed=seed, params=params)(model, x, y)
    return accuracy(model, x_adv, y)


# ------------------------------------------------------------------------------------------
# PGD against a plain reference


def reference_pgd(model, x, y, x_start, *, norm, eps, alpha, steps):
    """Textbook PGD with CE (Madry et al.), written independently of robench: its iterates,
    the start first and the last one last."""
    x_adv = x_start.clone()
    iterates = [x_adv]
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            if norm == "Linf":
                x_adv = x_adv + alpha * g.sign()
                delta = torch.clamp(x_adv - x, -eps, eps)
            else:
                g_norm = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                x_adv = x_adv + alpha * (g / g_norm)
                delta = x_adv - x
                d_norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                delta = delta * torch.clamp(eps / d_norm, max=1.0)
            x_adv = torch.clamp(x + delta, 0, 1)
        iterates.append(x_adv)
    return iterates


def best_iterate(model, y, iterates):
    """Per point, the iterate with the largest margin max_{j != y} z_j - z_y (the earliest on
    ties): the any-iterate rule, computed here from the margins of every iterate."""
    with torch.no_grad():
        margins = []
        for it in iterates:
            z = model(it)
            true = z.gather(1, y[:, None]).squeeze(1)
            other = z.scatter(1, y[:, None], float("-inf")).amax(1)
            margins.append(other - true)
    choice = torch.stack(margins).argmax(0)  # argmax returns the first maximum
    return torch.stack(iterates)[choice, torch.arange(len(y))]


def reference_start(x, norm, eps, seed):
    """The documented random start, drawn here from its own generator."""
    gen = torch.Generator().manual_seed(seed)
    if norm == "Linf":
        noise = (torch.rand(x.shape, generator=gen) * 2 - 1) * eps
    else:
        g = torch.randn(x.shape, generator=gen)
        direction = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        radius = eps * torch.rand(len(x), generator=gen) ** (1 / x[0].numel())
        noise = direction * radius.view(-1, 1, 1, 1)
    return torch.clamp(x + noise, 0, 1)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_the_pgd_step_equals_reference_pgd_exactly(trained, test_points, norm, steps):
    x, y = test_points[0][:64], test_points[1][:64]
    eps = EPS[norm] / 2
    last = ascend(trained, x, y, x, norm=norm, eps=eps, step_size=eps / 3, steps=steps,
                  loss_fn=LOSSES["ce"])
    expected = reference_pgd(trained, x, y, x, norm=norm, eps=eps, alpha=eps / 3, steps=steps)
    assert torch.equal(last, expected[-1])


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_pgd_returns_each_points_most_adversarial_iterate_of_the_reference(
        trained, test_points, norm, steps):
    x, y = test_points[0][:64], test_points[1][:64]
    eps = EPS[norm] / 2
    attack = create_attack("pgd", norm=norm, eps=eps,
                           params={"steps": steps, "random_start": False, "step_size": eps / 3})
    iterates = reference_pgd(trained, x, y, x, norm=norm, eps=eps, alpha=eps / 3, steps=steps)
    assert torch.equal(attack(trained, x, y), best_iterate(trained, y, iterates))


class Stripes(nn.Module):
    """Class 1 where sin(40 p) > 0 for the first pixel p: stripes 0.08 wide, so steps of 0.07
    cross into the other class and out again (a trained net does it for 2 points in 200)."""

    def forward(self, x):
        s = torch.sin(40 * x.flatten(1)[:, :1])
        return torch.cat([-s, s], 1) * 10


def test_a_point_fooled_at_an_earlier_step_but_not_at_the_last_counts_as_fooled():
    model = Stripes()
    p = torch.linspace(0.2, 0.8, 301)
    x = torch.zeros(301, 1, 2, 2)
    x[:, 0, 0, 0] = p
    y = (torch.sin(40 * p) > 0).long()
    eps, alpha, steps = 0.1, 0.07, 5
    iterates = reference_pgd(model, x, y, x, norm="Linf", eps=eps, alpha=alpha, steps=steps)
    with torch.no_grad():
        wrong = torch.stack([model(it).argmax(1) != y for it in iterates])
    only_earlier = wrong[:-1].any(0) & ~wrong[-1]
    assert only_earlier.sum() >= 1  # measured 63 of 301: the case this test is about
    attack = create_attack("pgd", norm="Linf", eps=eps,
                           params={"steps": steps, "random_start": False, "step_size": alpha})
    found = attack.search(model, x, y)
    with torch.no_grad():
        fooled = model(found.x_adv).argmax(1) != y
    assert fooled[only_earlier].all()
    assert torch.equal(found.claimed, wrong.any(0))


@pytest.mark.parametrize("norm", NORMS)
def test_pgd_from_a_given_start_equals_reference_pgd_exactly(trained, test_points, norm):
    x, y = test_points[0][:64], test_points[1][:64]
    eps = EPS[norm] / 2
    gen = torch.Generator().manual_seed(123)
    start = torch.clamp(x + (torch.rand(x.shape, generator=gen) - 0.5) * 0.1, 0, 1)
    attack = create_attack("pgd", norm=norm, eps=eps, params={"steps": 10})
    attack.start = lambda xs, generator: start.clone()
    iterates = reference_pgd(trained, x, y, start, norm=norm, eps=eps, alpha=eps / 4, steps=10)
    assert torch.equal(attack(trained, x, y), best_iterate(trained, y, iterates))


@pytest.mark.parametrize("norm", NORMS)
def test_pgd_random_start_is_the_documented_uniform_draw_from_the_seed(trained, test_points,
                                                                       norm):
    x, y = test_points[0][:64], test_points[1][:64]
    eps = EPS[norm] / 2
    attack = create_attack("pgd", norm=norm, eps=eps, seed=7, params={"steps": 5})
    start = reference_start(x, norm, eps, seed=7)
    iterates = reference_pgd(trained, x, y, start, norm=norm, eps=eps, alpha=eps / 4, steps=5)
    assert torch.equal(attack(trained, x, y), best_iterate(trained, y, iterates))


def test_l2_random_start_fills_the_ball_not_just_its_centre():
    x = torch.full((2000, 1, 2, 2), 0.5)
    attack = create_attack("pgd", norm="L2", eps=0.4)
    radii = (attack.start(x, torch.Generator().manual_seed(0)) - x).flatten(1).norm(dim=1)
    assert radii.max() <= 0.4 + 1e-6
    # Uniform in the 4-ball: P(r <= eps/2) = (1/2)^4 = 1/16 = 6.25 %.
    assert 0.04 < (radii <= 0.2).float().mean().item() < 0.09


# ------------------------------------------------------------------------------------------
# Strength on a trained digits model


def test_pgd_breaks_digits_where_gaussian_noise_of_the_same_norm_does_not(trained, test_points):
    x, y = test_points
    clean = accuracy(trained, x, y)  # measured 0.985
    pgd = attacked_accuracy(trained, x, y, "pgd", steps=20)  # measured 0.000
    fgsm = attacked_accuracy(trained, x, y, "fgsm")  # measured 0.020
    noise = attacked_accuracy(trained, x, y, "gaussian")  # measured 0.980
    assert clean >= 0.95
    assert pgd <= 0.10
    assert noise >= 0.80
    assert pgd <= fgsm < clean


def test_fgsm_lies_between_pgd_and_clean_at_a_moderate_eps(trained, test_points):
    x, y = test_points
    pgd = attacked_accuracy(trained, x, y, "pgd", eps=0.1)  # measured 0.415
    fgsm = attacked_accuracy(trained, x, y, "fgsm", eps=0.1)  # measured 0.640
    assert pgd < fgsm < accuracy(trained, x, y)


def test_more_pgd_steps_never_make_it_weaker(trained, test_points):
    x, y = test_points
    few = attacked_accuracy(trained, x, y, "pgd", eps=0.1, steps=5)  # measured 0.590
    many = attacked_accuracy(trained, x, y, "pgd", eps=0.1, steps=40)  # measured 0.410
    assert many <= few
    assert many < few  # at this eps the extra steps matter, so the check above has teeth


def test_cw_and_l2_pgd_break_digits(trained, test_points):
    x, y = test_points
    assert attacked_accuracy(trained, x, y, "cw") <= 0.10  # measured 0.005
    assert attacked_accuracy(trained, x, y, "pgd", norm="L2", eps=1.0) <= 0.10  # measured 0.000


def test_pgd_restarts_count_a_point_broken_if_any_restart_breaks_it(trained, test_points):
    x, y = test_points
    one = create_attack("pgd", norm="Linf", eps=0.1, params={"steps": 5})(trained, x, y)
    three = create_attack("pgd", norm="Linf", eps=0.1,
                          params={"steps": 5, "restarts": 3})(trained, x, y)
    with torch.no_grad():
        broken_one = trained(one).argmax(1) != y
        broken_three = trained(three).argmax(1) != y
    # The first restart is the single-restart run, so nothing it broke can come back.
    assert not (broken_one & ~broken_three).any()
    assert broken_three.sum() > broken_one.sum()  # measured 82 vs 95 of 200


class FlatThreshold(nn.Module):
    """Class 0 iff the first pixel exceeds 0.6, with a zero input gradient everywhere: PGD cannot
    move, so whether a point is broken depends only on its random start."""

    def forward(self, x):
        hit = (x.flatten(1)[:, :1] > 0.6).float()
        return torch.cat([hit, 1 - hit], 1) + 0 * x.flatten(1).sum(1, keepdim=True)


def test_pgd_keeps_the_first_breaking_restart_else_the_earliest_best():
    x = torch.full((300, 1, 2, 2), 0.5)
    y = torch.ones(300, dtype=torch.long)
    attack = create_attack("pgd", norm="Linf", eps=0.2, seed=3,
                           params={"steps": 2, "restarts": 3})
    x_adv = attack(FlatThreshold(), x, y)
    gen = torch.Generator().manual_seed(3)
    starts = [torch.clamp(x + (torch.rand(x.shape, generator=gen) * 2 - 1) * 0.2, 0, 1)
              for _ in range(3)]
    # A flat loss never moves an iterate, so every restart's iterates are its start; the
    # margin is +1 where a start breaks the point and -1 elsewhere, a tie among restarts
    # that the earliest wins.
    expected = starts[0].clone()
    for start in reversed(starts):
        breaks = start.flatten(1)[:, 0] > 0.6
        expected[breaks] = start[breaks]
    assert torch.equal(x_adv, expected)
    broken = x_adv.flatten(1)[:, 0] > 0.6
    # Each restart breaks a point with probability 1/4: 1 - (3/4)^3 = 58 % over three.
    assert 0.45 < broken.float().mean().item() < 0.70


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_a_flat_loss_gives_a_zero_l2_step_not_nan(name):
    x = torch.full((4, 1, 2, 2), 0.5)
    y = torch.ones(4, dtype=torch.long)
    attack = create_attack(name, norm="L2", eps=0.5, params={"random_start": False})
    assert torch.equal(attack(FlatThreshold(), x, y), x)


def test_gaussian_draws_keep_the_first_misclassified_draw():
    x = torch.full((300, 1, 2, 2), 0.5)
    y = torch.ones(300, dtype=torch.long)
    x_adv = create_attack("gaussian", norm="Linf", eps=0.2, params={"draws": 4})(
        FlatThreshold(), x, y)
    gen = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(4):
        g = torch.randn(x.shape, generator=gen)
        draws.append(torch.clamp(x + g * (0.2 / g.flatten(1).abs().amax(1)).view(-1, 1, 1, 1),
                                 0, 1))
    expected = draws[3].clone()
    for draw in reversed(draws[:3]):
        breaks = draw.flatten(1)[:, 0] > 0.6
        expected[breaks] = draw[breaks]
    assert torch.equal(x_adv, expected)
    broken = (x_adv.flatten(1)[:, 0] > 0.6).float().mean().item()
    single = create_attack("gaussian", norm="Linf", eps=0.2)(FlatThreshold(), x, y)
    assert broken > (single.flatten(1)[:, 0] > 0.6).float().mean().item()


@pytest.mark.parametrize("norm", NORMS)
def test_gaussian_noise_has_norm_exactly_eps_before_clamping(norm):
    x = torch.full((50, 3, 4, 4), 0.5)
    eps = 0.2 if norm == "Linf" else 0.4  # small enough that nothing is clamped
    x_adv = create_attack("gaussian", norm=norm, eps=eps)(FirstPixels(), x,
                                                          torch.zeros(50, dtype=torch.long))
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert torch.allclose(size, torch.full_like(size, eps), atol=1e-6)


class FirstPixels(nn.Module):
    """Ten logits from the first ten pixels: any cheap stand-in will do for noise."""

    def forward(self, x):
        return x.flatten(1)[:, :10]


# ------------------------------------------------------------------------------------------
# Seeds, precision and synchronisation


@pytest.mark.parametrize(("name", "params"), [("pgd", {"steps": 3}),
                                              ("fgsm", {"random_start": True}),
                                              ("gaussian", {})])
@pytest.mark.parametrize("norm", NORMS)
def test_same_seed_same_examples_different_seed_different(trained, test_points, name, params,
                                                          norm):
    x, y = test_points[0][:32], test_points[1][:32]

    def run(seed):
        return create_attack(name, norm=norm, eps=EPS[norm] / 2, seed=seed,
                             params=params)(trained, x, y)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_pgd_works_under_bf16_autocast_and_inference_mode(trained, test_points):
    x, y = test_points[0][:64], test_points[1][:64]
    attack = create_attack("pgd", norm="Linf", eps=0.2, params={"steps": 10})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_bf16 = attack(trained, x, y)
    assert x_bf16.dtype == torch.float32
    assert accuracy(trained, x_bf16, y) <= 0.10
    with torch.inference_mode():  # inference tensors, as an evaluation loop may make them
        x_inf = attack(trained, x.clone(), y.clone())
    assert torch.equal(x_inf, attack(trained, x, y))


def test_pgd_step_loop_never_synchronises_with_the_host(trained, test_points, monkeypatch):
    """`.item()`, `bool(t)` and friends stall a GPU every step; none may run inside `run`."""
    x, y = test_points[0][:16], test_points[1][:16]
    attacks = [create_attack("pgd", norm=norm, eps=EPS[norm],
                             params={"steps": 3, "eot_iter": 2, "loss": loss})
               for norm in NORMS for loss in ("ce", "cw", "dlr")]

    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation inside the attack")

    with attack_mode(trained):
        for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
            monkeypatch.setattr(torch.Tensor, name, forbidden)
        for attack in attacks:
            attack.run(trained, x, y)
        monkeypatch.undo()


