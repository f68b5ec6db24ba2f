"""What every attack shares: the threat model, the model's mode, and the final checks.

An attack only implements `run(model, x, y) -> x_adv` on a batch in [0, 1]. Calling it goes
through `Attack.__call__`, which puts the model in eval mode with its parameters' gradients
off for the duration and restores both afterwards (an attack in train mode would read and
write BatchNorm statistics; a model handed back in eval mode would train wrongly), then
checks that the result lies in the eps-ball around x and in [0, 1]. A violation is a bug in
the attack, never something to report as robustness, so it raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robench.config import build
from robench.errors import UserError
from robench.registry import ATTACKS

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
    """Eval mode and no parameter gradients inside the block; the model's own state after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


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
class NoParams:
    """An attack with nothing to set."""


class Attack:
    """Base class: subclasses set `name`, `params_cls`, `norms` and implement `run`."""

    name: ClassVar[str] = "attack"
    params_cls: ClassVar[type] = NoParams
    norms: ClassVar[tuple[str, ...]] = NORMS
    # True when the attack draws random numbers: it is seeded per call from `seed`.
    randomized: ClassVar[bool] = False

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

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point() or x.min() < 0 or x.max() > 1:
            raise ValueError(f"{self.name} needs float images in [0, 1] (a uint8 batch must go "
                             f"through robench.data.to_float first)")
        with attack_mode(model):
            x_adv = self.run(model, x, y).detach()
        check_valid(x, x_adv, self.threat, self.name)
        return x_adv


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
