"""White-box gradient attacks: FGSM, PGD (Linf and L2, restarts, EOT) and CW-inf.

All three are one loop, `ascend`: take the input gradient of a per-example loss, step along
its sign (Linf) or its per-example unit direction (L2), project back onto the eps-ball around
x, clamp to [0, 1]. FGSM is one step of size eps; CW-inf is PGD on the CW margin.

Conventions kept here, and why:
- Input gradients come from `torch.autograd.grad(loss, x_adv)`, never `.backward()`: nothing
  is accumulated into parameters, even for a model whose parameters still require grad.
- The attack's own arithmetic is fp32 and logits are cast to fp32 before the loss, so a caller
  may run the model under bf16 autocast without rounding the perturbation itself.
- Random numbers are drawn on the CPU from a generator seeded with the attack's seed and then
  moved: the same seed gives the same perturbation on every device (CUDA and CPU generators
  produce different streams), and the draws are tiny next to the forward/backward passes.
  Each call to `run` starts the stream afresh from the seed.
- No `.item()` or other host synchronisation inside the step loop; the only ones are between
  restarts, to shrink the batch to the points still robust.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from robench.attacks.base import Attack, ThreatModel, register_attack
from robench.attacks.losses import LOSSES
from robench.errors import UserError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Smallest norm divided by: a zero gradient (a flat loss) or a zero perturbation then gives a
# zero step instead of NaN.
_TINY = 1e-12


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator: device-independent streams (see the module docstring)."""
    return torch.Generator(device="cpu").manual_seed(seed)


def _per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Shape (N,) -> (N, 1, ..., 1), to scale each example of `like` by its own value."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def l2_norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(p=2, dim=1)


def unit_l2(g: torch.Tensor) -> torch.Tensor:
    """g / ||g||_2 per example; an all-zero gradient stays zero."""
    return g / _per_example(l2_norms(g).clamp_min(_TINY), g)


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
        delta.mul_(_per_example(scale, delta))
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
        noise = direction * _per_example(radius, direction)
    return (x + noise.to(x.device)).clamp(0.0, 1.0)


def input_gradient(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
                   eot_iter: int) -> torch.Tensor:
    """The loss's gradient at x_adv, summed over `eot_iter` passes.

    For a stochastic model each pass sees a fresh draw of its randomness, so the sum estimates
    the expected gradient (EOT); a sum rather than a mean because only its direction is used.
    """
    grad = None
    for _ in range(eot_iter):
        loss = loss_fn(model(x_adv).float(), y).sum()
        (g,) = torch.autograd.grad(loss, x_adv)
        grad = g if grad is None else grad + g  # g may be an expanded view: no add_
    return grad


def ascend(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_start: torch.Tensor, *,
           norm: str, eps: float, step_size: float, steps: int, loss_fn: LossFn,
           eot_iter: int = 1) -> torch.Tensor:
    """`steps` projected steps of steepest ascent from x_start; returns the last iterate.

    The last iterate rather than the best one seen: it is what the textbook algorithm returns,
    so robench's PGD can be checked step for step against a plain reference.
    """
    x_adv = x_start.detach().clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad = input_gradient(model, x_adv, y, loss_fn, eot_iter)
        with torch.no_grad():
            # The graph is freed, so the iterate is updated in place. The gradient is not:
            # autograd may hand back an expanded view (e.g. of a sum's gradient).
            x_adv = x_adv.detach()
            if norm == "Linf":
                x_adv.add_(grad.sign().mul_(step_size))
            else:
                x_adv.add_(unit_l2(grad).mul_(step_size))
            project_(x, x_adv, norm, eps)
    return x_adv


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def _check_loss(attack: str, loss: str) -> None:
    _require(loss in LOSSES,
             f"{attack}.loss {loss!r} is not one of {', '.join(LOSSES)}.")


@contextlib.contextmanager
def _gradients_on() -> Iterator[None]:
    """Autograd on even if the caller evaluates under `no_grad` or `inference_mode`."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def _inputs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 images and labels autograd may save: tensors made under `inference_mode` cannot
    be saved for backward (the losses keep y), so those are copied; others are not."""
    x, y = x.detach().float(), y.detach()
    return ((x.clone() if x.is_inference() else x), (y.clone() if y.is_inference() else y))


@dataclass
class FGSMParams:
    random_start: bool = False
    loss: str = "ce"


