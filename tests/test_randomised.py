"""Randomised models: found every time, attacked with EOT on the model itself, judged by rule.

The planted models draw their randomness the ways users' models do (Python's random, NumPy,
torch calls of a fixed shape that a tracer would freeze, a coin per forward pass); see
tests/planted.py.
"""

import pytest
import torch
import torch.nn.functional as F
from planted import (
    CoinFlipEnsemble,
    FixedShapeNoise,
    NoisyWhereMarked,
    NumpyRandomShift,
    PythonRandomMember,
    RecordingMember,
)

from robench import api
from robench.config import EvalConfig
from robench.data import Split, to_float
from robench.errors import UserError
from robench.evaluation import detect, runner, seeded
from robench.evaluation.protocol import clean_pass
from robench.targets import from_run

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def members(digits_run, digits_run_b):
    return from_run(digits_run).model, from_run(digits_run_b).model


def planted(name, members):
    a, b = members
    return {"python-random": lambda: PythonRandomMember(a, b),
            "numpy": lambda: NumpyRandomShift(a),
            "fixed-shape-torch": lambda: FixedShapeNoise(a, (1, 1, 8, 8), 0.3),
            "coin-flip": lambda: CoinFlipEnsemble(a, b)}[name]().eval()


PLANTED = ["python-random", "numpy", "fixed-shape-torch", "coin-flip"]


def evaluate(digits_run, model, **kwargs):
    target = from_run(digits_run)
    target.model = model
    cfg = EvalConfig(**{"attacks": ["pgd"], "eps": ["0.15"], "n_examples": 100,
                        "device": "cpu", **kwargs})
    (outcome,) = api.evaluate(target, cfg, quiet=True, force=True)
    return outcome.record


@pytest.mark.parametrize("name", PLANTED)
def test_every_planted_randomised_model_is_found_under_every_seed(digits_run, members, name):
    model = planted(name, members)
    x = to_float(from_run(digits_run).test.x[:128])
    found = []
    for seed in range(20):
        with seeded(seed, CPU):
            found.append(detect(model, x).stochastic)
    assert all(found)


def test_two_passes_would_miss_the_coin_flip_ensemble_for_some_seed(digits_run, members):
    """Why one comparison of two passes is not enough (the detector this replaced)."""
    model = planted("coin-flip", members)
    x = to_float(from_run(digits_run).test.x[:128])
    missed = []
    for seed in range(20):
        with seeded(seed, CPU):
            missed.append(not detect(model, x, passes=2).stochastic)
    assert any(missed)


def test_a_deterministic_model_is_not_called_randomised(digits_run):
    target = from_run(digits_run)
    with seeded(0, CPU):
        assert not detect(target.model, to_float(target.test.x[:128])).stochastic


def reference_eot_pgd(model, x, y, *, eps, steps=20, draws=20):
    """EOT-PGD written here, independently of robench: gradients of the cross-entropy summed
    over `draws` passes, signed steps of eps/4 from x, the last iterate."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = sum(F.cross_entropy(model(x_adv), y, reduction="sum") for _ in range(draws))
        (g,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = torch.min(torch.max(x_adv + eps / 4 * g.sign(), x - eps), x + eps)
            x_adv = x_adv.clamp(0, 1)
    return x_adv.detach()


@pytest.mark.parametrize("name", ["python-random", "fixed-shape-torch"])
def test_robust_accuracy_is_not_above_an_eot_attack_on_the_model_itself(digits_run, members,
                                                                        name):
    model = planted(name, members)
    rec = evaluate(digits_run, model)
    assert "stochastic-model" in rec.flags
    assert rec.per_attack[0].params["eot_iter"] == 20
    assert rec.per_attack[0].searched_on == "model"
    target = from_run(digits_run)
    x, y = to_float(target.test.x[:100]), target.test.y[:100]
    torch.manual_seed(0)
    x_adv = reference_eot_pgd(model, x, y, eps=0.15)
    with torch.no_grad():
        reference = int((model(x_adv).argmax(1) == y).sum())  # one draw, as usual
    # measured: python-random 1 vs 3 of 100, fixed-shape-torch 0 vs 8
    assert round(rec.robust_acc * 100) <= reference


def test_the_attack_takes_its_gradients_from_the_models_own_draws(digits_run, members):
    """A traced view would run neither member choice nor any Python in forward: EOT on it
    would average one member's gradient twenty times."""
    model = RecordingMember(*members).eval()
    evaluate(digits_run, model, n_examples=20)
    with_grad = [member for member, grad in model.passes if grad]
    assert len(with_grad) >= 20 * 20  # 20 steps x 20 draws, on the model itself
    assert 0.3 < sum(with_grad) / len(with_grad) < 0.7  # both members, about half each


