"""Every accuracy robench writes is an exact count over n, the same on every machine.

A float32 mean prints 357/360 as 0.9916666746139526 and 26/40 as 0.6499999761581421; a
count over n in Python gives 0.9916666666666667 and 0.65 everywhere.
"""

import json
from fractions import Fraction

import pytest

from robench import api, report, runs
from robench.config import EvalConfig
from robench.targets import from_run


def is_count_over(value: float, n: int) -> bool:
    """value is exactly k / n for an integer k (as Python computes k / n)."""
    k = round(value * n)
    return value == k / n and Fraction(value).limit_denominator(n) == Fraction(k, n)


def test_the_check_itself_tells_a_float32_mean_from_a_count():
    import torch

    hits = torch.tensor([True] * 357 + [False] * 3)
    assert is_count_over(int(hits.sum()) / 360, 360)
    assert not is_count_over(hits.float().mean().item(), 360)


def test_training_metrics_and_the_run_summary_are_counts(digits_run):
    env = runs.read_env(digits_run)["summary"]
    n_val, n_test = env["n_val"], env["n_test"]
    assert is_count_over(env["test_acc"], n_test)
    assert is_count_over(env["final_val_acc"], n_val)
    for row in runs.read_metrics(digits_run):
        assert is_count_over(row["val_acc"], n_val)
        assert is_count_over(row["val_robust_acc"], n_val)
        assert is_count_over(row["val_fgsm_acc"], n_val)


@pytest.mark.parametrize("attacks", [["pgd"], ["autoattack"]])
def test_records_and_reports_hold_counts(digits_run, tmp_path, attacks):
    cfg = EvalConfig(attacks=attacks, eps=["0.1"], n_examples=40, device="cpu")
    (outcome,) = api.evaluate(from_run(digits_run), cfg, quiet=True)
    rec = outcome.record
    for value in (rec.clean_acc, rec.robust_acc, *(s.robust_acc_after for s in rec.per_attack)):
        assert is_count_over(value, 40)
    data = json.loads(outcome.path.read_text())
    assert data["robust_acc"] == rec.robust_acc
    paths = report.write_report(report.load_records([outcome.path]), tmp_path / "out", ["csv"])
    table = report.read_csv(paths[0])
    assert is_count_over(float(table.loc[0, "robust"]), 40)
    assert is_count_over(float(table.loc[0, "clean"]), 40)
