"""`gaussian`: random noise with the threat model's norm, the baseline every paper shows.

A model that resists a gradient attack no better than it resists random noise of the same
size has not been attacked at all; a model that resists noise but falls to PGD is the usual,
healthy picture. The noise is scaled to norm exactly eps (before clamping to [0, 1]), the
largest random perturbation the threat model allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robench.attacks.base import Attack, Found, ThreatModel, register_attack
from robench.attacks.judge import Judge
from robench.attacks.steps import l2_norms, make_generator
from robench.errors import UserError


@dataclass
class GaussianParams:
    draws: int = 1


@register_attack("gaussian", "Gaussian noise scaled to norm exactly eps: the random baseline")
class GaussianNoise(Attack):
    """g ~ N(0, I) scaled to Linf or L2 norm eps, added, clamped to [0, 1].

    With several draws a point is broken if any draw breaks it: it keeps the first draw that is
    misclassified, otherwise the last draw. Whether a draw is misclassified is the judge's
    verdict (the real model in fp32), not that of the model the search was handed. Each draw
    is for the whole batch, so a point's noise does not depend on the other points' outcomes.
    """

    params_cls = GaussianParams
    randomized = True
    uses_gradients = False

    def __init__(self, threat: ThreatModel, params: GaussianParams | None = None, *,
                 seed: int = 0):
        super().__init__(threat, params, seed=seed)
        if self.params.draws < 1:
            raise UserError(f"{self.name}.draws must be >= 1, got {self.params.draws}.")

    def draw(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        g = torch.randn(x.shape, generator=generator).to(x.device)
        if self.norm == "Linf":
            size = g.flatten(1).abs().amax(1)
        else:
            size = l2_norms(g)
        scale = (self.eps / size).view(-1, *([1] * (x.dim() - 1)))
        return (x + g * scale).clamp(0.0, 1.0)

    @torch.no_grad()
    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            judge: Judge | None = None) -> torch.Tensor | Found:
        judge = judge if judge is not None else Judge(model)
        x = x.detach().float()
        generator = make_generator(self.seed)
        draws = self.params.draws
        result = self.draw(x, generator)
        if draws == 1:
            return result
        # Masks and torch.where keep this free of host synchronisation; noise is cheap, so
        # every draw covers the whole batch instead of only the points still standing.
        done = ~judge.correct(result, y)
        for i in range(1, draws):
            candidate = self.draw(x, generator)
            keep = done.view(-1, *([1] * (x.dim() - 1)))
            result = torch.where(keep, result, candidate)
            if i < draws - 1:
                done = done | ~judge.correct(result, y)
        return Found(result, judged_broken=done)
