"""Local balls around adversaries with a global term: robench's interpretation of Lu & Kumar,
"Improving Local Effectiveness for Global robust training" (arXiv 2110.14030).

The paper's loss is not public: its abstract says robustness is improved "at each local
ball centred around an adversary" and the balls are combined "through a global term", so
that weak adversaries suffice. This module is robench's reading of that sentence, not the
authors' method (methods.md, Seed 4), and its results must be reported as such:

- global adversary x' from a weak attack: by default one FGSM step of 1.25 eps from a uniform
  random start (fast-AT's adversary); `attack=pgd` uses PGD-`steps` with step eps/4;
- local ball B(x', r), r = rho * eps, intersected with B(x, eps) and [0, 1]; the local
  adversary x'' is one signed-gradient step of CE of size r from x', projected onto that
  intersection (a step of size r in Linf never leaves B(x', r), so the projection onto
  B(x, eps) and [0, 1] is all that remains);
- loss = CE(f(x'), y) + lambda_local * KL(p(x') || p(x'')) + lambda_global * KL(p(x) || p(x')),
  every term differentiated through both of its sides, with lambda_global = 6 (TRADES' beta)
  and lambda_local = 1 by default.
Crafting runs in eval mode, robench's default for adversaries. Linf only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robench.attacks.losses import ce
from robench.attacks.steps import ascend
from robench.defenses.base import StepContext, StepOutput, register_defense
from robench.defenses.pgd_at import (
    check_attack_params,
    crafting,
    require,
    resolved_eps,
    uniform_start,
)

ATTACKS = ("fgsm-rs", "pgd")


@dataclass
class LocalBallsParams:
    eps: float | None = None  # None: the dataset's standard Linf eps
    attack: str = "fgsm-rs"  # the weak global adversary; "pgd" for the strong setting
    steps: int = 10  # PGD steps when attack=pgd
    alpha_ratio: float = 1.25  # FGSM-RS step = alpha_ratio * eps
    rho: float = 0.5  # local ball radius r = rho * eps
    lambda_local: float = 1.0
    lambda_global: float = 6.0
    craft_mode: str = "eval"


def kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per batch (mean over examples) from logits, in fp32."""
    log_p = F.log_softmax(p_logits.float(), dim=1)
    log_q = F.log_softmax(q_logits.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean()


class LocalBallsObjective:
    name = "local-balls"

    def __init__(self, params: LocalBallsParams):
        p = params
        check_attack_params(self.name, p.eps, craft_mode=p.craft_mode)
        require(p.attack in ATTACKS, f"{self.name}.attack {p.attack!r} is not one of "
                                     f"{', '.join(ATTACKS)}.")
        require(p.steps >= 1, f"{self.name}.steps must be >= 1, got {p.steps}.")
        require(p.alpha_ratio > 0, f"{self.name}.alpha_ratio must be > 0, got {p.alpha_ratio}.")
        require(0 < p.rho <= 2, f"{self.name}.rho must be in (0, 2] (the local radius as a "
                                f"fraction of eps), got {p.rho}.")
        require(p.lambda_local >= 0 and p.lambda_global >= 0,
                f"{self.name}.lambda_local and lambda_global must be >= 0, got "
                f"{p.lambda_local} and {p.lambda_global}.")
        self.params = p

    @property
    def eps(self) -> float:
        return resolved_eps(self.name, self.params.eps)

    def craft(self, model: nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x', x''): the global adversary and the local one in its ball."""
        p, eps = self.params, self.eps
        x = x.detach()
        with crafting(model, p.craft_mode):
            if p.attack == "pgd":
                x_global = ascend(model, x, y, uniform_start(x, eps), norm="Linf", eps=eps,
                                  step_size=eps / 4, steps=p.steps, loss_fn=ce)
            else:
                x_global = ascend(model, x, y, uniform_start(x, eps), norm="Linf", eps=eps,
                                  step_size=p.alpha_ratio * eps, steps=1, loss_fn=ce)
            x_local = ascend(model, x, y, x_global, norm="Linf", eps=eps,
                             step_size=p.rho * eps, steps=1, loss_fn=ce)
        return x_global.detach(), x_local.detach()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 ctx: StepContext) -> StepOutput:
        p = self.params
        x_global, x_local = self.craft(model, x, y)
        # Three passes, not one over the concatenation: in train mode each batch keeps its own
        # BatchNorm statistics, as TRADES' clean and adversarial passes do.
        clean, glob, local = model(x), model(x_global), model(x_local)
        loss = (F.cross_entropy(glob.float(), y, label_smoothing=ctx.label_smoothing)
                + p.lambda_local * kl(glob, local) + p.lambda_global * kl(clean, glob))
        return StepOutput(loss=loss, logits=glob)


register_defense(
    "local-balls",
    "robench's reading of Lu & Kumar 2021: CE on a weak adversary + KL to a local adversary "
    "in its ball + KL to the clean point",
    params=LocalBallsParams,
    objective=LocalBallsObjective,
    trains_adversary=True,
)
