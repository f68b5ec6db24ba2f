"""Measuring a model: the points, the judge, the attacks in order, the record.

Data flows one way through the modules: points (which test points) -> randomness (is the
model randomised; the evaluation's seeds) -> standin (where attacks search) -> plan (which
attacks, made sound) -> protocol (the cascade, every verdict by the judge) -> sanity (the
opt-in checks) -> flags and record -> runner (`evaluate`, one record per eps, or one
shard's part of it: blocks, shards) -> merging (records from shards, or from torchrun's
ranks). Beside the Lp threat model, on the same points, clean pass and model check:
`corruptions` (the common corruption threat model) and `craft` (adversarial examples for
`robench attack`). What is evaluated is a `target.Target`, however it was made.
"""

from robench.evaluation.accuracy import accuracy, attacked_accuracy, predict
from robench.evaluation.blocks import Shard
from robench.evaluation.corruptions import CorruptionConfig, CorruptionOutcome, evaluate_corruptions
from robench.evaluation.craft import AttackOutcome, craft
from robench.evaluation.merging import evaluate_ranks, merge_shards
from robench.evaluation.points import select_points, selection_mask
from robench.evaluation.protocol import (
    ProtocolState,
    StepResult,
    attack_batch,
    clean_pass,
    run_attacks,
)
from robench.evaluation.randomness import detect, seeded
from robench.evaluation.runner import EvalOutcome, ShardOutcome, evaluate
from robench.evaluation.target import Target
from robench.evaluation.unchanged import check_unchanged, snapshot

__all__ = ["AttackOutcome", "CorruptionConfig", "CorruptionOutcome", "EvalOutcome",
           "ProtocolState", "Shard", "ShardOutcome", "StepResult", "Target", "accuracy",
           "attack_batch", "attacked_accuracy", "check_unchanged", "clean_pass", "craft",
           "detect", "evaluate", "evaluate_corruptions", "evaluate_ranks", "merge_shards",
           "predict", "run_attacks", "seeded", "select_points", "selection_mask", "snapshot"]
