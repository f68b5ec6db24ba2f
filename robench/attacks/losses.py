"""Per-example attack objectives, each to be maximised.

They return one value per example rather than a mean: an attack sums them before
`torch.autograd.grad`, so each example's input gradient is its own loss's gradient, unscaled by
the batch size (a mean would shrink gradients of large batches towards the float noise floor,
and an L2 step normalises per example anyway). Logits are cast to fp32 first, because the
caller may run the model under bf16 autocast and a margin of two close bf16 logits is mostly
rounding error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from robench.errors import UserError


def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the true class."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def _true_and_best_other(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    true = z.gather(1, y.unsqueeze(1)).squeeze(1)
    is_true = F.one_hot(y, z.shape[1]).bool()
    best_other = z.masked_fill(is_true, float("-inf")).amax(1)
    return true, best_other


def cw_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{j != y} z_j - z_y: positive exactly when the example is misclassified.

    Unlike CE it does not saturate on confident predictions (softmax's gradient vanishes
    there), which is why it breaks models whose CE gradients are tiny.
    """
    true, best_other = _true_and_best_other(logits.float(), y)
    return best_other - true


def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020): the CW margin over z_pi1 - z_pi3.

    Dividing by the spread of the top logits makes it invariant to shifting and rescaling the
    logits, so a model cannot hide behind huge or tiny logits. The third-largest logit needs
    at least three classes.
    """
    z = logits.float()
    if z.shape[1] < 3:
        raise UserError(f"the dlr loss needs at least 3 classes, got {z.shape[1]}; "
                        "use loss 'ce' or 'cw' for binary tasks.")
    true, best_other = _true_and_best_other(z, y)
    top = z.topk(3, dim=1).values
    return -(true - best_other) / (top[:, 0] - top[:, 2] + 1e-12)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": ce,
    "cw": cw_margin,
    "dlr": dlr,
}
