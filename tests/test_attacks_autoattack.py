"""AutoAttack through pyautoattack: parity with the package, soundness, resume, silence.

Inputs are tiny (digits, 8x8, a few dozen points) and eps large enough that APGD-CE breaks
nearly everything: a point surviving into FAB-T costs tens of seconds on a CPU.
"""

import json
import logging
import re
import shutil
import warnings
from types import SimpleNamespace

import pytest
import torch
from pyautoattack import AutoAttack as PackageAutoAttack
from pyautoattack import autoattack as package_module
from pyautoattack import checks as package_checks
from pyautoattack.state import EvaluationState
from torch import nn

from robench.attacks import create_attack, perturbation_norms
from robench.attacks.autoattack import LOGGER_NAME, check_flag
from robench.data import load_dataset
from robench.errors import UserError
from robench.evaluation.flags import attack_flags
from robench.models import create_model

COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")
CHEAP = {"version": "custom", "attacks": ["apgd-ce", "apgd-dlr"]}


def new_model():
    return create_model("cnn", in_channels=1, num_classes=10, image_size=8, mean=(0.3,),
                        std=(0.37,))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """A normally trained digits cnn (about 99 % clean accuracy on the first 100 test points)."""
    torch.manual_seed(0)
    model = new_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x, y = digits.train.x, digits.train.y
    model.train()
    for _ in range(15):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


class Counting(nn.Module):
    """Counts forward passes and the mode each ran in; can stop the run like Ctrl-C."""

    def __init__(self, net, interrupt_after=None):
        super().__init__()
        self.net, self.calls, self.modes, self.interrupt_after = net, 0, [], interrupt_after

    def forward(self, x):
        self.calls += 1
        self.modes.append(self.training)
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        return self.net(x)


class NoisyLogits(nn.Module):
    """A randomised model: fresh Gaussian noise on the logits at every call, in eval mode too."""

    def __init__(self, net, sigma=0.05):
        super().__init__()
        self.net, self.sigma = net, sigma

    def forward(self, x):
        z = self.net(x)
        return z + self.sigma * torch.randn_like(z)


