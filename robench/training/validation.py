"""Validation during training: the figures best.safetensors is chosen on, measured as verdicts.

A checkpoint chosen on an optimistic figure is a robustness robench did not measure, so
validation follows eval's rules (issue 29): the randomness of the model is detected as eval
detects it (robench.evaluation.randomness); a randomised model is attacked with EOT over
`VALIDATION_DRAWS` draws per gradient and judged on as many draws (a point counts only if
every draw classifies it correctly); everything runs in fp32 with autocast and TF32 off,
whatever the training precision, and under the run's seed, so validation neither depends on
nor disturbs the training's own random stream.

On several processes each takes a contiguous share of whole batches and the correct counts
are summed: every batch, and so every random start, is the one a single process would have
used. Detection runs on the first points of the whole split in every process, so all decide
alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from robench import distributed
from robench.attacks import create_attack
from robench.config import TrainConfig
from robench.data import Split, to_float
from robench.distributed import World
from robench.evaluation import Shard, accuracy, attacked_accuracy, randomness
from robench.evaluation.accuracy import verdict_precision
from robench.evaluation.blocks import block_points, n_blocks
from robench.registry import ATTACKS

# Draws per gradient (EOT) and per verdict for a randomised model: few, since validation only
# ranks epochs, but every one of them judged.
VALIDATION_DRAWS = 4


def _attack(name: str, eps: float, seed: int, params: dict, stochastic: bool):
    if stochastic and "eot_iter" in {f.name for f in
                                     dataclasses.fields(ATTACKS.get(name).params_cls)}:
        params = {**params, "eot_iter": VALIDATION_DRAWS}
    return create_attack(name, norm="Linf", eps=eps, seed=seed, params=params)


def validate(model, splits, cfg: TrainConfig, device: torch.device, epoch: int,
             world: World) -> dict[str, Any]:
    """Clean accuracy on the validation split every epoch; PGD and FGSM accuracy every
    `validation.every` epochs and at the last one (None in between)."""
    r = cfg.runtime
    with verdict_precision(device), randomness.seeded(r.seed, device):
        return _validate(model, splits, cfg, device, epoch, world)


def _validate(model, splits, cfg: TrainConfig, device, epoch: int,
              world: World) -> dict[str, Any]:
    r, v = cfg.runtime, cfg.validation
    attacked = bool(len(splits.val)) and (epoch % v.every == 0 or epoch == cfg.optim.epochs)
    stochastic = bool(len(splits.val)) and randomness.detect(
        model, to_float(splits.val.x[:randomness.POINTS].to(device))).stochastic
    draws = VALIDATION_DRAWS if stochastic else 1
    params = {"steps": v.steps} if v.attack in ("pgd", "cw") else {}
    attacks = [_attack(v.attack, v.eps, r.seed, params, stochastic),
               _attack("fgsm", v.eps, r.seed, {}, stochastic)] if attacked else []
    val = _share(splits.val, r.eval_batch_size, world)
    counts = [0] * (1 + len(attacks))
    if len(val):
        fractions = [accuracy(model, val, device=device, batch_size=r.eval_batch_size,
                              channels_last=r.channels_last, draws=draws)]
        if attacked:
            fractions += attacked_accuracy(model, val, attacks, device=device,
                                           batch_size=r.eval_batch_size, draws=draws,
                                           stochastic=stochastic)
        counts = [round(f * len(val)) for f in fractions]
    if world.distributed:
        counts = [sum(c) for c in zip(*distributed.gather(counts), strict=True)]
    n = len(splits.val)
    row: dict[str, Any] = {"val_acc": counts[0] / n if n else None, "val_robust_acc": None,
                           "val_fgsm_acc": None}
    if attacked:
        row["val_robust_acc"], row["val_fgsm_acc"] = counts[1] / n, counts[2] / n
    return row


def _share(val: Split, batch_size: int, world: World) -> Split:
    """This process's contiguous share of whole validation batches."""
    if not world.distributed:
        return val
    blocks = Shard(world.rank, world.size).blocks(n_blocks(len(val), batch_size))
    if not len(blocks):
        return Split(val.x[:0], val.y[:0])
    start = block_points(blocks[0], batch_size, len(val)).start
    stop = block_points(blocks[-1], batch_size, len(val)).stop
    return Split(val.x[start:stop], val.y[start:stop])
