"""PGD adversarial training (Madry et al. 2018) with the defaults of Pang et al. 2021.

Each step trains on x_adv = PGD-k under Linf from a uniform random start, projected onto the
eps-ball and [0, 1]: CE(f(x_adv), y). Defaults follow "Bag of tricks for adversarial
training" (Pang et al. 2021): 10 steps of eps/4 (2/255 at 8/255), and the examples crafted
with the model in eval mode, so that the attack's forward passes neither read the batch's own
statistics nor write BatchNorm's running statistics, the mode Pang et al. recommend (Madry et
al.'s code crafts in train mode, which `craft_mode=train` reproduces).

Also here, because the three adversarial objectives (pgd-at, trades, fast-at) share them: the
crafting context and the checks of eps, step size and crafting mode. The step itself is
robench's PGD step (`robench.attacks.steps.ascend`): the signed input gradient, then the
projection onto the eps-ball and [0, 1], so training and evaluation use the same arithmetic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robench.attacks.losses import ce
from robench.attacks.steps import ascend
from robench.defenses.base import StepContext, StepOutput, register_defense
from robench.errors import UserError

CRAFT_MODES = ("eval", "train")


def require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def check_attack_params(name: str, eps: float | None, step_size: float | None = None,
                        craft_mode: str = "eval") -> None:
    """The checks every adversarial objective shares; messages name `<defense>.<key>`."""
    # eps is None until resolve_defense fills it from the dataset; checked again when used.
    require(eps is None or 0 < eps <= 1,
            f"{name}.eps must be greater than 0 and at most 1 (pixels are in [0, 1]), "
            f"got {eps}.")
    require(step_size is None or step_size > 0,
            f"{name}.step_size must be > 0 (or unset for its default), got {step_size}.")
    require(craft_mode in CRAFT_MODES,
            f"{name}.craft_mode {craft_mode!r} is not one of {', '.join(CRAFT_MODES)}.")


def resolved_eps(name: str, eps: float | None) -> float:
    """eps is only unset when the defense was resolved without a dataset to take it from."""
    if eps is None:
        raise UserError(f"{name}.eps is not set and no dataset gave a default; "
                        f"set it, e.g. {name}.eps=0.03137.")
    return eps


@contextlib.contextmanager
def crafting(model: nn.Module, mode: str) -> Iterator[None]:
    """The model in `mode` with its parameters' gradients off, autograd on; restored after.

    Parameters off so that crafting builds no weight-gradient graph (the attack takes input
    gradients only, so nothing could reach `.grad` anyway); autograd on because a caller may
    compute a loss under `no_grad`, where input gradients would otherwise not exist.
    """
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.train(mode == "train")
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def uniform_start(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x + U(-eps, eps) per pixel, clamped to [0, 1].

    Drawn on x's device from its global generator rather than robench's CPU-seeded attack
    start: the training loop saves and restores the global generators (resume stays exact),
    and a per-step CPU draw copied to a GPU would synchronise the host every step.
    """
    return (x + torch.empty_like(x).uniform_(-eps, eps)).clamp_(0.0, 1.0)


@dataclass
class PGDATParams:
    eps: float | None = None  # None: the dataset's standard Linf eps
    step_size: float | None = None  # None: eps / 4 (2/255 at 8/255)
    steps: int = 10
    random_start: bool = True
    craft_mode: str = "eval"  # "train": as Madry et al.'s code


class CrossEntropyOnCrafted:
    """CE on the inputs `craft` makes; training accuracy is robust training accuracy.

    Subclasses (pgd-at, fast-at) differ only in how they craft.
    """

    name = "objective"

    @property
    def eps(self) -> float:
        return resolved_eps(self.name, self.params.eps)

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 ctx: StepContext) -> StepOutput:
        logits = model(self.craft(model, x, y))
        loss = F.cross_entropy(logits.float(), y, label_smoothing=ctx.label_smoothing)
        return StepOutput(loss=loss, logits=logits)


class PGDATObjective(CrossEntropyOnCrafted):
    """CE on PGD examples."""

    name = "pgd-at"

    def __init__(self, params: PGDATParams):
        p = params
        check_attack_params(self.name, p.eps, p.step_size, p.craft_mode)
        require(p.steps >= 1, f"{self.name}.steps must be >= 1, got {p.steps}.")
        self.params = p

    @property
    def step_size(self) -> float:
        return self.eps / 4 if self.params.step_size is None else self.params.step_size

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        x = x.detach()
        with crafting(model, p.craft_mode):
            start = uniform_start(x, self.eps) if p.random_start else x
            x_adv = ascend(model, x, y, start, norm="Linf", eps=self.eps,
                           step_size=self.step_size, steps=p.steps, loss_fn=ce)
        return x_adv.detach()


register_defense(
    "pgd-at",
    "PGD adversarial training: CE on PGD-10 Linf examples (Madry et al. 2018; defaults of "
    "Pang et al. 2021)",
    params=PGDATParams,
    objective=PGDATObjective,
    trains_adversary=True,
)
