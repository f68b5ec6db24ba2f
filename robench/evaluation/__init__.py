"""Measuring a model: the points, the judge, the attacks in order, the record.

Data flows one way through the modules: points (which test points) -> randomness (is the
model randomised; the evaluation's seeds) -> standin (where attacks search) -> plan (which
attacks, made sound) -> protocol (the cascade, every verdict by the judge) -> sanity (the
opt-in checks) -> flags and record -> runner (`evaluate`, one record per eps).
"""

from robench.evaluation.accuracy import accuracy, attacked_accuracy, predict
from robench.evaluation.points import select_points, selection_mask
from robench.evaluation.protocol import (
    ProtocolState,
    StepResult,
    attack_batch,
    check_unchanged,
    clean_pass,
    run_attacks,
    snapshot,
)
from robench.evaluation.randomness import detect, seeded
from robench.evaluation.runner import EvalOutcome, evaluate

__all__ = ["EvalOutcome", "ProtocolState", "StepResult", "accuracy", "attack_batch",
           "attacked_accuracy", "check_unchanged", "clean_pass", "detect", "evaluate",
           "predict", "run_attacks", "seeded", "select_points", "selection_mask", "snapshot"]
