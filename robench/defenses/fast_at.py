"""Fast adversarial training, FGSM-RS (Wong et al. 2020, "Fast is better than free").

One FGSM step of alpha = 1.25 * eps from a uniform random start in the eps-ball, the
perturbation clamped back to the ball and x + delta to [0, 1]; loss CE(f(x + delta), y). The
random start is what keeps single-step training from collapsing at this step size, and 1.25
is the paper's ratio (larger ones bring catastrophic overfitting sooner). Wong et al. craft
with the model in train mode, so that is the default here: their one extra forward pass is
part of the method's cost and its BatchNorm statistics updates are part of what was
published.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robench.attacks.losses import ce
from robench.attacks.steps import ascend
from robench.defenses.base import register_defense
from robench.defenses.pgd_at import (
    CrossEntropyOnCrafted,
    check_attack_params,
    crafting,
    require,
    uniform_start,
)


@dataclass
class FastATParams:
    eps: float | None = None  # None: the dataset's standard Linf eps
    alpha_ratio: float = 1.25  # FGSM step = alpha_ratio * eps
    craft_mode: str = "train"  # Wong et al.'s mode


class FastATObjective(CrossEntropyOnCrafted):
    """CE on FGSM-RS examples; training accuracy is on those adversarial inputs."""

    name = "fast-at"

    def __init__(self, params: FastATParams):
        p = params
        check_attack_params(self.name, p.eps, craft_mode=p.craft_mode)
        require(p.alpha_ratio > 0, f"{self.name}.alpha_ratio must be > 0, got {p.alpha_ratio}.")
        self.params = p

    @property
    def alpha(self) -> float:
        return self.params.alpha_ratio * self.eps

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        with crafting(model, self.params.craft_mode):
            x_adv = ascend(model, x, y, uniform_start(x, self.eps), norm="Linf", eps=self.eps,
                           step_size=self.alpha, steps=1, loss_fn=ce)
        return x_adv.detach()


register_defense(
    "fast-at",
    "Fast adversarial training: CE on one FGSM step of 1.25 eps from a random start "
    "(Wong et al. 2020)",
    params=FastATParams,
    objective=FastATObjective,
    trains_adversary=True,
)
