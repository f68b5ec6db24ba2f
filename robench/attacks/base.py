"""What every attack shares: the threat model, the model's mode, the judge, the final checks.

An attack implements `run(model, x, y, judge)` on a batch in [0, 1] and returns the
adversarial examples, or a `Found` that also says what its search saw. `model` is what the
attack searches on (the model, or a faster stand-in of it); `judge` is the real model's verdict
(robench.attacks.judge), which every decision inside an attack must use: whether a restart
broke a point, whether a noise draw fooled it.

Calling an attack goes through `Attack.search` (or `__call__`, which returns just the
examples). It puts the model in eval mode with its parameters' gradients off for the duration
and restores both afterwards (an attack in train mode would read and write BatchNorm
statistics; a model handed back in eval mode would train wrongly), then checks that the
result lies in the eps-ball around x and in [0, 1]. A violation is a bug in the attack, never
something to report as robustness, so it raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robench.attacks.judge import Judge
from robench.config import build
from robench.errors import UserError
from robench.registry import ATTACKS
from robench.runtime import evaluating

NORMS = ("Linf", "L2")
# Slack for float rounding when checking the eps-ball (pixels live in [0, 1]).
BALL_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ThreatModel:
    norm: str
    eps: float

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise UserError(f"norm {self.norm!r} is not supported; use one of "
                            f"{', '.join(NORMS)}.")
        if not self.eps > 0:
            raise UserError(f"eps must be a positive number, got {self.eps}.")


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside the block; each module's own state after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    with evaluating(model):
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield model
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)


def perturbation_norms(x: torch.Tensor, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example Linf and L2 size of x_adv - x."""
    delta = (x_adv - x).flatten(1).float()
    return delta.abs().amax(1), delta.norm(p=2, dim=1)


def check_valid(x: torch.Tensor, x_adv: torch.Tensor, threat: ThreatModel,
                name: str = "attack") -> None:
    """Raise if any example leaves [0, 1] or the eps-ball: never report such a result."""
    if x_adv.shape != x.shape:
        raise RuntimeError(f"{name} returned shape {tuple(x_adv.shape)} for inputs of shape "
                           f"{tuple(x.shape)}")
    if not torch.isfinite(x_adv).all():
        raise RuntimeError(f"{name} returned non-finite values")
    lo, hi = x_adv.min().item(), x_adv.max().item()
    if lo < -BALL_TOLERANCE or hi > 1 + BALL_TOLERANCE:
        raise RuntimeError(f"{name} left [0, 1]: values in [{lo}, {hi}]")
    linf, l2 = perturbation_norms(x, x_adv)
    size = (linf if threat.norm == "Linf" else l2).max().item()
    if size > threat.eps + BALL_TOLERANCE:
        raise RuntimeError(f"{name} left the {threat.norm} ball of radius {threat.eps}: "
                           f"a perturbation of size {size}")


@dataclass
class Found:
    """An attack's examples, and what its search saw of them (bool per point, or None).

    `claimed`: the model the search ran on misclassified the returned example. When that model
    is a stand-in its claim is checked by the judge; when it is the real model in fp32 the
    claim is itself an observed misclassification. `judged_broken`: the judge, asked inside
    the attack, saw the returned example misclassified; for a randomised model that draw
    counts even if a later draw is correct.
    """

    x_adv: torch.Tensor
    claimed: torch.Tensor | None = None
    judged_broken: torch.Tensor | None = None


@dataclass
class NoParams:
    """An attack with nothing to set."""


class Attack:
    """Base class: subclasses set `name`, `params_cls`, `norms` and implement `run`."""

    name: ClassVar[str] = "attack"
    params_cls: ClassVar[type] = NoParams
    norms: ClassVar[tuple[str, ...]] = NORMS
    # True when the attack draws random numbers: it is seeded per call from `seed`.
    randomized: ClassVar[bool] = False
    # False for attacks that never take a gradient (random noise): EOT means nothing to them.
    uses_gradients: ClassVar[bool] = True

    def __init__(self, threat: ThreatModel, params: Any = None, *, seed: int = 0):
        if threat.norm not in self.norms:
            raise UserError(f"attack {self.name!r} supports the norms {', '.join(self.norms)}, "
                            f"not {threat.norm!r}.")
        self.threat = threat
        self.params = params if params is not None else self.params_cls()
        self.seed = seed

    @property
    def eps(self) -> float:
        return self.threat.eps

    @property
    def norm(self) -> str:
        return self.threat.norm

    def describe(self) -> dict[str, Any]:
        """Everything that defines this attack, for the result record."""
        return {"name": self.name, "norm": self.norm, "eps": self.eps, "seed": self.seed,
                **asdict(self.params)}

    def without_eot(self) -> list[str]:
        """The parts of this attack that would not average gradients over a randomised
        model's draws (EOT) as configured: on such a model their number is not EOT-sound."""
        if not self.uses_gradients:
            return []
        eot = getattr(self.params, "eot_iter", None)
        return [] if eot is not None and eot > 1 else [self.name]

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            judge: Judge | None = None) -> torch.Tensor | Found:
        raise NotImplementedError

    def search(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
               judge: Judge | None = None) -> Found:
        """Attack a batch: search on `model`, decide with `judge` (default: `model` itself)."""
        if not x.is_floating_point() or x.min() < 0 or x.max() > 1:
            raise ValueError(f"{self.name} needs float images in [0, 1] (a uint8 batch must go "
                             f"through robench.data.to_float first)")
        judge = judge if judge is not None else Judge(model)
        with attack_mode(model):
            out = self.run(model, x, y, judge)
        found = out if isinstance(out, Found) else Found(out)
        found.x_adv = found.x_adv.detach()
        check_valid(x, found.x_adv, self.threat, self.name)
        return found

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                 judge: Judge | None = None) -> torch.Tensor:
        return self.search(model, x, y, judge=judge).x_adv


def register_attack(name: str, description: str):
    """Class decorator: register an Attack subclass under `name`."""

    def decorator(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        ATTACKS.add(name, cls, description, norms=", ".join(cls.norms))
        return cls

    return decorator


def create_attack(name: str, *, norm: str, eps: float, seed: int = 0,
                  params: dict[str, Any] | None = None) -> Attack:
    """The one door to every attack: look up, check the parameters by name and type, build."""
    cls = ATTACKS.get(name)
    threat = ThreatModel(norm=norm, eps=eps)
    built = build(cls.params_cls, params or {}, prefix=f"{name}.")
    return cls(threat, built, seed=seed)
