"""`--sanity`: a much stronger PGD, and PGD at the largest budget, on a subset of the points."""

import pytest
from planted import ZeroGradient

from robench import api
from robench.config import EvalConfig
from robench.evaluation.sanity import sign_test
from robench.targets import from_run

pytestmark = pytest.mark.usefixtures("one_thread")


def evaluate(digits_run, attacks, eps, model=None, **kwargs):
    target = from_run(digits_run)
    if model is not None:
        target.model = model(target.model).eval()
    cfg = EvalConfig(attacks=attacks, eps=[eps], n_examples=100, device="cpu", sanity=True,
                     **kwargs)
    (outcome,) = api.evaluate(target, cfg, quiet=True, force=True)
    return outcome.record


def test_the_sign_test_is_the_exact_binomial_tail():
    assert sign_test(5, 0) == 1 / 32
    assert sign_test(3, 3) == (20 + 15 + 6 + 1) / 64
    assert sign_test(0, 7) == 1.0 and sign_test(0, 0) == 1.0


def test_a_weak_protocol_is_flagged_and_the_points_pgd_broke_count_as_broken(digits_run):
    rec = evaluate(digits_run, ["fgsm"], "0.1")
    s = rec.sanity
    assert "stronger-pgd-broke-more" in rec.flags
    assert s.extra_broken > 0 and s.p_value < 0.05  # measured 25 vs 0
    fgsm, sanity = rec.per_attack
    assert sanity.name == "sanity-pgd" and sanity.broken == s.extra_broken
    assert round(rec.robust_acc * 100) == round(fgsm.robust_acc_after * 100) - s.extra_broken
    assert sanity.params["steps"] == 100 and sanity.params["restarts"] == 5


def test_a_strong_protocol_is_flagged_exactly_when_the_stronger_pgd_broke_a_point(digits_run):
    """Significant or not (3 vs 0 gives p = 0.125), any point it broke is a flag (b > 0)."""
    rec = evaluate(digits_run, ["pgd"], "0.1", params={"pgd": {"restarts": 3}})
    assert ("stronger-pgd-broke-more" in rec.flags) == (rec.sanity.extra_broken > 0)
    assert "large-eps-not-broken" not in rec.flags
    assert rec.sanity.large_eps == 1.0 and rec.sanity.large_eps_robust == 0


def test_masked_gradients_survive_the_largest_budget_and_are_flagged(digits_run):
    rec = evaluate(digits_run, ["pgd"], "0.1", model=ZeroGradient)
    s = rec.sanity
    assert "large-eps-not-broken" in rec.flags
    assert s.large_eps_robust > 0.01 * s.large_eps_attacked  # measured 99 of 99
    assert "robust-near-clean" in rec.flags  # and PGD barely moved it at eps 0.1


def test_the_largest_l2_budget_is_the_diagonal_of_the_image_cube(digits_run):
    rec = evaluate(digits_run, ["fgsm"], "1.0", norm="L2", sanity_n=10)
    assert rec.sanity.large_eps == 8.0  # sqrt(1 * 8 * 8)
    assert rec.sanity.n_points == 10


# ------------------------------------------------------------------------------------------
# Any point the stronger PGD broke is a flag (issue 29), with the drop it implies


def _sanity_of(extra_broken, only_protocol=0, n_points=100):
    from robench.evaluation.sanity import sanity_result

    counts = {"n_points": n_points, "extra_broken": extra_broken,
              "only_protocol": only_protocol, "large_eps_robust": 0, "attacked": n_points,
              "seconds": 0.0, "precision": "fp32", "searched_on": "model"}
    return sanity_result(counts, norm="Linf", eps=0.1, seed=0, stochastic=False,
                         shape=(1, 8, 8), robust_after=50, n=n_points)


def test_one_point_the_stronger_pgd_broke_of_100_is_flagged_with_the_drop_and_its_interval():
    sanity = _sanity_of(extra_broken=1)
    assert sanity.flags == ["stronger-pgd-broke-more"]  # p = 0.5: not significant, still a flag
    # Wilson for 1/100, by hand: centre (0.01 + z^2/200) / (1 + z^2/100) = 0.028127,
    # half-width 1.96 sqrt(0.01 * 0.99 / 100 + z^2 / 40000) / (1 + z^2/100) = 0.026360.
    (note,) = sanity.notes
    assert "1/100" in note and "[0.0018, 0.0545]" in note
    assert sanity.result.implied_drop == 0.01
    assert [round(v, 4) for v in sanity.result.implied_drop_ci95] == [0.0018, 0.0545]


def test_no_point_the_stronger_pgd_broke_is_no_flag_and_no_note():
    sanity = _sanity_of(extra_broken=0, only_protocol=3)
    assert sanity.flags == [] and sanity.notes == []
    assert sanity.result.implied_drop == 0.0


def test_a_record_without_the_drop_fields_still_reads():
    from robench.records import SanityResult

    old = SanityResult(n_points=100, attack={}, extra_broken=1, only_protocol=0, p_value=0.5,
                       large_eps=1.0, large_eps_attack={}, large_eps_robust=0,
                       large_eps_attacked=100)
    assert old.implied_drop is None and old.implied_drop_ci95 is None
