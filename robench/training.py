"""The training loop: epochs of optimisation steps, validation, checkpoints, resume.

Every defense plugs in through its objective (a loss for a batch); the loop owns everything
else. Randomness of the data order and augmentation comes from a generator seeded by
(seed, epoch), and the global generator (dropout, noise) is saved with every checkpoint, so a
resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robench import runs
from robench.augment import augment_batch
from robench.config import TrainConfig
from robench.data import DatasetSplits, to_float
from robench.defenses import Defense, StepContext
from robench.errors import UserError
from robench.evaluation import accuracy
from robench.progress import EpochReporter
from robench.runtime import autocast, rng_state, set_rng_state
from robench.schedules import lr_at

# Called after each finished (and checkpointed) epoch with the epoch's metrics row.
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class FitResult:
    epochs: int
    train_seconds: float
    last: dict[str, Any]


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches only (a last batch of one image breaks BatchNorm), at least one."""
    return max(1, n_train // batch_size)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                           nesterov=o.nesterov and o.momentum > 0,
                           weight_decay=o.weight_decay)


def fit(model: torch.nn.Module, defense: Defense, splits: DatasetSplits, cfg: TrainConfig,
        run_dir: Path, *, device: torch.device, reporter: EpochReporter,
        callbacks: Sequence[EpochCallback] = ()) -> FitResult:
    """Train `model` in place from the state in `run_dir` (if any) to the last epoch."""
    o, r = cfg.optim, cfg.runtime
    augment = cfg.data.augment or splits.info.augment
    memory_format = torch.channels_last if r.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    optimizer = make_optimizer(model, cfg)
    train = splits.train.to(device)
    n_steps = steps_per_epoch(len(train), o.batch_size)

    start_epoch, seconds_so_far = 0, 0.0
    state_path = run_dir / runs.STATE
    if state_path.is_file():
        state = runs.load_state(state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start_epoch, seconds_so_far = state["epoch"], state["train_seconds"]
        # Lines of an epoch that finished but was not checkpointed are recomputed.
        runs.write_metrics(run_dir, [m for m in runs.read_metrics(run_dir)
                                     if m["epoch"] <= start_epoch])
    reporter.start(start_epoch)

    last: dict[str, Any] = {}
    for epoch in range(start_epoch + 1, o.epochs + 1):
        reporter.start_epoch(epoch, n_steps)
        t0 = time.perf_counter()
        loss_sum, correct, seen = _train_epoch(model, defense, train, cfg, epoch, n_steps,
                                               optimizer, augment, device, memory_format,
                                               reporter)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        seconds_so_far += seconds
        val_acc = accuracy(model, splits.val, device=device, batch_size=r.eval_batch_size,
                           precision=r.precision, channels_last=r.channels_last)
        last = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "val_acc": val_acc,
            "seconds": seconds,
            "images_per_s": seen / seconds,
        }
        runs.append_metrics(run_dir, last)
        runs.save_state({
            "epoch": epoch,
            "train_seconds": seconds_so_far,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(),
        }, state_path)
        reporter.end_epoch(last)
        for callback in callbacks:
            callback(last)
    return FitResult(epochs=o.epochs, train_seconds=seconds_so_far, last=last)


def _train_epoch(model, defense, train, cfg, epoch, n_steps, optimizer, augment, device,
                 memory_format, reporter) -> tuple[float, int, int]:
    o, r = cfg.optim, cfg.runtime
    gen = epoch_generator(r.seed, epoch)
    order = torch.randperm(len(train), generator=gen).to(device)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for i in range(n_steps):
        step = (epoch - 1) * n_steps + i
        lr = lr_at(o, step, n_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = order[i * o.batch_size:(i + 1) * o.batch_size]
        x = augment_batch(to_float(train.x[idx]), augment, gen)
        x = x.contiguous(memory_format=memory_format)
        y = train.y[idx]
        ctx = StepContext(epoch=epoch, iteration=step, label_smoothing=o.label_smoothing)
        with autocast(device, r.precision):
            out = defense.objective(model, x, y, ctx)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        loss = out.loss.detach()
        loss_sum += loss * len(idx)
        correct += (out.logits.detach().argmax(1) == y).sum()
        seen += len(idx)
        reporter.step(loss)  # a tensor: only a visible bar pays for the device sync
    total = loss_sum.item()
    if not math.isfinite(total):
        raise UserError(f"training diverged: the loss became {total} in epoch {epoch} "
                        f"(lr up to {o.lr:g}); lower --lr, or train in fp32.")
    return total, int(correct.item()), seen
