"""TRADES (Zhang et al. 2019): clean cross-entropy plus beta times a KL robustness term.

loss = CE(f(x), y) + beta * KL(p(x) || p(x_adv)), the KL summed over classes and averaged
over the batch, with gradients through both p(x) and p(x_adv), as in the authors' reference
code. x_adv maximises the same KL by signed-gradient steps from x + 0.001 * N(0, 1) (not a
uniform start: the KL and its gradient are exactly zero at x itself), each projected onto the
eps-ball and [0, 1]. The reference crafts with the model in eval mode, so that is the
default; p(x) is then the eval-mode prediction and held fixed while x_adv moves.

The reference's step is 0.007 for eps = 0.031 (8/255); an unset step size keeps that ratio,
0.007 * eps / (8/255), so other budgets (digits' 0.2) still cross the ball in a few steps.

One deliberate difference from the reference: the clean batch goes through the model once
in train mode (the reference runs it twice, once for CE and once for the KL target), which
gives the same loss and one BatchNorm running-statistics update fewer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robench.attacks.steps import ascend
from robench.defenses.base import StepContext, StepOutput, register_defense
from robench.defenses.pgd_at import check_attack_params, crafting, require, resolved_eps

# The reference's step size and the budget it was chosen for.
REFERENCE_STEP = 0.007
REFERENCE_EPS = 8 / 255
START_STD = 0.001


@dataclass
class TRADESParams:
    beta: float = 6.0
    eps: float | None = None  # None: the dataset's standard Linf eps
    step_size: float | None = None  # None: 0.007 * eps / (8/255), i.e. 0.007 at 8/255
    steps: int = 10
    craft_mode: str = "eval"  # the reference's mode


def kl_per_example(logits: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """KL(p_clean || softmax(logits)) per example: the quantity the attack maximises."""
    return F.kl_div(F.log_softmax(logits.float(), dim=1), p_clean, reduction="none").sum(1)


class TRADESObjective:
    """The TRADES loss; training accuracy is reported on the clean inputs."""

    name = "trades"

    def __init__(self, params: TRADESParams):
        p = params
        check_attack_params(self.name, p.eps, p.step_size, p.craft_mode)
        require(p.steps >= 1, f"{self.name}.steps must be >= 1, got {p.steps}.")
        require(p.beta >= 0, f"{self.name}.beta must be >= 0, got {p.beta}.")
        self.params = p

    @property
    def eps(self) -> float:
        return resolved_eps(self.name, self.params.eps)

    @property
    def step_size(self) -> float:
        if self.params.step_size is not None:
            return self.params.step_size
        return REFERENCE_STEP * (self.eps / REFERENCE_EPS)

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The KL-maximising x_adv; `y` is unused (TRADES's attack needs no labels)."""
        p = self.params
        x = x.detach()
        with crafting(model, p.craft_mode):
            with torch.no_grad():
                p_clean = F.softmax(model(x).float(), dim=1)
            start = x + START_STD * torch.randn_like(x)
            # ascend hands its label argument to the loss: here the fixed target p(x).
            x_adv = ascend(model, x, p_clean, start, norm="Linf", eps=self.eps,
                           step_size=self.step_size, steps=p.steps, loss_fn=kl_per_example)
        return x_adv.detach()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 ctx: StepContext) -> StepOutput:
        x_adv = self.craft(model, x, y)
        logits = model(x)
        logits_adv = model(x_adv)
        natural = F.cross_entropy(logits.float(), y, label_smoothing=ctx.label_smoothing)
        robust = F.kl_div(F.log_softmax(logits_adv.float(), dim=1),
                          F.softmax(logits.float(), dim=1), reduction="batchmean")
        return StepOutput(loss=natural + self.params.beta * robust, logits=logits)


register_defense(
    "trades",
    "TRADES: clean CE + beta * KL(p(x) || p(x_adv)), x_adv maximising the KL "
    "(Zhang et al. 2019)",
    params=TRADESParams,
    objective=TRADESObjective,
    trains_adversary=True,
)
