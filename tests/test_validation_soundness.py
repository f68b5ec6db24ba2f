"""Validation (what best.safetensors is chosen on) and corruption accuracy as verdicts: fp32
with TF32 off, randomness detected, a randomised model judged on every draw (issue 29)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from robench.distributed import World
from robench.training.validation import validate

# tests/planted.py by its path: a spawned DDP process re-imports this module with a sys.path
# on which `planted` may name benchmarks/planted.py instead.
_spec = importlib.util.spec_from_file_location("tests_planted",
                                               Path(__file__).with_name("planted.py"))
_planted = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_planted)
RecordsPrecision, WrongEveryFourthPass = _planted.RecordsPrecision, _planted.WrongEveryFourthPass
fragile_splits, validation_config = _planted.fragile_splits, _planted.validation_config

pytestmark = pytest.mark.usefixtures("one_thread")

N, FRAGILE = 12, 5  # validation points; of them, fragile ones (wrong on some draws)


def _splits():
    return fragile_splits(N, FRAGILE)


def _cfg(precision: str = "fp32"):
    return validation_config(precision)


def test_a_randomised_models_validation_counts_a_point_robust_only_if_every_draw_is_right():
    row = validate(WrongEveryFourthPass(), _splits(), _cfg(), torch.device("cpu"), 1, World())
    # The fragile points are wrong in one pass of every four: not robust, not even clean.
    assert round(row["val_robust_acc"] * N) == N - FRAGILE
    assert round(row["val_fgsm_acc"] * N) == N - FRAGILE
    assert round(row["val_acc"] * N) == N - FRAGILE


def test_validation_runs_in_fp32_with_tf32_off_whatever_the_training_precision():
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    model = RecordsPrecision(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2)))
    try:
        conv.fp32_precision, matmul.fp32_precision = "tf32", "tf32"
        validate(model, _splits(), _cfg("bf16"), torch.device("cpu"), 1, World())
        after = conv.fp32_precision, matmul.fp32_precision
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved
    assert model.seen and set(model.seen) == {("torch.float32", False, "ieee", "ieee")}
    assert after == ("tf32", "tf32")  # the caller's choice is put back


def _agree(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from robench.training.parallel import agree_on_buffers
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    bn = torch.nn.BatchNorm1d(3)
    bn.running_mean.fill_(rank + 1.0)  # each process's own statistics
    bn.num_batches_tracked.fill_(10 * (rank + 1))
    agree_on_buffers(bn, World(rank=rank, size=2))
    torch.save([bn.running_mean.tolist(), int(bn.num_batches_tracked)], f"{out}.{rank}")
    dist.destroy_process_group()


def test_every_process_validates_and_checkpoints_process_zeros_batchnorm_statistics(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_agree, args=(f"file://{tmp_path / 'init'}", str(tmp_path / "bn")), nprocs=2)
    seen = [torch.load(tmp_path / f"bn.{r}") for r in (0, 1)]
    assert seen == [[[1.0, 1.0, 1.0], 10], [[1.0, 1.0, 1.0], 10]]