def test_the_verdict_rule_and_the_mean_clean_accuracy_are_recorded(digits_run, members):
    rec = evaluate(digits_run, planted("fixed-shape-torch", members), attacks=["gaussian"])
    assert (rec.verdict.rule, rec.verdict.draws) == ("every-draw", 10)
    # every one of 10 draws must be right: never more than the mean over single draws
    assert rec.clean_acc <= rec.verdict.mean_clean_acc
    mean = rec.verdict.mean_clean_acc
    assert mean == round(mean * 1000) / 1000  # a count over 100 points x 10 draws
    plain = evaluate(digits_run, from_run(digits_run).model, attacks=["gaussian"])
    assert (plain.verdict.rule, plain.verdict.draws) == ("one-pass", 1)
    assert plain.verdict.mean_clean_acc is None


@pytest.mark.parametrize("name", ["python-random", "numpy"])
def test_python_and_numpy_randomness_is_seeded_by_the_evaluation_seed(digits_run, members,
                                                                      name):
    model = planted(name, members)
    first = evaluate(digits_run, model, attacks=["fgsm"], seed=3)
    again = evaluate(digits_run, model, attacks=["fgsm"], seed=3)
    assert (first.points, first.clean_acc, first.robust_acc) == \
        (again.points, again.clean_acc, again.robust_acc)


def test_autoattacks_own_randomised_warning_switches_the_protocol(digits_run, monkeypatch):
    """A model robench's detection misses (simulated here) but AutoAttack's check catches."""
    real_clean_pass = clean_pass
    monkeypatch.setattr(runner.randomness, "detect", lambda model, x, passes=16: type(
        "Found", (), {"stochastic": False})())
    monkeypatch.setattr(runner, "clean_pass", lambda *a, **k: real_clean_pass(
        *a, **{**k, "check_repeat": False}))
    target = from_run(digits_run)
    x = target.test.x.clone()
    x[:, 0, 0, 0] = 1.0  # every point carries the mark: the noise is on for all of them
    target.test = Split(x, target.test.y)
    target.model = NoisyWhereMarked(target.model, sigma=0.3).eval()
    before = set((digits_run / "evals").glob("*.json"))
    cfg = EvalConfig(attacks=["autoattack"], eps=["0.15"], n_examples=40, device="cpu")
    (outcome,) = api.evaluate(target, cfg, quiet=True, force=True)
    rec = outcome.record
    assert rec.per_attack[0].params["suite"]["version"] == "rand"
    assert "stochastic-model" in rec.flags
    assert any("AutoAttack's own check found the model randomised" in n for n in rec.notes)
    # the record of the first, deterministic attempt is gone: only the rand one was kept
    assert set((digits_run / "evals").glob("*.json")) - before == {outcome.path}


@pytest.mark.parametrize(("attacks", "params", "named"), [
    (["square"], {}, "square"),
    (["apgd-t"], {}, "apgd-t"),
    (["fab-t"], {}, "fab-t"),
    (["autoattack"], {"autoattack": {"version": "custom", "attacks": ["apgd-ce", "square"]}},
     "square"),
    (["pgd"], {"pgd": {"eot_iter": 1}}, "pgd"),
])
def test_attacks_without_eot_are_refused_on_a_randomised_model(digits_run, members, attacks,
                                                               params, named):
    model = planted("coin-flip", members)
    with pytest.raises(UserError, match=rf"randomised.*{named}.*EOT.*--allow-non-eot"):
        evaluate(digits_run, model, attacks=attacks, params=params)
    assert not list((digits_run / "evals").glob(f"{attacks[0]}-linf-0.15-n100-*.json")) or \
        attacks[0] in ("pgd", "autoattack")  # others were never recorded at this eps


def test_with_allow_non_eot_they_run_flagged_not_eot_sound(digits_run, members):
    rec = evaluate(digits_run, planted("coin-flip", members), attacks=["square"],
                   allow_non_eot=True, n_examples=20)
    assert "not-eot-sound" in rec.flags
    assert any("not EOT-sound" in note for note in rec.notes)


def test_fgsm_and_a_custom_autoattack_get_eot_on_a_randomised_model(digits_run, members):
    model = planted("coin-flip", members)
    rec = evaluate(digits_run, model, attacks=["fgsm"], n_examples=20)
    assert rec.per_attack[0].params["eot_iter"] == 20 and not rec.flags[1:]
    rec = evaluate(digits_run, model, attacks=["autoattack"], n_examples=20,
                   params={"autoattack": {"version": "custom", "attacks": ["apgd-ce"]}})
    assert rec.per_attack[0].params["eot_iter"] == 20
    assert "not-eot-sound" not in rec.flags
