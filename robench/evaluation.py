"""Measuring a model: clean accuracy, and robust accuracy under a sequence of attacks.

The protocol is AutoAttack's: clean predictions first; then each attack in order runs only on
the points every earlier attack failed to break, so robust accuracy is the per-point worst
case over the whole set (a point counts as robust only if every attack fails on it), never an
average over attacks. The model is evaluated in eval mode and handed back unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robench.attacks import Attack
from robench.attacks.view import attack_view
from robench.data import Split, to_float
from robench.progress import Counter
from robench.runtime import autocast, evaluating


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


def accuracy(model: torch.nn.Module, split: Split, **kwargs) -> float | None:
    """Fraction of `split` classified correctly; None for an empty split."""
    if len(split) == 0:
        return None
    return (predict(model, split, **kwargs) == split.y.cpu()).float().mean().item()


# ---------------------------------------------------------------------------------------
# Choosing the points


def select_points(split: Split, n: int | None, seed: int) -> tuple[torch.Tensor, str]:
    """Indices of the points to evaluate and how they were chosen.

    RobustBench's convention is the first N test points, which is a fair sample only when the
    split is stored in random order. A split stored class by class (image folders) would give
    N points of the first classes, so it gets a seeded sample with classes in proportion.
    """
    total = len(split)
    n = total if n is None else n
    y = split.y.cpu()
    if n == total or not bool((y[1:] >= y[:-1]).all()):
        return torch.arange(n), "first"
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(total, generator=gen)
    # Interleave classes in the seeded order, so any prefix holds them in proportion.
    ranks = torch.empty(total)
    for cls in y.unique():
        members = order[y[order] == cls]
        ranks[members] = (torch.arange(len(members), dtype=torch.float) + 0.5) / len(members)
    chosen = order[torch.argsort(ranks[order], stable=True)[:n]]
    return chosen.sort().values, "stratified"


# ---------------------------------------------------------------------------------------
# Soundness checks


@torch.no_grad()
def check_unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor],
                    was_training: bool) -> None:
    """An evaluation that changed the model measured something else: that is a bug."""
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed or model.training != was_training:
        raise RuntimeError(f"the evaluation changed the model ({changed[:3]} ...); "
                           f"its result is not reported")


def is_stochastic(model: torch.nn.Module, x: torch.Tensor) -> bool:
    """Two forward passes of the same batch in eval mode differ: the model is randomised.

    Such a model needs attacks that average gradients over draws (EOT) and AutoAttack's
    'rand' version; evaluated as a deterministic model it looks more robust than it is.
    """
    with evaluating(model):
        return not torch.equal(model(x), model(x))


# ---------------------------------------------------------------------------------------
# The sequence of attacks


@dataclass
class StepResult:
    name: str
    params: dict[str, Any]
    robust_acc_after: float
    broken: int
    attacked: int
    seconds: float


@dataclass
class ProtocolState:
    """What a finished prefix of the attack sequence leaves: enough to resume after it."""

    clean_correct: torch.Tensor  # bool, per point
    robust: torch.Tensor  # bool, per point
    steps: list[StepResult] = field(default_factory=list)
    clean_seconds: float = 0.0


def clean_state(model, x, y, *, device, batch_size, precision) -> ProtocolState:
    t0 = time.perf_counter()
    preds = predict(model, Split(x, y), device=device, batch_size=batch_size,
                    precision=precision)
    correct = preds == y.cpu()
    return ProtocolState(clean_correct=correct, robust=correct.clone(),
                         clean_seconds=time.perf_counter() - t0)


def run_attacks(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                attacks: Sequence[Attack], state: ProtocolState, *, device: torch.device,
                batch_size: int, precision: str = "fp32", counter: Counter | None = None,
                on_step: Callable[[ProtocolState], None] | None = None,
                state_path: Callable[[int], Path] | None = None) -> ProtocolState:
    """Run `attacks` in order on the points still robust; skip those already in `state`.

    `state_path(i)` names a file where attack i may keep its own progress (AutoAttack does),
    so an interrupted evaluation resumes inside that attack too.
    """
    counter = counter or Counter(quiet=True)
    n = len(y)
    view = None  # built once, when the first attack that can use it runs
    for i in range(len(state.steps), len(attacks)):
        attack = attacks[i]
        idx = state.robust.nonzero().flatten()
        t0 = time.perf_counter()
        task = counter.task(attack.name, len(idx))
        still = torch.zeros(len(idx), dtype=torch.bool)
        whole = getattr(attack, "batches_itself", False)
        chunk = max(len(idx) if whole else batch_size, 1)
        for start in range(0, len(idx), chunk):
            sel = idx[start:start + chunk]
            xb = to_float(x[sel].to(device))
            yb = y[sel].to(device)
            with autocast(device, precision):
                if whole:  # AutoAttack: the authors' code on the model itself
                    if state_path is not None and hasattr(attack, "run_with_state"):
                        x_adv = attack.run_with_state(model, xb, yb, state_path(i))
                    else:
                        x_adv = attack(model, xb, yb)
                else:  # robench's own attacks search on the faster equivalent view
                    view = view if view is not None else attack_view(model)
                    x_adv = attack(view, xb, yb)
            ok = _correct(model, x_adv, yb, device, precision)
            report = getattr(attack, "report", None)
            if report is not None and whole:
                # After a resume, points broken before the interruption come back as clean
                # images; the attack's own per-point verdict keeps them broken.
                ok &= report.robust.cpu().bool()
            still[start:start + len(sel)] = ok
            counter.advance(task, len(sel))
        state.robust[idx[~still]] = False
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        state.steps.append(StepResult(
            name=attack.name, params=attack.describe(),
            robust_acc_after=state.robust.sum().item() / n, broken=int((~still).sum()),
            attacked=len(idx), seconds=time.perf_counter() - t0,
        ))
        if on_step is not None:
            on_step(state)
    return state


@torch.no_grad()
def _correct(model, x_adv, y, device, precision) -> torch.Tensor:
    with evaluating(model), autocast(device, precision):
        return (model(x_adv).argmax(1) == y).cpu()


def attacked_accuracy(model: torch.nn.Module, split: Split, attacks: Sequence[Attack], *,
                      device: torch.device, batch_size: int = 512,
                      precision: str = "fp32") -> list[float | None]:
    """For each attack, the fraction of `split` classified correctly as it is and under it.

    The attacks search on one faster equivalent view of the model (built once for all of
    them); every verdict is the model's own.
    """
    if len(split) == 0:
        return [None] * len(attacks)
    view = attack_view(model)
    robust = [0] * len(attacks)
    for start in range(0, len(split), batch_size):
        x = to_float(split.x[start:start + batch_size].to(device))
        y = split.y[start:start + batch_size].to(device)
        clean = _correct(model, x, y, device, precision)
        for i, attack in enumerate(attacks):
            with autocast(device, precision):
                x_adv = attack(view, x, y)
            robust[i] += int((clean & _correct(model, x_adv, y, device, precision)).sum())
    return [r / len(split) for r in robust]
