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
from robench.attacks import create_attack
from robench.augment import augment_batch, copies
from robench.config import TrainConfig
from robench.data import DatasetSplits, to_float
from robench.defenses import Defense, StepContext
from robench.errors import UserError
from robench.evaluation import accuracy, attacked_accuracy
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
    best: dict[str, Any] | None  # epoch and validation accuracies of best.safetensors


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
    n_steps = steps_per_epoch(len(train) * copies(augment), o.batch_size)

    start_epoch, seconds_so_far = 0, 0.0
    best: dict[str, Any] | None = None
    state_path = run_dir / runs.STATE
    if state_path.is_file():
        state = runs.load_state(state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start_epoch, seconds_so_far = state["epoch"], state["train_seconds"]
        best = state.get("best")
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
        last = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "seconds": seconds,
            "images_per_s": seen / seconds,
            **_validate(model, splits, cfg, device, epoch),
        }
        history = [*runs.read_metrics(run_dir), last]
        if catastrophic_overfitting(history):
            last["catastrophic_overfitting"] = True
            reporter.message(f"warning: catastrophic overfitting at epoch {epoch}: validation "
                             f"PGD accuracy fell to {last['val_robust_acc']:.1%} while FGSM "
                             f"accuracy rose to {last['val_fgsm_acc']:.1%}; best.safetensors "
                             f"keeps the weights from before it.")
        if _better(last, best, cfg.validation.select):
            best = {k: last[k] for k in ("epoch", "val_acc", "val_robust_acc")}
            runs.save_weights(model, run_dir / runs.BEST,
                              metadata={"epoch": str(epoch), "selected_on": "validation"})
        runs.append_metrics(run_dir, last)
        runs.save_state({
            "epoch": epoch,
            "train_seconds": seconds_so_far,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(),
            "best": best,
        }, state_path)
        reporter.end_epoch(last)
        for callback in callbacks:
            callback(last)
    return FitResult(epochs=o.epochs, train_seconds=seconds_so_far, last=last, best=best)


def _validate(model, splits, cfg: TrainConfig, device, epoch: int) -> dict[str, Any]:
    """Clean accuracy on the validation split every epoch; PGD and FGSM accuracy every
    `validation.every` epochs and at the last one (None in between)."""
    r, v = cfg.runtime, cfg.validation
    row: dict[str, Any] = {
        "val_acc": accuracy(model, splits.val, device=device, batch_size=r.eval_batch_size,
                            channels_last=r.channels_last),
        "val_robust_acc": None, "val_fgsm_acc": None,
    }
    if len(splits.val) and (epoch % v.every == 0 or epoch == cfg.optim.epochs):
        params = {"steps": v.steps} if v.attack in ("pgd", "cw") else {}
        attack = create_attack(v.attack, norm="Linf", eps=v.eps, seed=r.seed, params=params)
        fgsm = create_attack("fgsm", norm="Linf", eps=v.eps, seed=r.seed)
        row["val_robust_acc"], row["val_fgsm_acc"] = attacked_accuracy(
            model, splits.val, [attack, fgsm], device=device, batch_size=r.eval_batch_size,
            precision=r.precision)
    return row


def _better(row: dict[str, Any], best: dict[str, Any] | None, select: str) -> bool:
    """Is this epoch's model the best so far on validation (robust, then clean accuracy)?"""
    if row["val_acc"] is None:
        return False
    if row["val_robust_acc"] is None and select == "robust":
        return False
    if best is None:
        return True
    key = ((row["val_robust_acc"], row["val_acc"]) if select == "robust"
           else (row["val_acc"], row["val_robust_acc"] or 0.0))
    old = ((best["val_robust_acc"], best["val_acc"]) if select == "robust"
           else (best["val_acc"], best["val_robust_acc"] or 0.0))
    return key > old


def catastrophic_overfitting(history: list[dict[str, Any]]) -> bool:
    """Has validation PGD accuracy collapsed while FGSM accuracy rose (Wong et al. 2020)?

    The signature of fast-AT's failure: the model learns to defeat the single-step attack it
    trains on while a multi-step attack breaks it. Robench's rule: at the latest validation,
    PGD accuracy is below half its best so far (a best of at least 10 %), and FGSM accuracy
    is above what it was at that best epoch.
    """
    rows = [r for r in history if r.get("val_robust_acc") is not None]
    if len(rows) < 2:
        return False
    now, before = rows[-1], rows[:-1]
    peak = max(before, key=lambda r: r["val_robust_acc"])
    return (peak["val_robust_acc"] >= 0.1
            and now["val_robust_acc"] < 0.5 * peak["val_robust_acc"]
            and now["val_fgsm_acc"] > peak["val_fgsm_acc"])


def _train_epoch(model, defense, train, cfg, epoch, n_steps, optimizer, augment, device,
                 memory_format, reporter) -> tuple[float, int, int]:
    o, r = cfg.optim, cfg.runtime
    gen = epoch_generator(r.seed, epoch)
    # "augmix+clean" epochs hold every image twice: picks from len(train) on are AugMix copies.
    twice = copies(augment) == 2
    order = torch.randperm(len(train) * (2 if twice else 1), generator=gen).to(device)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    after_step = getattr(defense.objective, "after_step", None)
    for i in range(n_steps):
        step = (epoch - 1) * n_steps + i
        lr = lr_at(o, step, n_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        picks = order[i * o.batch_size:(i + 1) * o.batch_size]
        idx = picks % len(train) if twice else picks
        mixed = picks >= len(train) if twice else None
        x = augment_batch(to_float(train.x[idx]), augment, gen, mixed=mixed)
        x = x.contiguous(memory_format=memory_format)
        y = train.y[idx]
        ctx = StepContext(epoch=epoch, iteration=step, label_smoothing=o.label_smoothing)
        with autocast(device, r.precision):
            out = defense.objective(model, x, y, ctx)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if after_step is not None:  # an objective with a second update (group-wise inhibition)
            with autocast(device, r.precision):
                after_step(model, x, y, ctx, optimizer)
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
