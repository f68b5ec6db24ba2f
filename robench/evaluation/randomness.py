"""Is the model randomised? And the evaluation's own seeds for whatever randomness it has.

A randomised model (test-time noise, random transformations, a random ensemble member)
evaluated as a deterministic one looks more robust than it is: gradients of one draw point
the wrong way for the next. Detection therefore errs towards "randomised":
- `PASSES` forward passes of the first `POINTS` evaluated points (AutoAttack's own check
  makes 5): a model that picks one of two members by a coin per pass shows it in 16 passes
  except with probability 2^-15, where two passes miss it half the time;
- then the clean pass over every point is made twice and compared (randomness that touches
  only some inputs);
- and AutoAttack's own "randomized" warning switches the protocol too (robench.evaluation).
Passes are compared on logits scaled to unit L2 norm, with AutoAttack's tolerance 1e-4: far
above the last-bit differences of non-deterministic GPU kernels, and any change of a
predicted class counts whatever its size.

`seeded` seeds Python's `random`, NumPy and torch (CPU and the current CUDA device) from the
evaluation's seed for its duration and restores them afterwards, so a randomised model's
draws, and so its record, are the same every time.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robench.attacks.judge import Judge

PASSES = 16
POINTS = 128
TOLERANCE = 1e-4


@dataclass
class Randomness:
    stochastic: bool
    passes: int
    points: int
    max_difference: float  # largest L2 distance between unit-norm logits of two passes
    flips: int  # points whose predicted class changed between passes

    def describe(self) -> str:
        return (f"{self.passes} forward passes of {self.points} points differ (largest "
                f"difference of normalised logits {self.max_difference:.3g}, {self.flips} "
                f"predictions changed)")


def _unit(logits: torch.Tensor) -> torch.Tensor:
    return logits / (logits.norm(dim=1, keepdim=True) + 1e-10)


@torch.no_grad()
def compare_passes(outputs: list[torch.Tensor]) -> tuple[float, int]:
    """(largest distance of unit-norm logits from the first pass, points whose class changed)."""
    first = outputs[0].float()
    unit0, cls0 = _unit(first), first.argmax(1)
    diff, flipped = 0.0, torch.zeros(len(first), dtype=torch.bool, device=first.device)
    for out in outputs[1:]:
        out = out.float()
        diff = max(diff, float((_unit(out) - unit0).norm(dim=1).max()))
        flipped |= out.argmax(1) != cls0
    return diff, int(flipped.sum())


def differs(outputs: list[torch.Tensor]) -> bool:
    diff, flips = compare_passes(outputs)
    return flips > 0 or diff > TOLERANCE


@torch.no_grad()
def detect(model: nn.Module, x: torch.Tensor, passes: int = PASSES) -> Randomness:
    """`passes` forward passes of x (eval mode, fp32) compared."""
    judge = Judge(model, batch_size=max(1, len(x)))
    outputs = [judge.logits(x) for _ in range(passes)]
    diff, flips = compare_passes(outputs)
    return Randomness(stochastic=flips > 0 or diff > TOLERANCE, passes=passes, points=len(x),
                      max_difference=diff, flips=flips)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Python's, NumPy's and torch's generators seeded for the block, restored after."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            if devices:
                torch.cuda.manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
