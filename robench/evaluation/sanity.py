"""`--sanity`: two checks from the field's checklists, run on a subset of the points.

1. A much stronger PGD (100 steps, 5 restarts, EOT for a randomised model) on every
   clean-correct point of the subset. Any point it broke that the protocol left robust
   (b > 0) flags `stronger-pgd-broke-more`: one such point is a robustness the protocol
   reported and the model does not have, whether or not b is significant against the points
   only the protocol broke (c). The flag's note states the drop b/n on the subset's n points
   with its 95 % Wilson interval, which the record keeps too; the one-sided exact sign test of
   b against c (McNemar's) is kept in the record as well, as a measure, never as a gate.
   Points PGD broke count as broken in the record: robust accuracy is the per-point worst case
   over everything that was run.
2. The same PGD, without a random start, at the largest budget the input space allows (Linf
   1, L2 the diagonal of the image cube), where any classifier with useful gradients falls to
   about 0 %: more than 1 % of the subset's points left correct flags `large-eps-not-broken`.
   That budget is another threat model, so its number goes into the record, not into the
   robust accuracy.
Both run block by block, each block with its own seed (robench.evaluation.blocks), so the
counts of N shards add up to those of one process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from robench.attacks import Attack, create_attack
from robench.attacks.judge import Judge
from robench.data import to_float
from robench.evaluation.blocks import block_points, block_seed, n_blocks, reseed
from robench.evaluation.plan import EOT_DRAWS
from robench.evaluation.protocol import ProtocolState, StepResult, attack_batch
from robench.evaluation.standin import Searchers
from robench.records import SanityResult, wilson_interval
from robench.threat import largest_norm

STEPS, RESTARTS = 100, 5
LARGE_EPS_SURVIVORS = 0.01  # fraction of the attacked points that may stay correct
STRONGER = "stronger-pgd-broke-more"
LARGE = "large-eps-not-broken"


@dataclass
class Sanity:
    result: SanityResult
    step: StepResult  # the stronger PGD as a step of the sequence (it may break points)
    flags: list[str]
    notes: list[str] = field(default_factory=list)


def sign_test(b: int, c: int) -> float:
    """P(X >= b) for X ~ Binomial(b + c, 1/2): how surprising b is if b and c are alike."""
    n = b + c
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(b, n + 1)) / 2 ** n


def _attacks(norm: str, eps: float, seed: int, stochastic: bool,
             shape: tuple[int, ...]) -> tuple[Attack, Attack]:
    eot = {"eot_iter": EOT_DRAWS} if stochastic else {}
    strong = create_attack("pgd", norm=norm, eps=eps, seed=seed,
                           params={"steps": STEPS, "restarts": RESTARTS, **eot})
    big = largest_norm(norm, shape)
    large = create_attack("pgd", norm=norm, eps=big, seed=seed,
                          params={"steps": STEPS, "random_start": False,
                                  "step_size": big / 10, **eot})
    return strong, large


def sanity_pass(x: torch.Tensor, y: torch.Tensor, state: ProtocolState, *, norm: str,
                eps: float, seed: int, n_points: int, stochastic: bool, searchers: Searchers,
                judge: Judge, device: torch.device, batch_size: int, first_pass: int,
                blocks: Sequence[int] | None = None) -> dict[str, Any]:
    """Run both checks, block by block, on the clean-correct points among the first
    `n_points`; marks newly broken points in `state` and returns the counts (summable over
    shards; `sanity_result` turns them into the record's part)."""
    t0 = time.perf_counter()
    n = len(y)
    m = min(n_points, n)
    strong, large = _attacks(norm, eps, seed, stochastic, tuple(x.shape[1:]))
    search = searchers.for_attack(strong)
    counts = {"n_points": m, "extra_broken": 0, "only_protocol": 0, "large_eps_robust": 0,
              "attacked": 0, "seconds": 0.0, "precision": search.precision,
              "searched_on": search.on}
    blocks = range(n_blocks(n, batch_size)) if blocks is None else blocks
    for b in blocks:
        part = block_points(b, batch_size, n)
        chosen = state.clean_correct[part].clone()
        chosen[max(0, m - part.start):] = False
        points = part.start + chosen.nonzero().flatten()
        if not len(points):
            continue
        xb, yb = to_float(x[points].to(device)), y[points].to(device)
        results = []
        for k, attack in enumerate((strong, large)):
            reseed(block_seed(seed, first_pass + k, b), device)
            ok, _ = attack_batch(attack, searchers.for_attack(attack), searchers.exact(), xb,
                                 yb, judge)
            results.append(ok.cpu())
        ok, ok_large = results
        protocol_robust = state.robust[points]
        counts["extra_broken"] += int((protocol_robust & ~ok).sum())
        counts["only_protocol"] += int((~protocol_robust & ok).sum())
        counts["large_eps_robust"] += int(ok_large.sum())
        counts["attacked"] += len(points)
        state.robust[points[protocol_robust & ~ok]] = False
    counts["seconds"] = time.perf_counter() - t0
    return counts


def add_counts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two shards' sanity counts as one."""
    return {k: (a[k] + b[k] if k in _SUMMED else a[k]) for k in a}


_SUMMED = ("extra_broken", "only_protocol", "large_eps_robust", "attacked", "seconds")


def sanity_result(counts: dict[str, Any], *, norm: str, eps: float, seed: int,
                  stochastic: bool, shape: tuple[int, ...], robust_after: int,
                  n: int) -> Sanity:
    """The record's sanity part from the counts over every point."""
    strong, large = _attacks(norm, eps, seed, stochastic, shape)
    b, c = counts["extra_broken"], counts["only_protocol"]
    attacked, survivors = counts["attacked"], counts["large_eps_robust"]
    p = sign_test(b, c)
    m = counts["n_points"]
    drop, drop_ci = (b / m if m else 0.0), wilson_interval(b, m)
    flags, notes = [], []
    if b > 0:
        flags.append(STRONGER)
        notes.append(stronger_note(b, m, drop_ci))
    if survivors > LARGE_EPS_SURVIVORS * attacked:
        flags.append(LARGE)
    result = SanityResult(n_points=counts["n_points"], attack=strong.describe(),
                          extra_broken=b, only_protocol=c, p_value=p, large_eps=large.eps,
                          large_eps_attack=large.describe(), large_eps_robust=survivors,
                          large_eps_attacked=attacked, implied_drop=drop,
                          implied_drop_ci95=drop_ci)
    step = StepResult(name="sanity-pgd", params=strong.describe(),
                      robust_acc_after=robust_after / n, broken=b, attacked=attacked,
                      seconds=counts["seconds"], precision=counts["precision"],
                      searched_on=counts["searched_on"])
    return Sanity(result=result, step=step, flags=flags, notes=notes)


def stronger_note(b: int, n: int, interval: list[float]) -> str:
    """The sentence beside `stronger-pgd-broke-more`: how much robustness the protocol alone
    over-reported on the subset, and how uncertain that figure is."""
    low, high = interval
    return (f"--sanity: the stronger PGD broke {b}/{n} of the subset's points that the "
            f"attacks had left robust, a drop of {b / n:.4f} in robust accuracy (95 % Wilson "
            f"interval [{low:.4f}, {high:.4f}]); they count as broken here, but the points "
            f"outside the subset were not searched as hard")
