"""White-box gradient attacks: FGSM, PGD (Linf and L2, restarts, EOT) and CW-inf.

All three are the projected step of robench.attacks.steps. FGSM is one step of size eps;
CW-inf is PGD on the CW margin. Every restart keeps, per point, its best iterate (the largest
CW margin on the real model in fp32, also where the search runs on a stand-in), so a point
fooled at any step counts as fooled, not only one fooled at the last step. Which points a
restart broke is the judge's verdict (the real model, fp32), never the stand-in's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from robench.attacks.base import Attack, Found, ThreatModel, register_attack
from robench.attacks.judge import Judge
from robench.attacks.losses import LOSSES
from robench.attacks.steps import BestIterate, ascend, make_generator, random_start
from robench.errors import UserError


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def _check_loss(attack: str, loss: str) -> None:
    _require(loss in LOSSES,
             f"{attack}.loss {loss!r} is not one of {', '.join(LOSSES)}.")


def _check_eot(attack: str, eot_iter: int) -> None:
    _require(eot_iter >= 1, f"{attack}.eot_iter must be >= 1, got {eot_iter}.")


@contextlib.contextmanager
def _gradients_on() -> Iterator[None]:
    """Autograd on even if the caller evaluates under `no_grad` or `inference_mode`."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def _iterate_judge(model: nn.Module, judge: Judge | None) -> Judge | None:
    """The judge that picks each restart's best iterate: None where the search runs on the
    judge's own model (its logits are then the real model's already), else the judge."""
    return None if judge is None or judge.model is model else judge


def _inputs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 images and labels autograd may save: tensors made under `inference_mode` cannot
    be saved for backward (the losses keep y), so those are copied; others are not."""
    x, y = x.detach().float(), y.detach()
    return ((x.clone() if x.is_inference() else x), (y.clone() if y.is_inference() else y))


@dataclass
class FGSMParams:
    random_start: bool = False
    loss: str = "ce"
    # 1 for a deterministic model; robench sets 20 for a randomised one (EOT).
    eot_iter: int = 1


@register_attack("fgsm", "Fast gradient sign method: one step of size eps (Goodfellow et al. 2015)")
class FGSM(Attack):
    """One step of size eps, optionally from a uniform random start (projected afterwards).

    The start and the stepped point are both candidates: the one with the larger margin is
    returned (a step that makes a point less adversarial than its random start does not
    undo the start).
    """

    params_cls = FGSMParams
    randomized = True  # with random_start; otherwise the seed is simply unused

    def __init__(self, threat: ThreatModel, params: FGSMParams | None = None, *, seed: int = 0):
        super().__init__(threat, params, seed=seed)
        _check_loss(self.name, self.params.loss)
        _check_eot(self.name, self.params.eot_iter)

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            judge: Judge | None = None) -> Found:
        p = self.params
        with _gradients_on():
            x, y = _inputs(x, y)
            if p.random_start:
                start = random_start(x, self.norm, self.eps, make_generator(self.seed))
            else:
                start = x.clone()
            best = BestIterate(_iterate_judge(model, judge))
            ascend(model, x, y, start, norm=self.norm, eps=self.eps, step_size=self.eps,
                   steps=1, loss_fn=LOSSES[p.loss], eot_iter=p.eot_iter, best=best)
            return Found(best.x, claimed=best.claimed, judged_broken=best.judged_broken)


@dataclass
class PGDParams:
    steps: int = 20
    # None means eps / 4: large enough to cross the ball in a handful of steps, small enough
    # that 20 steps still refine the point near the boundary.
    step_size: float | None = None
    random_start: bool = True
    restarts: int = 1
    loss: str = "ce"
    eot_iter: int = 1


@register_attack("pgd", "Projected gradient descent, Linf or L2, restarts, EOT (Madry et al. 2018)")
class PGD(Attack):
    """PGD with restarts: a point is broken if any iterate of any restart breaks it.

    Each restart keeps, per point, the iterate with the largest margin. Between restarts the
    judge says which points that iterate broke; those keep it and are not attacked again, the
    others go on to the next restart. A point no restart broke returns the iterate with the
    largest margin over all restarts (the earliest on ties). Every restart draws its random
    start for the whole batch before taking the surviving points, so a point's start does not
    depend on which other points of the batch were broken.
    """

    params_cls = PGDParams
    randomized = True

    def __init__(self, threat: ThreatModel, params: PGDParams | None = None, *, seed: int = 0):
        super().__init__(threat, params, seed=seed)
        p, name = self.params, self.name
        _require(p.steps >= 1, f"{name}.steps must be >= 1, got {p.steps}.")
        _require(p.restarts >= 1, f"{name}.restarts must be >= 1, got {p.restarts}.")
        _check_eot(name, p.eot_iter)
        _require(p.step_size is None or p.step_size > 0,
                 f"{name}.step_size must be > 0 (or unset for eps/4), got {p.step_size}.")
        _check_loss(name, self.loss_name)

    @property
    def loss_name(self) -> str:
        return self.params.loss

    @property
    def step_size(self) -> float:
        return self.eps / 4 if self.params.step_size is None else self.params.step_size

    def start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Where a restart begins, for the whole batch: a fresh tensor, never x itself."""
        if self.params.random_start:
            return random_start(x, self.norm, self.eps, generator)
        return x.clone()

    def _restart(self, model, x, y, start, judge: Judge | None) -> BestIterate:
        best = BestIterate(judge)
        ascend(model, x, y, start, norm=self.norm, eps=self.eps, step_size=self.step_size,
               steps=self.params.steps, loss_fn=LOSSES[self.loss_name],
               eot_iter=self.params.eot_iter, best=best)
        return best

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            judge: Judge | None = None) -> Found:
        p = self.params
        judge = judge if judge is not None else Judge(model)
        picker = _iterate_judge(model, judge)
        with _gradients_on():
            x, y = _inputs(x, y)
            generator = make_generator(self.seed)
            first = self._restart(model, x, y, self.start(x, generator), picker)
            if p.restarts == 1:
                return Found(first.x, claimed=first.claimed, judged_broken=first.judged_broken)
            result, margin, claimed = first.x, first.margin, first.claimed
            broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)
            if first.judged_broken is not None:
                broken |= first.judged_broken
            alive = (~broken).nonzero().flatten()  # indices not broken yet
            for _ in range(1, p.restarts):
                # The judge breaks points with the best example so far; those keep it. The
                # others are attacked again, and keep the new iterate where it is better.
                hit = ~judge.correct(result[alive], y[alive])
                broken[alive[hit]] = True
                alive = alive[~hit]
                if len(alive) == 0:
                    break
                start = self.start(x, generator)[alive]
                best = self._restart(model, x[alive], y[alive], start, picker)
                better = best.margin > margin[alive]
                result[alive[better]] = best.x[better]
                margin[alive[better]] = best.margin[better]
                claimed[alive] |= best.claimed
                if best.judged_broken is not None:
                    broken[alive] |= best.judged_broken
            return Found(result, claimed=claimed, judged_broken=broken)


@dataclass
class CWParams:
    steps: int = 30
    step_size: float | None = None  # None means eps / 4, as for pgd
    random_start: bool = True
    restarts: int = 1
    eot_iter: int = 1


@register_attack("cw", "CW-inf: PGD on the Carlini-Wagner margin loss max_{j!=y} z_j - z_y")
class CW(PGD):
    """PGD with the loss fixed to the CW margin, the usual check against CE's saturation."""

    params_cls = CWParams

    @property
    def loss_name(self) -> str:
        return "cw"
