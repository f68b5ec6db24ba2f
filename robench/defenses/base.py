"""What a defense is: an optional model transform plus an optional training objective.

`--defense a+b` composes the parts of several registered defenses: every transform is applied
in the order written, and at most one of them may own the training objective (two objectives
are a clash the user must resolve). An objective registered with `objective_yields` is a
default: it trains the model only when no other part owns an objective (kap's noise training
gives way to pgd-at in `kap+pgd-at`). A spec with no objective trains with `standard`.

A defense may also set model options before the model is built (`configure_model`): RCM's
stride configuration is an argument of the architecture, not a change made afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

import torch
from torch import nn

from robench.config import build
from robench.errors import UserError
from robench.registry import DEFENSES


@dataclass
class StepContext:
    """What an objective may need to know about where training is."""

    epoch: int
    iteration: int
    label_smoothing: float = 0.0


@dataclass
class StepOutput:
    loss: torch.Tensor
    logits: torch.Tensor  # on the inputs whose accuracy is reported as training accuracy


class Objective(Protocol):
    """The loss of one batch; the loop does backward and the optimiser step.

    An objective may also define `after_step(model, x, y, ctx, optimizer)`, called after
    the loop's step with the same batch, for a method that makes a second update of its own
    (group-wise inhibition does); it must zero gradients and step the optimiser itself.
    """

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 ctx: StepContext) -> StepOutput: ...


@dataclass
class NoParams:
    """A defense with nothing to set."""


@dataclass(frozen=True)
class DefenseSpec:
    """A registered defense: its parameter dataclass and the parts it contributes."""

    params: type = NoParams
    transform: Callable[[nn.Module, Any], nn.Module] | None = None
    objective: Callable[[Any], Objective] | None = None
    objective_yields: bool = False
    configure_model: Callable[[Any, Any], Any] | None = None  # (params, ModelConfig) -> params
    # Its objective trains on input-space adversaries: validation PGD accuracy is then what
    # best.safetensors is chosen on by default; for any other objective PGD accuracy stays
    # near 0 and says nothing, so the default is clean accuracy.
    trains_adversary: bool = False


def register_defense(name: str, description: str, *, params: type = NoParams,
                     transform: Callable | None = None,
                     objective: Callable | None = None,
                     objective_yields: bool = False,
                     configure_model: Callable | None = None,
                     finetune_recipe: str | None = None,
                     trains_adversary: bool = False) -> DefenseSpec:
    """Register a defense; `finetune_recipe` names the recipe `robench train --init` uses."""
    spec = DefenseSpec(params=params, transform=transform, objective=objective,
                       objective_yields=objective_yields, configure_model=configure_model,
                       trains_adversary=trains_adversary)
    parts = [("model options", configure_model), ("transform", transform),
             ("default objective" if objective_yields else "objective", objective)]
    meta = {"finetune_recipe": finetune_recipe} if finetune_recipe else {}
    if objective is not None and not objective_yields:  # what best.safetensors is chosen on
        meta["best_on"] = "val PGD" if trains_adversary else "val clean"
    DEFENSES.add(name, spec, description, parts=", ".join(p for p, f in parts if f), **meta)
    return spec


@dataclass
class Defense:
    """A resolved `--defense` spec: names, parameters, transforms and one objective."""

    spec: str
    names: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    transforms: list[Callable[[nn.Module], nn.Module]] = field(default_factory=list)
    objective: Objective | None = None
    objective_owner: str = "standard"
    trains_adversary: bool = False  # the objective owner's (DefenseSpec.trains_adversary)

    @property
    def default_select(self) -> str:
        """What best.safetensors maximises when validation.select is not given."""
        return "robust" if self.trains_adversary else "clean"

    def params_dict(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(p) for name, p in self.params.items()}

    def apply(self, model: nn.Module) -> nn.Module:
        for transform in self.transforms:
            model = transform(model)
        return model


def _dataset_eps(params: Any, dataset: str) -> Any:
    """Fill an unset `eps` with the dataset's standard Linf budget (digits 0.2, CIFAR 8/255)."""
    if dataset and any(f.name == "eps" for f in fields(params)) and params.eps is None:
        from robench.threat import default_eps

        params = replace(params, eps=default_eps(dataset, "Linf").value)
    return params


def resolve_defense(spec: str, overrides: dict[str, dict[str, Any]] | None = None,
                    dataset: str = "") -> Defense:
    """The parts of `spec` with their parameters; an unset eps becomes `dataset`'s default."""
    overrides = overrides or {}
    names = [n.strip() for n in spec.split("+")]
    if not spec.strip() or any(not n for n in names):
        raise UserError(f"defense spec {spec!r} is malformed; write names joined by '+', "
                        f"e.g. 'rcm+pgd-at'.")
    if len(set(names)) != len(names):
        raise UserError(f"defense spec {spec!r} names a defense twice.")
    specs = {name: DEFENSES.get(name) for name in names}
    stray = sorted(set(overrides) - set(names))
    if stray:
        raise UserError(f"parameters were given for defense {stray[0]!r}, which is not in the "
                        f"defense spec {spec!r}.")
    owners = [n for n in names
              if specs[n].objective is not None and not specs[n].objective_yields]
    if not owners:
        owners = [n for n in names if specs[n].objective is not None]
    if len(owners) > 1:
        raise UserError(f"defense spec {spec!r} has two training objectives ({owners[0]} and "
                        f"{owners[1]}); keep one of them.")
    if not owners:
        names_with_objective = names + ["standard"]
        specs["standard"] = DEFENSES.get("standard")
        owners = ["standard"]
    else:
        names_with_objective = names
    params = {n: _dataset_eps(build(specs[n].params, overrides.get(n) or {}, prefix=f"{n}."),
                              dataset)
              for n in names_with_objective}
    transforms = [
        (lambda m, t=specs[n].transform, p=params[n]: t(m, p))
        for n in names if specs[n].transform is not None
    ]
    objective = specs[owners[0]].objective(params[owners[0]])
    return Defense(spec=spec, names=names, params=params, transforms=transforms,
                   objective=objective, objective_owner=owners[0],
                   trains_adversary=specs[owners[0]].trains_adversary)


def configure_model(defense: Defense, model_cfg: Any) -> None:
    """Let each part set model options (in `model_cfg`, in place) before the model is built."""
    for name in defense.names:
        hook = DEFENSES.get(name).configure_model
        if hook is not None:
            defense.params[name] = hook(defense.params[name], model_cfg)
