"""The projected step every gradient attack and adversarial training objective is made of.

Take the input gradient of a per-example loss, step along its sign (Linf) or its per-example
unit direction (L2), project back onto the eps-ball around x, clamp to [0, 1].

Conventions kept here, and why:
- Input gradients come from `torch.autograd.grad(loss, x_adv)`, never `.backward()`: nothing
  is accumulated into parameters, even for a model whose parameters still require grad.
- The arithmetic is fp32 and logits are cast to fp32 before the loss, so a caller may run the
  model under bf16 autocast without rounding the perturbation itself.
- Random numbers are drawn on the CPU from a generator seeded with the attack's seed and then
  moved: the same seed gives the same perturbation on every device (CUDA and CPU generators
  produce different streams), and the draws are tiny next to the forward/backward passes.
  They reach a GPU through pinned memory without a host sync (robench.runtime.to_device).
- No `.item()` or other host synchronisation inside the step loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from robench.attacks.judge import Judge
from robench.attacks.losses import cw_margin
from robench.runtime import to_device

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Smallest norm divided by: a zero gradient (a flat loss) or a zero perturbation then gives a
# zero step instead of NaN.
_TINY = 1e-12


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator: device-independent streams (see the module docstring)."""
    return torch.Generator(device="cpu").manual_seed(seed)


def per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Shape (N,) -> (N, 1, ..., 1), to scale or select each example of `like`."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def l2_norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(p=2, dim=1)


def unit_l2(g: torch.Tensor) -> torch.Tensor:
    """g / ||g||_2 per example; an all-zero gradient stays zero."""
    return g / per_example(l2_norms(g).clamp_min(_TINY), g)


def project_(x: torch.Tensor, x_adv: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """In place: x_adv becomes its nearest point in the eps-ball around x, clamped to [0, 1].

    Clamping after projecting never leaves the ball: x is in [0, 1], so clamping a coordinate
    only moves it towards x. In place because it runs every step on the whole batch: no
    image-sized temporaries, and the same arithmetic as the textbook out-of-place form.
    """
    delta = x_adv.sub_(x)
    if norm == "Linf":
        delta.clamp_(-eps, eps)
    else:
        scale = (eps / l2_norms(delta).clamp_min(_TINY)).clamp(max=1.0)
        delta.mul_(per_example(scale, delta))
    return delta.add_(x).clamp_(0.0, 1.0)


def random_start(x: torch.Tensor, norm: str, eps: float,
                 generator: torch.Generator) -> torch.Tensor:
    """A point drawn uniformly from the eps-ball around x, clamped to [0, 1].

    Linf: x + (2u - 1) * eps with u ~ U[0, 1) per pixel. L2: a Gaussian direction (uniform on
    the sphere) at radius eps * u^(1/d), u ~ U[0, 1) per example, d pixels per example: the
    radius law of a uniform draw from the d-ball, so the start is not biased to the centre.
    Draws happen in this order, for the whole batch, on the CPU.
    """
    if norm == "Linf":
        noise = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    else:
        direction = unit_l2(torch.randn(x.shape, generator=generator))
        dims = x[0].numel()
        radius = eps * torch.rand(x.shape[0], generator=generator) ** (1.0 / dims)
        noise = direction * per_example(radius, direction)
    return (x + to_device(noise, x.device)).clamp(0.0, 1.0)


def input_gradient(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
                   eot_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss's gradient at x_adv summed over `eot_iter` passes, and their fp32 logits summed.

    For a stochastic model each pass sees a fresh draw of its randomness, so the sum estimates
    the expected gradient (EOT); a sum rather than a mean because only its direction is used.
    The logits come for free with the gradient, and say where the iterate stands.
    """
    grad = logits_sum = None
    for _ in range(eot_iter):
        logits = model(x_adv).float()
        (g,) = torch.autograd.grad(loss_fn(logits, y).sum(), x_adv)
        grad = g if grad is None else grad + g  # g may be an expanded view: no add_
        logits = logits.detach()
        logits_sum = logits if logits_sum is None else logits_sum + logits
    return grad, logits_sum


@torch.no_grad()
def mean_logits(model: nn.Module, x: torch.Tensor, draws: int) -> torch.Tensor:
    total = None
    for _ in range(draws):
        logits = model(x).float()
        total = logits if total is None else total + logits
    return total / draws


class BestIterate:
    """Per example, the iterate with the largest CW margin seen so far (the earliest on ties).

    The margin max_{j != y} z_j - z_y is positive exactly when the example is misclassified.
    Keeping the best iterate rather than the last means a point fooled at some step, but not
    at the last, still counts as fooled (as AutoAttack's APGD keeps its best point).

    Whose margin: with `judge` (the search runs on a stand-in: the BatchNorm-folded view, bf16)
    every iterate is also classified by the real model in fp32, one pass, and the iterates
    are compared on *its* margin: the stand-in only steers, so an iterate that fools the real
    model is never dropped for one the stand-in prefers (issue 29), and a point nothing fooled
    keeps the iterate the real model is worst at. That costs one fp32 forward pass per step.
    Without `judge` (the search runs on the real model in fp32) the search's own logits are
    the real model's; for a randomised model they are averaged over the EOT draws, and a
    positive mean margin means at least one draw misclassified the example.

    `claimed`: the search's model misclassified the example at some iterate (a stand-in's claim
    for the protocol to settle). `judged_broken`: the real model, asked on its own, misclassified
    the kept iterate (None without `judge`). Selection is by torch.where, with no host sync.
    """

    def __init__(self, judge: Judge | None = None) -> None:
        self.judge = judge
        self.x: torch.Tensor | None = None
        self.margin: torch.Tensor | None = None
        self.claimed: torch.Tensor | None = None

    def offer(self, x_adv: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        searched = cw_margin(logits, y)
        margin = searched if self.judge is None else cw_margin(self.judge.logits(x_adv), y)
        if self.x is None:
            self.x, self.margin, self.claimed = x_adv.detach().clone(), margin, searched > 0
            return
        better = margin > self.margin
        self.x = torch.where(per_example(better, x_adv), x_adv.detach(), self.x)
        self.margin = torch.where(better, margin, self.margin)
        self.claimed = self.claimed | (searched > 0)

    @property
    def judged_broken(self) -> torch.Tensor | None:
        return None if self.judge is None else self.margin > 0


def ascend(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_start: torch.Tensor, *,
           norm: str, eps: float, step_size: float, steps: int, loss_fn: LossFn,
           eot_iter: int = 1, best: BestIterate | None = None) -> torch.Tensor:
    """`steps` projected steps of steepest ascent from x_start; returns the last iterate.

    Training objectives take the last iterate (the textbook algorithm). An evaluation passes
    `best`, which is offered every iterate, the start and the last one included (the last one
    costs one more forward pass), with the logits of the model the search runs on (and, where
    `best` has a judge, the real model's).
    """
    x_adv = x_start.detach().clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad, logits = input_gradient(model, x_adv, y, loss_fn, eot_iter)
        with torch.no_grad():
            # The graph is freed, so the iterate is updated in place. The gradient is not:
            # autograd may hand back an expanded view (e.g. of a sum's gradient).
            x_adv = x_adv.detach()
            if best is not None:
                best.offer(x_adv, logits / eot_iter, y)
            if norm == "Linf":
                x_adv.add_(grad.sign().mul_(step_size))
            else:
                x_adv.add_(unit_l2(grad).mul_(step_size))
            project_(x, x_adv, norm, eps)
    if best is not None:
        best.offer(x_adv, mean_logits(model, x_adv, eot_iter), y)
    return x_adv
