"""The training loop: epochs of optimisation steps, validation, checkpoints, resume.

Every defense plugs in through its objective (a loss for a batch); the loop owns everything
else. Randomness of the data order and augmentation comes from a generator seeded by
(seed, epoch), and the global generator (dropout, noise) is saved with every checkpoint, so a
resumed run continues exactly where the interrupted one stopped. A checkpoint is written
after every epoch, and mid-epoch, at a step boundary, when a scheduler's signal asks the run
to stop (robench.preemption): the epoch generator's state and the epoch's sums go with it.

On several processes (robench.training.parallel) each step's global batch is drawn as one
process would draw it and each process trains on its rows; validation is split into whole
batches per process and its counts summed, so it measures exactly what one process would;
process 0 alone writes the run directory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robench import distributed, runs
from robench.augment import augment_batch, copies
from robench.config import TrainConfig
from robench.data import DatasetSplits, to_float
from robench.defenses import Defense, StepContext
from robench.distributed import World
from robench.errors import Preempted, UserError
from robench.preemption import StopRequests
from robench.progress import EpochReporter
from robench.runtime import autocast, rng_state, set_rng_state
from robench.schedules import lr_at
from robench.training.parallel import Replica, agree_on_buffers, replicate
from robench.training.validation import validate

# Called after each finished (and checkpointed) epoch with the epoch's metrics row.
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class FitResult:
    epochs: int
    train_seconds: float
    last: dict[str, Any]
    best: dict[str, Any] | None  # epoch and validation accuracies of best.safetensors
    wall_seconds: float = 0.0  # training and validation, over every session of the run
    images: int = 0  # images trained on, over every process and epoch


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


@dataclass
class EpochSums:
    """An epoch under way: the steps done and their sums (a mid-epoch checkpoint keeps it)."""

    epoch: int
    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    generator: torch.Tensor | None = None  # the epoch generator after `step` steps


def fit(model: torch.nn.Module, defense: Defense, splits: DatasetSplits, cfg: TrainConfig,
        run_dir: Path, *, device: torch.device, reporter: EpochReporter,
        callbacks: Sequence[EpochCallback] = (), world: World | None = None) -> FitResult:
    """Train `model` in place from the state in `run_dir` (if any) to the last epoch."""
    o, r = cfg.optim, cfg.runtime
    world = world or World()
    augment = cfg.data.augment or splits.info.augment
    memory_format = torch.channels_last if r.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    replica = replicate(model, defense.objective, world, device, sync_bn=r.sync_bn)
    optimizer = make_optimizer(model, cfg)
    train = splits.train.to(device)
    n_steps = steps_per_epoch(len(train) * copies(augment), o.batch_size * world.size)

    start_epoch, seconds_so_far, wall_before = 0, 0.0, 0.0
    wall_start = time.perf_counter()
    best: dict[str, Any] | None = None
    sums: EpochSums | None = None
    state_path = run_dir / runs.STATE
    if state_path.is_file():
        state = runs.load_state(state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        ranks = state.get("rng_ranks")
        set_rng_state(ranks[world.rank] if ranks else state["rng"])
        start_epoch, seconds_so_far = state["epoch"], state["train_seconds"]
        wall_before = state.get("wall_seconds", 0.0)
        best = state.get("best")
        if state.get("partial"):
            sums = EpochSums(**state["partial"])
        # Lines of an epoch that finished but was not checkpointed are recomputed.
        if world.main:
            runs.write_metrics(run_dir, [m for m in runs.read_metrics(run_dir)
                                         if m["epoch"] <= start_epoch])
    elif world.rank > 0:  # each process draws its own noise; process 0 as one process would
        seed = r.seed * 1_000_003 + world.rank
        torch.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(seed)
    reporter.start(start_epoch)

    def checkpoint(epoch: int, partial: EpochSums | None = None) -> None:
        ranks = distributed.gather(rng_state())  # every process's own generators
        if not world.main:
            return
        runs.save_state({
            "epoch": epoch, "train_seconds": seconds_so_far,
            "wall_seconds": wall_before + time.perf_counter() - wall_start,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "rng": ranks[0],
            "rng_ranks": ranks if world.distributed else None,
            "best": best, "partial": None if partial is None else vars(partial),
        }, state_path)

    last: dict[str, Any] = {}
    with StopRequests() as stop:
        for epoch in range(start_epoch + 1, o.epochs + 1):
            reporter.start_epoch(epoch, n_steps)
            sums = sums if sums is not None and sums.epoch == epoch else EpochSums(epoch)
            t0 = time.perf_counter()
            done = _train_epoch(model, replica, train, cfg, sums, n_steps, optimizer, augment,
                                device, memory_format, reporter, stop)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - t0
            sums.seconds += elapsed
            seconds_so_far += elapsed
            # One model on every process: BatchNorm statistics are each process's own.
            agree_on_buffers(model, world)
            if not done:  # a scheduler's signal: checkpoint here, then stop
                checkpoint(epoch - 1, sums)
                raise Preempted(f"training stopped by {stop.name} at step {sums.step} of "
                                f"epoch {epoch}, checkpointed there; continue it with: "
                                f"robench train --resume {run_dir}", stop.signum)
            last = {
                "epoch": epoch,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": sums.loss_sum / sums.seen,
                "train_acc": sums.correct / sums.seen,
                "seconds": sums.seconds,
                "images_per_s": sums.seen / sums.seconds,
                **validate(model, splits, cfg, device, epoch, world),
            }
            sums = None
            history = [*runs.read_metrics(run_dir), last] if world.main else [last]
            if catastrophic_overfitting(history):
                last["catastrophic_overfitting"] = True
                reporter.message(f"warning: catastrophic overfitting at epoch {epoch}: "
                                 f"validation PGD accuracy fell to "
                                 f"{last['val_robust_acc']:.1%} while FGSM accuracy rose to "
                                 f"{last['val_fgsm_acc']:.1%}; best.safetensors keeps the "
                                 f"weights from before it.")
            if _better(last, best, cfg.validation.select):
                best = {k: last[k] for k in ("epoch", "val_acc", "val_robust_acc")}
                if world.main:
                    runs.save_weights(model, run_dir / runs.BEST,
                                      metadata={"epoch": str(epoch), "selected_on": "validation"})
            if world.main:
                runs.append_metrics(run_dir, last)
            checkpoint(epoch)
            reporter.end_epoch(last)
            for callback in callbacks:
                callback(last)
    return FitResult(epochs=o.epochs, train_seconds=seconds_so_far, last=last, best=best,
                     wall_seconds=wall_before + time.perf_counter() - wall_start,
                     images=o.epochs * n_steps * o.batch_size * world.size)


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


def _train_epoch(model, replica: Replica, train, cfg, sums: EpochSums, n_steps, optimizer,
                 augment, device, memory_format, reporter, stop: StopRequests) -> bool:
    """The epoch's steps from `sums.step` on, added to `sums`; False if a stop was asked
    (the sums and generator then stand after the last finished step)."""
    o, r = cfg.optim, cfg.runtime
    epoch = sums.epoch
    gen = epoch_generator(r.seed, epoch)
    # "augmix+clean" epochs hold every image twice: picks from len(train) on are AugMix copies.
    twice = copies(augment) == 2
    order = torch.randperm(len(train) * (2 if twice else 1), generator=gen).to(device)
    if sums.generator is not None:  # resumed mid-epoch: the draws continue from that step
        gen.set_state(sums.generator)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    global_batch = o.batch_size * replica.world.size
    after_step = getattr(replica.objective, "after_step", None)
    stopped = False
    for i in range(sums.step, n_steps):
        step = (epoch - 1) * n_steps + i
        lr = lr_at(o, step, n_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # The global batch, drawn and augmented as one process would; this process's rows.
        picks = order[i * global_batch:(i + 1) * global_batch]
        idx = picks % len(train) if twice else picks
        mixed = picks >= len(train) if twice else None
        x = augment_batch(to_float(train.x[idx]), augment, gen, mixed=mixed)
        x = replica.part(x).contiguous(memory_format=memory_format)
        y = replica.part(train.y[idx])
        ctx = StepContext(epoch=epoch, iteration=step, label_smoothing=o.label_smoothing)
        with autocast(device, r.precision):
            out = replica.step(model, x, y, ctx)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if after_step is not None:  # an objective with a second update (group-wise inhibition)
            with autocast(device, r.precision):
                replica.second_step(model, x, y, ctx, optimizer)
        loss = out.loss.detach()
        loss_sum += loss * len(y)
        correct += (out.logits.detach().argmax(1) == y).sum()
        seen += len(y)
        reporter.step(loss)  # a tensor: only a visible bar pays for the device sync
        if _stop_asked(stop, replica, device):
            sums.step, stopped = i + 1, True
            break
    else:
        sums.step = n_steps
    totals = replica.total(torch.stack([loss_sum.double(), correct.double(),
                                        torch.tensor(float(seen), device=device).double()]))
    total_loss = float(totals[0])
    if not math.isfinite(total_loss):
        raise UserError(f"training diverged: the loss became {total_loss} in epoch {epoch} "
                        f"(lr up to {o.lr:g}); lower --lr, or train in fp32.")
    sums.loss_sum += total_loss
    sums.correct += int(totals[1])
    sums.seen += int(totals[2])
    sums.generator = gen.get_state()
    return not stopped


def _stop_asked(stop: StopRequests, replica: Replica, device: torch.device) -> bool:
    """Has a signal asked to stop? On several processes, has it reached any of them (all
    then stop after the same step)."""
    if not replica.world.distributed:
        return stop.requested
    return bool(replica.total(torch.tensor(float(stop.requested), device=device)) > 0)
