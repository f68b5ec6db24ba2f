"""Which model an attack searches on: the real one, or a faster stand-in shown to equal it.

The BatchNorm-folded view is used only for a model found deterministic, and only after it has
reproduced the model's logits, predictions and input gradients on points being evaluated
(robench.attacks.view.check_view); otherwise the model itself is searched on and the record
says why. AutoAttack always runs on the model itself: its own checks (randomness, gradients
taken inside forward) must see the model, not a traced copy. bf16 autocast is a stand-in too.
A search is *exact* when it ran on the real model in fp32: its own observations of a
misclassification are then verdicts of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robench.attacks import Attack
from robench.attacks.view import InPrecision, attack_view, check_view

RANDOMISED_NOTE = ("the model is randomised: attacks search on the model itself, never on a "
                   "traced view (tracing would fix one draw of its randomness)")


def choose_view(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                stochastic: bool) -> tuple[nn.Module | None, str | None]:
    """(the view, None) if it may be used for this model, else (None, the reason)."""
    if stochastic:
        return None, RANDOMISED_NOTE
    view = attack_view(model).to(x.device)
    reason = check_view(view, model, x, y)
    if reason is not None:
        return None, (f"the BatchNorm-folded view was not used because {reason}; attacks "
                      f"search on the model itself")
    return view, None


@dataclass
class Search:
    module: nn.Module  # what the attack is handed
    on: str  # "model" or "view"
    precision: str

    @property
    def exact(self) -> bool:
        return self.on == "model" and self.precision == "fp32"


@dataclass
class Searchers:
    """Where each attack of an evaluation searches."""

    model: nn.Module
    view: nn.Module | None
    precision: str

    def for_attack(self, attack: Attack) -> Search:
        package = getattr(attack, "batches_itself", False)  # AutoAttack: the model itself
        inner, on = ((self.view, "view") if self.view is not None and not package
                     else (self.model, "model"))
        module = inner if self.precision == "fp32" else InPrecision(inner, self.precision)
        return Search(module=module, on=on, precision=self.precision)

    def exact(self) -> Search:
        """The real model in fp32: where a stand-in's disputed claims are settled."""
        return Search(module=self.model, on="model", precision="fp32")
