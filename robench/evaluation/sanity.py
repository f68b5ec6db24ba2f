"""`--sanity`: two checks from the field's checklists, run on a subset of the points.

1. A much stronger PGD (100 steps, 5 restarts, EOT for a randomised model) on every
   clean-correct point of the subset. If the protocol was the stronger search, points it left
   robust and PGD broke (b) should be no more frequent than the reverse (c); the one-sided
   exact sign test of b against c (McNemar's) flags `stronger-pgd-broke-more` at p < 0.05.
   Points PGD broke count as broken in the record whatever the test says: robust accuracy is
   the per-point worst case over everything that was run.
2. The same PGD, without a random start, at the largest budget the input space allows (Linf
   1, L2 the diagonal of the image cube), where any classifier with useful gradients falls to
   about 0 %: more than 1 % of the subset's points left correct flags `large-eps-not-broken`.
   That budget is another threat model, so its number goes into the record, not into the
   robust accuracy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from robench.attacks import create_attack
from robench.attacks.judge import Judge
from robench.evaluation.plan import EOT_DRAWS
from robench.evaluation.protocol import ProtocolState, StepResult, attack_points
from robench.evaluation.standin import Searchers
from robench.records import SanityResult
from robench.threat import largest_norm

STEPS, RESTARTS = 100, 5
P_VALUE = 0.05
LARGE_EPS_SURVIVORS = 0.01  # fraction of the attacked points that may stay correct
STRONGER = "stronger-pgd-broke-more"
LARGE = "large-eps-not-broken"


@dataclass
class Sanity:
    result: SanityResult
    step: StepResult  # the stronger PGD as a step of the sequence (it may break points)
    flags: list[str]


def sign_test(b: int, c: int) -> float:
    """P(X >= b) for X ~ Binomial(b + c, 1/2): how surprising b is if b and c are alike."""
    n = b + c
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(b, n + 1)) / 2 ** n


def sanity_pass(x: torch.Tensor, y: torch.Tensor, state: ProtocolState, *, norm: str,
                eps: float, seed: int, n_points: int, stochastic: bool, searchers: Searchers,
                judge: Judge, device: torch.device, batch_size: int) -> Sanity:
    """Run both checks on the first `n_points` points; marks newly broken points in `state`."""
    t0 = time.perf_counter()
    m = min(n_points, len(y))
    points = state.clean_correct[:m].nonzero().flatten()
    eot = {"eot_iter": EOT_DRAWS} if stochastic else {}
    strong = create_attack("pgd", norm=norm, eps=eps, seed=seed,
                           params={"steps": STEPS, "restarts": RESTARTS, **eot})
    run = dict(searchers=searchers, judge=judge, device=device, batch_size=batch_size)
    ok, _ = attack_points(strong, x, y, points, **run)
    protocol_robust = state.robust[points]
    b = int((protocol_robust & ~ok).sum())
    c = int((~protocol_robust & ok).sum())
    state.robust[points[protocol_robust & ~ok]] = False
    big = largest_norm(norm, tuple(x.shape[1:]))
    large = create_attack("pgd", norm=norm, eps=big, seed=seed,
                          params={"steps": STEPS, "random_start": False,
                                  "step_size": big / 10, **eot})
    ok_large, _ = attack_points(large, x, y, points, **run)
    p = sign_test(b, c)
    flags = []
    if b > 0 and p < P_VALUE:
        flags.append(STRONGER)
    if int(ok_large.sum()) > LARGE_EPS_SURVIVORS * len(points):
        flags.append(LARGE)
    result = SanityResult(n_points=m, attack=strong.describe(), extra_broken=b,
                          only_protocol=c, p_value=p, large_eps=big,
                          large_eps_attack=large.describe(),
                          large_eps_robust=int(ok_large.sum()), large_eps_attacked=len(points))
    search = searchers.for_attack(strong)
    step = StepResult(name="sanity-pgd", params=strong.describe(),
                      robust_acc_after=int(state.robust.sum()) / len(y), broken=b,
                      attacked=len(points), seconds=time.perf_counter() - t0,
                      precision=search.precision, searched_on=search.on)
    return Sanity(result=result, step=step, flags=flags)
