"""Gaussian data augmentation: train on inputs with additive Gaussian noise.

The noisy input is deliberately not clipped to [0, 1] (methods.md): the noise model is the
plain N(0, sigma^2 I) that randomized-smoothing style analyses assume, and clipping would
bias it near black and white pixels. Noise comes from the global torch generator of the
input's device, which the training loop saves with every checkpoint, so a resumed run draws
the same noise as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robench.defenses.base import StepContext, StepOutput, register_defense
from robench.errors import UserError


@dataclass
class GaussianParams:
    # 0.1 is methods.md's default; KAP's code trains with 0.2 for input noise.
    sigma: float = 0.1


class GaussianObjective:
    """CE on x + N(0, sigma^2); the reported training accuracy is on the noisy inputs."""

    def __init__(self, params: GaussianParams):
        if not params.sigma >= 0:
            raise UserError(f"gaussian.sigma must be >= 0, got {params.sigma}.")
        self.params = params

    def noisy(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.params.sigma * torch.randn_like(x)

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor,
                 ctx: StepContext) -> StepOutput:
        logits = model(self.noisy(x))
        loss = F.cross_entropy(logits.float(), y, label_smoothing=ctx.label_smoothing)
        return StepOutput(loss=loss, logits=logits)


register_defense(
    "gaussian",
    "Gaussian noise augmentation: CE on x + N(0, sigma^2), unclipped (e.g. Cohen et al. 2019)",
    params=GaussianParams,
    objective=GaussianObjective,
)
