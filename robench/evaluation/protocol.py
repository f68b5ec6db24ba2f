"""The protocol: clean verdicts, then each attack on the points still robust, judged by one judge.

AutoAttack's cascade: clean predictions first; then each attack in order runs only on the
points every earlier attack failed to break, so robust accuracy is the per-point worst case
over the whole set (a point counts as robust only if every attack fails on it), never an
average over attacks.

Every verdict is the judge's (robench.attacks.judge: the real model, eval mode, fp32). An
attack's search may run on a stand-in (the checked view, bf16); what it claims about a point
is then only a claim:
- a point the judge finds misclassified is broken, whatever the search said;
- a point the search claims broken but the judge finds correct is *disputed*: the same
  attack runs again on that point on the real model in fp32, and that run's result stands;
- when the search itself ran on the real model in fp32 its claims are observed
  misclassifications of the model and count as broken (for a randomised model, the draw an
  attack saw misclassify counts even if the judge's later draws do not).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robench.attacks import Attack
from robench.attacks.autoattack import AutoAttackReport, Findings
from robench.attacks.base import Found
from robench.attacks.judge import Judge
from robench.data import to_float
from robench.evaluation.blocks import (
    CLEAN_PASS,
    attack_pass,
    block_points,
    block_seed,
    covered,
    n_blocks,
    reseed,
)
from robench.evaluation.randomness import differs
from robench.evaluation.standin import Search, Searchers
from robench.progress import Counter


@dataclass
class StepResult:
    name: str
    params: dict[str, Any]
    robust_acc_after: float
    broken: int
    attacked: int
    seconds: float
    precision: str = "fp32"
    searched_on: str = "model"
    disputed: int = 0


@dataclass
class ProtocolState:
    """What a finished prefix of the protocol leaves on the points it covers: enough to
    resume after it, and (for a shard) to merge with the other shards."""

    clean_correct: torch.Tensor  # bool, per point
    robust: torch.Tensor  # bool, per point
    steps: list[StepResult] = field(default_factory=list)
    clean_seconds: float = 0.0
    clean_votes: int = 0  # correct single draws summed over the clean pass (randomised models)
    covered: torch.Tensor | None = None  # bool per point: evaluated here (None: every point)
    robust_after: list[int] = field(default_factory=list)  # robust covered points, per step
    findings: list[dict | None] = field(default_factory=list)  # an attack's own checks, per step
    # The attack under way: blocks finished and what they found (resumed from here).
    progress: dict[str, Any] | None = None

    def covered_mask(self) -> torch.Tensor:
        if self.covered is None:
            return torch.ones(len(self.robust), dtype=torch.bool)
        return self.covered


@dataclass
class CleanPass:
    state: ProtocolState
    repeat_differs: bool  # a second pass gave other logits: the model is randomised


def _blocks(n: int, batch_size: int, blocks: Sequence[int] | None) -> list[int]:
    return list(range(n_blocks(n, batch_size))) if blocks is None else list(blocks)


@torch.no_grad()
def clean_pass(judge: Judge, x: torch.Tensor, y: torch.Tensor, *, device: torch.device,
               batch_size: int, check_repeat: bool = False,
               blocks: Sequence[int] | None = None, seed: int | None = None) -> CleanPass:
    """The judge's clean verdict on every point of `blocks` (default: all); with
    `check_repeat`, a deterministic model's pass is made twice and compared, which finds
    randomness that touches only some inputs. With `seed`, each block's generators are seeded
    from it (robench.evaluation.blocks)."""
    t0 = time.perf_counter()
    n = len(y)
    blocks = _blocks(n, batch_size, blocks)
    correct = torch.zeros(n, dtype=torch.bool)
    votes, repeat_differs = 0, False
    for b in blocks:
        if seed is not None:
            reseed(block_seed(seed, CLEAN_PASS, b), device)
        part = block_points(b, batch_size, n)
        xb, yb = to_float(x[part].to(device)), y[part].to(device)
        if check_repeat:
            first, second = judge.logits(xb), judge.logits(xb)
            repeat_differs = repeat_differs or differs([first, second])
            hits = (first.argmax(1) == yb).long()
        else:
            hits = judge.votes(xb, yb)
        correct[part] = (hits == judge.draws).cpu()
        votes += int(hits.sum())
    state = ProtocolState(clean_correct=correct, robust=correct.clone(),
                          clean_seconds=time.perf_counter() - t0, clean_votes=votes,
                          covered=covered(blocks, batch_size, n))
    return CleanPass(state, repeat_differs)


def _verdict(found: Found, judge: Judge, y: torch.Tensor, exact: bool) -> torch.Tensor:
    ok = judge.correct(found.x_adv, y)
    if found.judged_broken is not None:
        ok &= ~found.judged_broken.to(ok.device)
    if exact and found.claimed is not None:
        ok &= ~found.claimed.to(ok.device)
    return ok


def _search(attack: Attack, module, x, y, judge: Judge, state_file: Path | None) -> Found:
    if state_file is not None and hasattr(attack, "run_with_state"):
        return attack.run_with_state(module, x, y, state_file, judge=judge)
    return attack.search(module, x, y, judge=judge)


def attack_batch(attack: Attack, search: Search, exact: Search, x: torch.Tensor,
                 y: torch.Tensor, judge: Judge,
                 state_file: Path | None = None) -> tuple[torch.Tensor, int]:
    """(bool per point: still robust, points disputed) for one batch under one attack."""
    found = _search(attack, search.module, x, y, judge, state_file)
    ok = _verdict(found, judge, y, search.exact)
    if search.exact or found.claimed is None:
        return ok, 0
    dispute = found.claimed.to(ok.device) & ok
    n_disputed = int(dispute.sum())
    if n_disputed:
        report = getattr(attack, "report", None)  # the main run's, for the record
        again = attack.search(exact.module, x[dispute], y[dispute], judge=judge)
        if report is not None:
            attack.report = report
        ok[dispute] = _verdict(again, judge, y[dispute], exact=True)
    return ok, n_disputed


def attack_points(attack: Attack, x: torch.Tensor, y: torch.Tensor, points: torch.Tensor, *,
                  searchers: Searchers, judge: Judge, device: torch.device, batch_size: int,
                  state_file: Path | None = None,
                  advance: Callable[[int], None] | None = None) -> tuple[torch.Tensor, int]:
    """(bool per point of `points`: still robust, points disputed): `attack` on those points,
    batch by batch (all at once for AutoAttack, which batches itself)."""
    search, exact = searchers.for_attack(attack), searchers.exact()
    whole = getattr(attack, "batches_itself", False)
    chunk = max(len(points) if whole else batch_size, 1)
    still = torch.zeros(len(points), dtype=torch.bool)
    disputed = 0
    for start in range(0, len(points), chunk):
        sel = points[start:start + chunk]
        ok, d = attack_batch(attack, search, exact, to_float(x[sel].to(device)),
                             y[sel].to(device), judge, state_file if whole else None)
        still[start:start + len(sel)] = ok.cpu()
        disputed += d
        if advance is not None:
            advance(len(sel))
    return still, disputed


def run_attacks(x: torch.Tensor, y: torch.Tensor, attacks: Sequence[Attack],
                state: ProtocolState, *, searchers: Searchers, judge: Judge,
                device: torch.device, batch_size: int, counter: Counter | None = None,
                on_progress: Callable[[ProtocolState], None] | None = None,
                state_path: Callable[[int, int], Path] | None = None,
                blocks: Sequence[int] | None = None, seed: int | None = None) -> ProtocolState:
    """Run `attacks` in order on the points still robust, block by block; skip what `state`
    has already done (finished attacks, and finished blocks of the attack under way).

    One batch is the surviving points of one block of `batch_size` points; with `seed`, each
    (attack, block) has its own seed (robench.evaluation.blocks), so a block's result does
    not depend on the other blocks. `state_path(i, block)` names a file where attack i may
    keep its progress inside a block (AutoAttack does), so an interrupted evaluation resumes
    inside that attack too; `on_progress` is called after each block and after each attack
    (once, not twice, where the two coincide), to save the state.
    """
    counter = counter or Counter(quiet=True)
    n = len(y)
    blocks = _blocks(n, batch_size, blocks)
    for i in range(len(state.steps), len(attacks)):
        attack = attacks[i]
        search, exact = searchers.for_attack(attack), searchers.exact()
        progress = state.progress or {"blocks_done": 0, "broken": 0, "attacked": 0,
                                      "disputed": 0, "seconds": 0.0, "findings": None}
        state.progress = progress
        todo = blocks[progress["blocks_done"]:]
        task = counter.task(attack.name, sum(
            int(state.robust[block_points(b, batch_size, n)].sum()) for b in todo))
        for j, b in enumerate(todo):
            t0 = time.perf_counter()
            part = block_points(b, batch_size, n)
            idx = part.start + state.robust[part].nonzero().flatten()
            if len(idx):
                if seed is not None:
                    reseed(block_seed(seed, attack_pass(i), b), device)
                inner = state_path(i, b) if state_path is not None else None
                ok, disputed = attack_batch(
                    attack, search, exact, to_float(x[idx].to(device)), y[idx].to(device),
                    judge, inner if getattr(attack, "batches_itself", False) else None)
                ok = ok.cpu()
                state.robust[idx[~ok]] = False
                progress["broken"] += int((~ok).sum())
                progress["attacked"] += len(idx)
                progress["disputed"] += disputed
                progress["findings"] = _add_findings(progress["findings"], attack)
                counter.advance(task, len(idx))
                if inner is not None:
                    unlink_states(inner)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            progress["seconds"] += time.perf_counter() - t0
            progress["blocks_done"] += 1
            if on_progress is not None and j < len(todo) - 1:  # the last: saved with its step
                on_progress(state)
        state.steps.append(StepResult(
            name=attack.name, params=attack.describe(),
            robust_acc_after=int(state.robust.sum()) / n, broken=progress["broken"],
            attacked=progress["attacked"], seconds=progress["seconds"],
            precision=search.precision, searched_on=search.on, disputed=progress["disputed"]))
        state.robust_after.append(int(state.robust.sum()))
        state.findings.append(progress["findings"])
        state.progress = None
        if on_progress is not None:
            on_progress(state)
    return state


def _add_findings(total: dict | None, attack: Attack) -> dict | None:
    """What an attack's own checks found on this block, added to the earlier blocks'."""
    report = getattr(attack, "report", None)
    if not isinstance(report, AutoAttackReport):
        return total
    found = Findings.of_report(report)
    return (found if total is None else Findings.from_dict(total).plus(found)).to_dict()


def unlink_states(*paths: Path) -> None:
    """Remove state files and any sidecar an attack keeps beside one."""
    for path in paths:
        path.unlink(missing_ok=True)
        for extra in path.parent.glob(path.name + ".*"):
            extra.unlink(missing_ok=True)

