"""The evaluated model, before and after: an evaluation is of one model or of none.

A model may change itself while it is evaluated (a forward pass that counts in a buffer,
freezes a layer, registers a hook, switches a module to train mode), and a bug in robench
could change it too. Either way the numbers would be of no one model, so every command that
writes a result takes a `snapshot` first and calls `check_unchanged` before writing anything.
The snapshot covers what a state_dict leaves out: non-persistent buffers, which parameters
take gradients, each module's own train/eval flag, and the hooks on each module.

A switch to train mode inside an eval-mode block is undone when the block ends
(robench.runtime.evaluating restores each module's mode), so a before/after comparison cannot
see it: `evaluating` itself refuses it, with the same exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from robench.errors import ModelChanged

# The hook tables of an nn.Module (those of this torch version that exist) and their names.
HOOKS = {"_forward_pre_hooks": "forward pre-hook", "_forward_hooks": "forward hook",
         "_backward_pre_hooks": "backward pre-hook", "_backward_hooks": "backward hook"}


@dataclass
class Snapshot:
    """Everything about a model an evaluation must leave as it found it."""

    parameters: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]  # every buffer, persistent or not
    requires_grad: dict[str, bool]
    training: dict[str, bool]  # per module, by name ("" is the model itself)
    hooks: dict[str, dict[str, int]]  # per module: hooks registered, per kind


def snapshot(model: torch.nn.Module) -> Snapshot:
    return Snapshot(
        parameters={k: p.detach().clone() for k, p in model.named_parameters()},
        buffers={k: b.detach().clone() for k, b in model.named_buffers()}, **_flags(model))


def _flags(model: torch.nn.Module) -> dict[str, dict]:
    """The snapshot's parts that are not tensors (cheap: nothing is copied)."""
    modules = dict(model.named_modules())
    return {"requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
            "training": {k: m.training for k, m in modules.items()},
            "hooks": {k: hook_counts(m) for k, m in modules.items()}}


def hook_counts(module: torch.nn.Module) -> dict[str, int]:
    return {kind: len(getattr(module, table, {})) for table, kind in HOOKS.items()}


def module_name(name: str) -> str:
    return f"module {name!r}" if name else "the model"


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, dtype and shape; NaN where the other has NaN counts as equal."""
    if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
        return False
    if torch.equal(a, b):
        return True
    if not a.is_floating_point():
        return False
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(a[~nan], b[~nan])


def _values(kind: str, before: dict[str, torch.Tensor],
            after: dict[str, torch.Tensor]) -> list[str]:
    out = [f"{kind} {k!r} disappeared" for k in before if k not in after]
    out += [f"{kind} {k!r} appeared" for k in after if k not in before]
    out += [f"{kind} {k!r} changed" for k, v in before.items()
            if k in after and not _same(v, after[k].detach())]
    return out


def _hooks(name: str, before: dict[str, int], after: dict[str, int]) -> list[str]:
    out = []
    for kind, was in before.items():
        now = after[kind]
        if now != was:
            verb = "gained" if now > was else "lost"
            out.append(f"{module_name(name)} {verb} {abs(now - was)} {kind}"
                       f"{'s' if abs(now - was) > 1 else ''}")
    return out


@torch.no_grad()
def changes(model: torch.nn.Module, before: Snapshot) -> list[str]:
    """Each way `model` differs from `before`, in words (empty: unchanged)."""
    now = Snapshot(parameters={}, buffers={}, **_flags(model))
    out = _values("parameter", before.parameters, dict(model.named_parameters()))
    out += _values("buffer", before.buffers, dict(model.named_buffers()))
    for k, flag in before.requires_grad.items():
        if k in now.requires_grad and now.requires_grad[k] != flag:
            out.append(f"parameter {k!r} "
                       f"{'stopped' if flag else 'started'} requiring gradients")
    out += [f"{module_name(k)} disappeared" for k in before.training if k not in now.training]
    out += [f"{module_name(k)} appeared" for k in now.training if k not in before.training]
    for k, flag in before.training.items():
        if k in now.training and now.training[k] != flag:
            out.append(f"{module_name(k)} went from {'train' if flag else 'eval'} to "
                       f"{'train' if now.training[k] else 'eval'} mode")
    for k, counts in before.hooks.items():
        if k in now.hooks:
            out += _hooks(k, counts, now.hooks[k])
    return out


def check_unchanged(model: torch.nn.Module, before: Snapshot) -> None:
    """Raise ModelChanged, naming what changed, unless `model` is as `before` found it."""
    found = changes(model, before)
    if found:
        raise ModelChanged(found)


@contextlib.contextmanager
def nothing_written_if_changed(folder: Path) -> Iterator[None]:
    """A ModelChanged inside the block said as the refusal of a command that wrote nothing:
    for a block that checks the model before it writes, and made `folder` (removed again if
    it is empty) only to fail early when it cannot be written."""
    made = not Path(folder).exists()
    try:
        yield
    except ModelChanged as changed:
        if made:
            with contextlib.suppress(OSError):  # not empty: someone else's files came
                Path(folder).rmdir()
        raise changed.written_nothing() from None
