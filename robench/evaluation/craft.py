"""`robench attack`: adversarial examples for N test points, checked and saved.

The examples are saved with the clean and adversarial predictions, which are the model's own
in fp32 whatever precision the search ran in, and every example is checked against the
eps-ball and [0, 1] before the numbers are reported. Nothing is saved if the model changed
while the examples were made (robench.evaluation.unchanged).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from robench import runs
from robench.atomic import atomic_path
from robench.attacks import create_attack, perturbation_norms
from robench.attacks.judge import Judge
from robench.attacks.view import InPrecision
from robench.data import to_float
from robench.errors import UserError
from robench.evaluation.points import select_points
from robench.evaluation.target import Target
from robench.evaluation.unchanged import check_unchanged, nothing_written_if_changed, snapshot
from robench.progress import Counter
from robench.records import record_key
from robench.runtime import resolve_device, warn_if_slow
from robench.threat import default_eps, parse_eps


@dataclass
class AttackOutcome:
    path: Path
    attack: dict[str, Any]
    n: int
    clean_correct: int
    success_rate: float  # of the points classified correctly before the attack
    linf_mean: float
    linf_max: float
    l2_mean: float
    l2_max: float
    in_ball: bool
    in_range: bool


def craft(target: Target, name: str, **options: Any) -> AttackOutcome:
    """Adversarial examples for the first N test points, saved to adv/<key>.safetensors
    (the options: those of `_craft`); none are saved if the model changed meanwhile."""
    with nothing_written_if_changed(target.adv_dir):
        return _craft(target, name, **options)


def _craft(target: Target, name: str, *, params: dict[str, Any] | None = None,
           norm: str = "Linf", eps: str | None = None, n_examples: int | None = 100,
           batch_size: int = 500, seed: int = 0, selection_seed: int = 0, device: str = "auto",
           precision: str = "fp32", quiet: bool = False) -> AttackOutcome:
    """The search runs in `precision`; the saved predictions are the model's in fp32."""
    shape = tuple(target.test.x.shape[1:])
    eps_ = (parse_eps(eps, norm=norm, shape=shape) if eps is not None
            else default_eps(target.info.name, norm, shape))
    attack = create_attack(name, norm=norm, eps=eps_.value, seed=seed, params=params)
    n_avail = len(target.test)
    if n_examples is not None and not 0 < n_examples <= n_avail:
        raise UserError(f"--n-examples {n_examples} must be between 1 and the {n_avail} test "
                        f"points of {target.info.name}.")
    runs.ensure_writable_dir(target.adv_dir)
    dev = resolve_device(device)
    warn_if_slow(dev, precision)
    idx, method = select_points(target.test, n_examples, selection_seed)
    x, y = to_float(target.test.x[idx]), target.test.y[idx]
    model = target.model.to(dev)
    before = snapshot(model)
    judge = Judge(model, batch_size=batch_size)
    searcher = model if precision == "fp32" else InPrecision(model, precision)
    clean_pred = judge.predict(x.to(dev)).cpu()
    advs = []
    with Counter(quiet=quiet) as counter:
        task = counter.task(name, len(y))
        for s in range(0, len(y), batch_size):
            advs.append(attack(searcher, x[s:s + batch_size].to(dev),
                               y[s:s + batch_size].to(dev), judge=judge).cpu())
            counter.advance(task, len(advs[-1]))
    x_adv = torch.cat(advs)
    adv_pred = judge.predict(x_adv.to(dev)).cpu()
    linf, l2 = perturbation_norms(x, x_adv)
    size = linf if norm == "Linf" else l2
    correct = clean_pred == y
    fooled = correct & (adv_pred != y)
    key = record_key([name], norm, eps_.slug, len(y),
                     {"attack": attack.describe(), "selection": method,
                      "selection_seed": selection_seed, "seed": seed,
                      "model": dataclasses.asdict(target.source), "precision": precision})
    check_unchanged(model, before)  # before the examples are saved
    path = target.adv_dir / f"{key}.safetensors"
    with atomic_path(path) as tmp:
        save_file({"x_adv": x_adv.contiguous(), "labels": y.contiguous(),
                   "indices": idx.contiguous(), "clean_pred": clean_pred.contiguous(),
                   "adv_pred": adv_pred.contiguous()}, tmp,
                  metadata={"attack": json.dumps(attack.describe()), "selection": method,
                            "dataset": target.info.name, "model": target.label})
    n_correct = int(correct.sum())
    return AttackOutcome(
        path=path, attack=attack.describe(), n=len(y), clean_correct=n_correct,
        success_rate=int(fooled.sum()) / n_correct if n_correct else 0.0,
        linf_mean=linf.mean().item(), linf_max=linf.max().item(), l2_mean=l2.mean().item(),
        l2_max=l2.max().item(), in_ball=bool((size <= eps_.value + 1e-5).all()),
        in_range=bool(((x_adv >= 0) & (x_adv <= 1)).all()),
    )
