"""Learning-rate schedules as pure functions of the step count.

A schedule holds no state: the rate at any step follows from the config, so resuming needs
nothing but the step number and there is no scheduler object to save or to get out of sync.
"""

from __future__ import annotations

import bisect
import math

from robench.config import OptimConfig

# Triangular schedules, 0 -> lr -> 0 linearly, by where the peak sits (a fraction of training).
# cyclic: Wong et al. 2020's CIFAR fast-AT (torch's CyclicLR with equal steps up and down);
# onecycle: Rice et al. 2020's fast-AT schedule in robust_overfitting (peak at 2/5).
PEAKS = {"cyclic": 0.5, "onecycle": 0.4}


def lr_at(cfg: OptimConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate for optimisation step `step` (0-based), given the steps in an epoch."""
    epoch = step / steps_per_epoch  # fractional epochs elapsed
    total = cfg.epochs
    if cfg.schedule == "constant":
        lr = cfg.lr
    elif cfg.schedule == "multistep":
        passed = bisect.bisect_right(cfg.milestones, int(step // steps_per_epoch))
        lr = cfg.lr * cfg.gamma**passed
    elif cfg.schedule == "cosine":
        lr = 0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / total))
    elif cfg.schedule in PEAKS:
        peak = PEAKS[cfg.schedule] * total
        lr = cfg.lr * (epoch / peak if epoch < peak else max(0.0, (total - epoch) / (total - peak)))
    else:  # validated in config; reaching this is a bug
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        lr *= (step + 1) / (cfg.warmup_epochs * steps_per_epoch)
    return lr
