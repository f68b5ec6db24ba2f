"""Warning signs in a record: random noise or a black-box attack beating the white-box ones,
robust accuracy within noise of clean, AutoAttack's own Square threshold."""

import pytest
import torch

from robench.attacks import Attack, ThreatModel
from robench.attacks.autoattack import AutoAttackReport
from robench.evaluation.flags import attack_flags, near_clean


class Named(Attack):
    def __init__(self, name, gradients=True):
        super().__init__(ThreatModel("Linf", 0.1))
        self.name, self.uses_gradients = name, gradients


class Step:
    def __init__(self, name, broken):
        self.name, self.broken = name, broken


@pytest.mark.parametrize(("broken", "flagged"), [(2, False), (3, True)])
def test_noise_beating_the_white_box_attacks_is_flagged_above_autoattacks_threshold(
        broken, flagged):
    """0.2 % of 1000 points is 2: AutoAttack's alpha, counted exactly."""
    steps = [Step("pgd", 400), Step("gaussian", broken)]
    flags, _ = attack_flags(steps, [Named("pgd"), Named("gaussian", gradients=False)], n=1000,
                            stochastic=False)
    assert ("gaussian-beat-white-box" in flags) == flagged


def test_square_after_white_box_attacks_is_flagged_and_before_them_is_not():
    from robench.attacks import create_attack

    square = create_attack("square", norm="Linf", eps=0.1)  # the real one: black-box
    attacks = [square, Named("pgd")]
    assert attack_flags([Step("square", 50), Step("pgd", 5)], attacks, n=100,
                        stochastic=False)[0] == []
    flags, _ = attack_flags([Step("pgd", 5), Step("square", 50)], attacks[::-1], n=100,
                            stochastic=False)
    assert flags == ["square-beat-white-box"]


def _report(broken_by_square, n=1000):
    return AutoAttackReport(version="standard", attacks=["apgd-ce", "square"], n_points=n,
                            batch_size=500, clean_accuracy=0.9,
                            per_attack={"apgd-ce": 0.5, "square": 0.5},
                            broken={"apgd-ce": 400, "square": broken_by_square},
                            robust=torch.zeros(n, dtype=torch.bool))


@pytest.mark.parametrize(("broken", "flagged"), [(1, False), (2, False), (3, True)])
def test_autoattacks_square_check_uses_its_own_threshold_not_one_point(broken, flagged):
    assert _report(broken).square_broke_points == flagged


@pytest.mark.parametrize(("clean", "robust", "flagged"), [
    (90, 90, True), (90, 85, True), (90, 80, False), (90, 0, False), (0, 0, False)])
def test_robust_accuracy_inside_the_clean_interval_is_flagged(clean, robust, flagged):
    # 95 % Wilson interval of 90 / 100: [82.6, 94.5]
    assert (near_clean(clean, robust, 100) == ["robust-near-clean"]) == flagged


def test_the_randomised_flag_leads():
    flags, _ = attack_flags([Step("pgd", 1)], [Named("pgd")], n=10, stochastic=True)
    assert flags[0] == "stochastic-model"