def correct(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def test_standard_version_breaks_a_normally_trained_cnn_and_matches_the_package(digits,
                                                                                 trained):
    x, y = digits.test.x[:100], digits.test.y[:100]
    attack = create_attack("autoattack", norm="Linf", eps=0.2, seed=0)
    x_adv = attack(trained, x, y)
    report = attack.report
    # Measured: clean 99 %, robust 0 % (APGD-CE breaks all 99 correct points).
    assert report.clean_accuracy >= 0.95
    assert report.robust_accuracy <= 0.05
    assert correct(trained, x_adv, y).float().mean().item() <= 0.05
    assert report.attacks == ["apgd-ce", "apgd-t", "fab-t", "square"]

    direct = PackageAutoAttack(trained, norm="Linf", eps=0.2, version="standard", seed=0,
                               device=x.device)
    x_direct, _ = direct.run_standard_evaluation(x, y, batch_size=500)
    assert torch.equal(correct(trained, x_adv, y), correct(trained, x_direct, y))
    assert torch.equal(x_adv, x_direct)


def test_same_robust_set_as_the_package_when_points_survive(digits, trained):
    x, y = digits.test.x[:40], digits.test.y[:40]
    attack = create_attack("autoattack", norm="Linf", eps=0.08, seed=3, params=CHEAP)
    x_adv = attack(trained, x, y)
    direct = PackageAutoAttack(trained, norm="Linf", eps=0.08, version="custom", seed=3,
                               attacks=["apgd-ce", "apgd-dlr"])
    x_direct, y_direct = direct.run_standard_evaluation(x, y, batch_size=500)
    ours = correct(trained, x_adv, y)
    assert 0 < ours.sum() < ours.numel() - 5  # a mixed set, or the comparison says little
    assert torch.equal(ours, correct(trained, x_direct, y))
    assert torch.equal(attack.report.robust, y_direct == y)
    assert torch.equal(x_adv, x_direct)


def test_report_holds_exact_per_component_accuracy_and_agrees_with_the_package_log(digits,
                                                                                     trained):
    x, y = digits.test.x[:40], digits.test.y[:40]
    attack = create_attack("autoattack", norm="Linf", eps=0.08, seed=0, params=CHEAP)
    attack(trained, x, y)
    r = attack.report
    n_clean = round(r.clean_accuracy * 40)
    assert r.broken["apgd-ce"] > 0
    assert r.per_attack["apgd-ce"] == (n_clean - r.broken["apgd-ce"]) / 40
    assert r.per_attack["apgd-dlr"] == r.per_attack["apgd-ce"] - r.broken["apgd-dlr"] / 40
    assert r.per_attack["apgd-dlr"] == r.robust_accuracy
    logged = dict(re.findall(r"robust accuracy after (\S+): ([\d.]+)%", "\n".join(r.log)))
    assert {k.lower(): float(v) for k, v in logged.items()} == {
        k: round(100 * v, 2) for k, v in r.per_attack.items()}
    assert r.batch_size == 500 and r.version == "custom"


def test_component_settings_are_the_standard_versions(trained):
    expected = {"apgd-ce": ("apgd", {"n_restarts": 1, "eot_iter": 1}),
                "apgd-dlr": ("apgd", {"n_restarts": 1, "eot_iter": 1}),
                "apgd-t": ("apgd_targeted", {"n_restarts": 1, "n_target_classes": 9}),
                "fab-t": ("fab", {"n_restarts": 1, "n_target_classes": 9}),
                "square": ("square", {"n_queries": 5000, "n_restarts": 1})}
    for name, (runner, settings) in expected.items():
        aa = create_attack(name, norm="Linf", eps=0.1).package_attack(trained, "cpu")
        assert aa.version == "custom" and aa.attacks_to_run == [name]
        for key, value in settings.items():
            assert getattr(getattr(aa, runner), key) == value, (name, key)
    # The custom version keeps the package's own defaults (5 restarts), the 'rand' one EOT.
    custom = create_attack("autoattack", norm="Linf", eps=0.1, params={
        "version": "custom", "attacks": ["apgd-ce"]}).package_attack(trained, "cpu")
    assert custom.apgd.n_restarts == 5
    rand = create_attack("autoattack", norm="Linf", eps=0.1, params={"version": "rand"})
    assert rand.package_attack(trained, "cpu").apgd.eot_iter == 20
    eot = create_attack("apgd-ce", norm="Linf", eps=0.1, params={"eot_iter": 20})
    assert eot.package_attack(trained, "cpu").apgd.eot_iter == 20


@pytest.mark.parametrize("norm,eps", [("Linf", 0.3), ("L2", 2.0)])
@pytest.mark.parametrize("name", COMPONENTS)
def test_each_component_alone_stays_in_the_ball_and_the_box(digits, trained, name, norm, eps):
    x, y = digits.test.x[:12], digits.test.y[:12]
    attack = create_attack(name, norm=norm, eps=eps, seed=0)
    x_adv = attack(trained, x, y)  # the base class raises on a point outside
    linf, l2 = perturbation_norms(x, x_adv)
    size = linf if norm == "Linf" else l2
    assert size.max().item() <= eps + 1e-5
    assert x_adv.min().item() >= 0 and x_adv.max().item() <= 1
    assert (size > 0).sum() >= 6  # it did attack
    assert attack.report.attacks == [name]
    assert attack.report.robust_accuracy < 0.5


def test_model_runs_in_eval_mode_and_comes_back_unchanged(digits, trained):
    x, y = digits.test.x[:20], digits.test.y[:20]
    model = Counting(new_model())
    model.load_state_dict(Counting(trained).state_dict())
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    create_attack("autoattack", norm="Linf", eps=0.3, seed=0)(model, x, y)
    assert model.calls > 0 and not any(model.modes)
    assert model.training and model.net.net.layer1[1].training
    assert all(p.requires_grad for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_randomised_model_is_flagged_by_autoattack_and_rand_runs_on_it(digits, trained, capfd,
                                                                       caplog):
    x, y = digits.test.x[:10], digits.test.y[:10]
    noisy = NoisyLogits(trained)
    caplog.set_level(logging.DEBUG)
    standard = create_attack("autoattack", norm="Linf", eps=0.3, seed=0)
    standard(noisy, x, y)
    assert standard.report.randomized
    assert any("randomized defense" in w for w in standard.report.warnings)

    rand = create_attack("autoattack", norm="Linf", eps=0.3, seed=0, params={"version": "rand"})
    counted = Counting(noisy)
    rand(counted, x, y)
    assert rand.report.attacks == ["apgd-ce", "apgd-dlr"]
    assert not rand.report.randomized  # the package skips that check in 'rand'
    assert rand.report.broken["apgd-ce"] >= 5
    assert counted.calls > 20 * 100  # gradients averaged over 20 draws, 100 steps
    # Silence: nothing on stdout or stderr, nothing through the root logger, logger restored.
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert not [r for r in caplog.records if r.name == LOGGER_NAME]
    logger = logging.getLogger(LOGGER_NAME)
    assert logger.propagate and not logger.handlers


def test_global_random_stream_is_left_as_it_was(digits, trained):
    x, y = digits.test.x[:8], digits.test.y[:8]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    create_attack("apgd-ce", norm="Linf", eps=0.3, seed=0)(trained, x, y)
    assert torch.equal(torch.rand(3), expected)


def test_interrupted_evaluation_resumes_without_rerunning_finished_attacks(digits, trained,
                                                                           tmp_path):
    x, y = digits.test.x[:40], digits.test.y[:40]

    def attack(eps=0.08, params=CHEAP):
        return create_attack("autoattack", norm="Linf", eps=eps, seed=0, params=params)

    full_model = Counting(trained)
    full = attack()
    full(full_model, x, y)
    assert full.report.broken["apgd-ce"] > 0 and full.report.broken["apgd-dlr"] >= 0

    state = tmp_path / "aa.state.json"
    stopped = Counting(trained, interrupt_after=full_model.calls - 10)  # inside APGD-DLR
    with pytest.raises(KeyboardInterrupt):
        attack().run_with_state(stopped, x, y, state)
    saved = json.loads(state.read_text())
    assert saved["_run_attacks"] == ["apgd-ce"]
    assert package_module.EvaluationState is EvaluationState  # the recording class is gone
    assert not logging.getLogger(LOGGER_NAME).handlers

    # Moved elsewhere, as a run directory may be: the package warns, and the report keeps it.
    moved = tmp_path / "moved.json"
    shutil.copy(state, moved)
    shutil.copy(f"{state}.robench.json", f"{moved}.robench.json")
    resumed_model = Counting(trained)
    resumed = attack()
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        resumed.run_with_state(resumed_model, x, y, moved)
    assert not leaked
    r = resumed.report
    assert r.resumed == ["apgd-ce"]
    assert any("different from the one found in the state file" in w for w in r.warnings)
    # APGD-CE (5 restarts of 100 steps on the points it does not break) did not run again.
    assert resumed_model.calls < full_model.calls - 100
    assert torch.equal(r.robust, full.report.robust)
    assert r.per_attack == full.report.per_attack
    assert r.broken == full.report.broken
    assert r.clean_accuracy == full.report.clean_accuracy
    assert r.lost_examples == full.report.broken["apgd-ce"]
    assert sorted(json.loads(moved.read_text())["_run_attacks"]) == ["apgd-ce", "apgd-dlr"]

    # A state made for another set of attacks, or at another eps, is refused.
    with pytest.raises(UserError, match="apgd-ce"):
        attack(params={"version": "custom", "attacks": ["apgd-ce"]}).run_with_state(
            trained, x, y, moved)
    with pytest.raises(UserError, match="eps"):
        attack(eps=0.1).run_with_state(trained, x, y, moved)


@pytest.mark.parametrize("params,named", [
    ({"version": "strong"}, "'strong'"),
    ({"attacks": ["apgd-ce"]}, "['apgd-ce']"),
    ({"version": "custom", "attacks": ["apgd-xx"]}, "'apgd-xx'"),
    ({"version": "custom"}, "[]"),
    ({"version": "custom", "attacks": ["square", "square"]}, "['square', 'square']"),
])
def test_bad_parameters_are_user_errors_naming_the_value(params, named):
    with pytest.raises(UserError) as info:
        create_attack("autoattack", norm="Linf", eps=0.1, params=params)
    assert named in str(info.value)


def test_bad_norm_and_eot_are_user_errors():
    with pytest.raises(UserError, match="'L1'"):
        create_attack("autoattack", norm="L1", eps=0.1)
    with pytest.raises(UserError, match="0"):
        create_attack("apgd-ce", norm="Linf", eps=0.1, params={"eot_iter": 0})


# --- AutoAttack's own checks, as flags ---------------------------------------------------


class _GradInForward(nn.Module):
    """Takes a gradient inside its forward: what AutoAttack's dynamic-defense check looks for."""

    def forward(self, x):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad((x * x).sum(), x)
        return g.flatten(1)[:, :10]


def _warning_of(check, *args) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check(*args)
    assert len(caught) == 1, [str(w.message) for w in caught]
    return str(caught[0].message)


_X = torch.rand(4, 1, 8, 8)
_CHECK_CASES = {
    "autoattack:randomized": (package_checks.check_randomized,
                              lambda x: torch.randn(len(x), 10), _X, torch.zeros(4).long()),
    "autoattack:probability-output": (package_checks.check_range_output,
                                      lambda x: torch.full((len(x), 10), 0.1), _X),
    "autoattack:zero-gradients": (package_checks.check_zero_gradients, torch.zeros(2, 3)),
    "square-beat-white-box": (package_checks.check_square_sr,
                              {"clean": 0.9, "apgd-ce": 0.5, "square": 0.4}),
    "autoattack:dynamic": (package_checks.check_dynamic, _GradInForward(), _X),
    "autoattack:too-few-classes": (package_checks.check_n_classes, 2, ["apgd-t"], 9, 9),
    "autoattack:too-many-targets": (package_checks.check_n_classes, 5, ["apgd-t"], 9, 9),
}


@pytest.mark.parametrize("flag", sorted(_CHECK_CASES))
def test_each_check_of_the_package_has_its_short_flag(flag):
    check, *args = _CHECK_CASES[flag]
    counts = dict(package_checks.funcs)
    try:
        warning = _warning_of(check, *args)  # the package's own sentence
    finally:
        package_checks.funcs.update(counts)  # the dynamic check counts calls process-wide
    assert check_flag(warning) == flag


def test_a_sentence_the_table_does_not_know_still_gives_a_flag():
    assert check_flag("something new the package says") == "autoattack:warning"


def test_records_get_short_flags_and_keep_the_package_sentences_as_notes():
    square = _warning_of(package_checks.check_square_sr, {"a": 0.9, "apgd-ce": 0.5,
                                                          "square": 0.4})
    zero = _warning_of(package_checks.check_zero_gradients, torch.zeros(2, 3))
    report = SimpleNamespace(warnings=[zero, square], square_broke_points=True)
    steps = [SimpleNamespace(name="autoattack", broken=3)]
    attack = SimpleNamespace(report=report, uses_gradients=True, name="autoattack")
    flags, notes = attack_flags(steps, [attack], n=100, stochastic=False)
    assert flags == ["autoattack:zero-gradients", "square-beat-white-box"]
    assert notes == [f"AutoAttack's check: {zero}", f"AutoAttack's check: {square}"]
