"""Accuracy as exact counts: clean predictions, and accuracy under attacks during training.

Every accuracy robench writes is a count over n computed in Python (0.65, never the float32
mean 0.6499999761581421), so the same evaluation prints the same number on every machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from robench.attacks import Attack
from robench.attacks.judge import Judge, ieee_fp32
from robench.data import Split, to_float
from robench.evaluation.protocol import attack_batch
from robench.evaluation.standin import Searchers, choose_view
from robench.runtime import autocast, evaluating


@contextlib.contextmanager
def verdict_precision(device: torch.device):
    """fp32 for the block: autocast off, and IEEE fp32 (TF32 off) for convolutions and matrix
    products, the caller's settings restored after (set on every device, so a CPU run holds
    the same settings a GPU run would)."""
    with torch.autocast(device_type=device.type, enabled=False), ieee_fp32():
        yield


def correct_votes(judge: Judge, split: Split, device: torch.device) -> int:
    """Correct single draws of the judge over `split`, summed (n * draws at most)."""
    votes = 0
    with verdict_precision(device):
        for start in range(0, len(split), judge.batch_size):
            x = to_float(split.x[start:start + judge.batch_size].to(device))
            votes += int(judge.votes(x, split.y[start:start + judge.batch_size].to(device))
                         .sum())
    return votes


@torch.no_grad()
def predict(model: torch.nn.Module, split: Split, *, device: torch.device, batch_size: int = 512,
            precision: str = "fp32", channels_last: bool = False) -> torch.Tensor:
    """Predicted labels for every image of `split`, computed in eval mode."""
    preds = []
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    with evaluating(model):
        for start in range(0, len(split), batch_size):
            x = to_float(split.x[start:start + batch_size].to(device, non_blocking=True))
            x = x.contiguous(memory_format=memory_format)
            with autocast(device, precision):
                preds.append(model(x).argmax(1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def accuracy(model: torch.nn.Module, split: Split, *, device: torch.device,
             batch_size: int = 512, channels_last: bool = False,
             draws: int = 1) -> float | None:
    """Fraction of `split` classified correctly, as count / n; None if empty.

    The judge's verdict (eval mode, fp32, TF32 off) whatever the training precision:
    validation accuracy chooses best.safetensors, and test accuracy is reported. With
    `draws` > 1 (a randomised model) a point counts only if every draw is right.
    """
    if len(split) == 0:
        return None
    judge = Judge(model, draws=draws, batch_size=batch_size)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    correct = 0
    for start in range(0, len(split), batch_size):
        x = to_float(split.x[start:start + batch_size].to(device, non_blocking=True))
        y = split.y[start:start + batch_size].to(device)
        correct += int(judge.correct(x.contiguous(memory_format=memory_format), y).sum())
    return correct / len(split)


def attacked_accuracy(model: torch.nn.Module, split: Split, attacks: Sequence[Attack], *,
                      device: torch.device, batch_size: int = 512,
                      precision: str = "fp32", draws: int = 1,
                      stochastic: bool = False) -> list[float | None]:
    """For each attack, the fraction of `split` classified correctly as it is and under it.

    The same path as an evaluation's (robench.evaluation.protocol.attack_batch): the attacks
    search on the BatchNorm-folded view where it is shown to equal the model (never for a
    `stochastic` one), in `precision`; every verdict is the judge's (the model, fp32, a point
    right only if all `draws` draws are).
    """
    if len(split) == 0:
        return [None] * len(attacks)
    judge = Judge(model, draws=draws, batch_size=batch_size)
    first = to_float(split.x[:batch_size].to(device))
    view, _ = choose_view(model, first, split.y[:batch_size].to(device),
                          stochastic=stochastic)
    searchers = Searchers(model, view, precision)
    robust = [0] * len(attacks)
    for start in range(0, len(split), batch_size):
        x = to_float(split.x[start:start + batch_size].to(device))
        y = split.y[start:start + batch_size].to(device)
        clean = judge.correct(x, y)
        for i, attack in enumerate(attacks):
            ok, _ = attack_batch(attack, searchers.for_attack(attack), searchers.exact(), x,
                                 y, judge)
            robust[i] += int((clean & ok).sum())
    return [r / len(split) for r in robust]
