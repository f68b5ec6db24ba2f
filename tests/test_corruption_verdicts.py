"""Corruption accuracy is a verdict: judged in fp32 with TF32 off whatever --precision, and
for a randomised model the mean over draws, recorded (issue 29)."""

from __future__ import annotations

import pytest
from planted import EveryFourthPassWrong, RecordsPrecision
from test_corruption_eval import BRIGHT, Brightness, cifar_target, write_premade

from robench.evaluation.corruptions import CorruptionConfig, evaluate_corruptions

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_bf16_corruption_evaluation_is_judged_in_fp32_with_tf32_off(tmp_path):
    write_premade(tmp_path, BRIGHT)
    model = RecordsPrecision(Brightness())
    cfg = CorruptionConfig(corruptions=["fog"], severities=[1, 2], device="cpu",
                           precision="bf16")
    record = evaluate_corruptions(cifar_target(tmp_path, model, "m"), cfg, quiet=True).record
    assert model.seen and set(model.seen) == {("torch.float32", False, "ieee", "ieee")}
    assert record.corruptions.accuracy == {"fog": [1.0, 0.8]}
    assert record.precision == "fp32"


def test_a_randomised_models_corruption_accuracy_is_the_mean_over_eight_draws(tmp_path):
    write_premade(tmp_path, BRIGHT)
    model = EveryFourthPassWrong(Brightness())
    cfg = CorruptionConfig(corruptions=["fog"], severities=[1, 2], device="cpu")
    record = evaluate_corruptions(cifar_target(tmp_path, model, "m"), cfg, quiet=True).record
    assert record.corruptions.draws == 8
    # 10 and 8 of 10 images bright; 6 of any 8 consecutive passes right: votes 60 and 48 of 80.
    assert record.corruptions.accuracy == {"fog": [60 / 80, 48 / 80]}
    assert record.clean_acc == 60 / 80
    assert any("mean over 8 draws" in note for note in record.notes)
