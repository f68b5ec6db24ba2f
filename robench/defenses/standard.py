"""Empirical risk minimisation: the reference every defense is compared with."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from robench.defenses.base import StepContext, StepOutput, register_defense


@dataclass
class StandardObjective:
    def __call__(self, model, x, y, ctx: StepContext) -> StepOutput:
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=ctx.label_smoothing)
        return StepOutput(loss=loss, logits=logits)


register_defense(
    "standard",
    "Cross-entropy on clean inputs (no defense): the baseline every defense is compared with.",
    objective=lambda params: StandardObjective(),
)