@register_attack("fgsm", "Fast gradient sign method: one step of size eps (Goodfellow et al. 2015)")
class FGSM(Attack):
    """One step of size eps, optionally from a uniform random start (projected afterwards)."""

    params_cls = FGSMParams
    randomized = True  # with random_start; otherwise the seed is simply unused

    def __init__(self, threat: ThreatModel, params: FGSMParams | None = None, *, seed: int = 0):
        super().__init__(threat, params, seed=seed)
        _check_loss(self.name, self.params.loss)

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        with _gradients_on():
            x, y = _inputs(x, y)
            if p.random_start:
                start = random_start(x, self.norm, self.eps, make_generator(self.seed))
            else:
                start = x.clone()
            return ascend(model, x, y, start, norm=self.norm, eps=self.eps, step_size=self.eps,
                          steps=1, loss_fn=LOSSES[p.loss])


@dataclass
class PGDParams:
    steps: int = 20
    # None means eps / 4: large enough to cross the ball in a handful of steps, small enough
    # that 20 steps still refine the point near the boundary.
    step_size: float | None = None
    random_start: bool = True
    restarts: int = 1
    loss: str = "ce"
    eot_iter: int = 1


@register_attack("pgd", "Projected gradient descent, Linf or L2, restarts, EOT (Madry et al. 2018)")
class PGD(Attack):
    """PGD with restarts: a point is broken if any restart breaks it.

    Each restart runs only on the points no earlier restart has broken, and a broken point
    keeps the first restart's example that is misclassified. A point no restart breaks gets
    the last restart's final iterate (not the highest-loss one: the loss is not comparable
    across losses, and the choice does not change robust accuracy). Every restart draws its
    random start for the whole batch before taking the surviving points, so a point's start
    does not depend on which other points of the batch were broken.
    """

    params_cls = PGDParams
    randomized = True

    def __init__(self, threat: ThreatModel, params: PGDParams | None = None, *, seed: int = 0):
        super().__init__(threat, params, seed=seed)
        p, name = self.params, self.name
        _require(p.steps >= 1, f"{name}.steps must be >= 1, got {p.steps}.")
        _require(p.restarts >= 1, f"{name}.restarts must be >= 1, got {p.restarts}.")
        _require(p.eot_iter >= 1, f"{name}.eot_iter must be >= 1, got {p.eot_iter}.")
        _require(p.step_size is None or p.step_size > 0,
                 f"{name}.step_size must be > 0 (or unset for eps/4), got {p.step_size}.")
        _check_loss(name, self.loss_name)

    @property
    def loss_name(self) -> str:
        return self.params.loss

    @property
    def step_size(self) -> float:
        return self.eps / 4 if self.params.step_size is None else self.params.step_size

    def start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Where a restart begins, for the whole batch: a fresh tensor, never x itself."""
        if self.params.random_start:
            return random_start(x, self.norm, self.eps, generator)
        return x.clone()

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        with _gradients_on():
            x, y = _inputs(x, y)
            generator = make_generator(self.seed)
            loss_fn = LOSSES[self.loss_name]

            def attack(xs: torch.Tensor, ys: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
                return ascend(model, xs, ys, start, norm=self.norm, eps=self.eps,
                              step_size=self.step_size, steps=p.steps, loss_fn=loss_fn,
                              eot_iter=p.eot_iter)

            if p.restarts == 1:
                return attack(x, y, self.start(x, generator))
            result = torch.empty_like(x)
            alive = torch.arange(len(x), device=x.device)  # indices not broken yet
            for restart in range(p.restarts):
                start = self.start(x, generator)
                if restart > 0:
                    start = start[alive]
                xs, ys = x[alive], y[alive]
                x_adv = attack(xs, ys, start)
                if restart == p.restarts - 1:
                    result[alive] = x_adv
                    break
                with torch.no_grad():
                    broken = model(x_adv).float().argmax(1) != ys
                result[alive[broken]] = x_adv[broken]
                alive = alive[~broken]
                if len(alive) == 0:
                    break
            return result


@dataclass
class CWParams:
    steps: int = 30
    step_size: float | None = None  # None means eps / 4, as for pgd
    random_start: bool = True
    restarts: int = 1
    eot_iter: int = 1


@register_attack("cw", "CW-inf: PGD on the Carlini-Wagner margin loss max_{j!=y} z_j - z_y")
class CW(PGD):
    """PGD with the loss fixed to the CW margin, the usual check against CE's saturation."""

    params_cls = CWParams

    @property
    def loss_name(self) -> str:
        return "cw"
