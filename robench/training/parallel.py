"""One training run on several processes: DistributedDataParallel around the objective.

A defense's objective does more than one forward pass (it crafts adversarial examples, GWI
and AdvBN call stages of the network directly), so DDP wraps a module whose forward *is*
the objective: everything it computes happens inside one DDP forward, and the backward of
its loss all-reduces every parameter's gradient. `find_unused_parameters` is on because an
objective may leave some parameters out of a step (AdvBN's two BatchNorms).

The data of a step is the global batch (`batch_size` per process x processes), drawn and
augmented from the run's seed exactly as one process with that batch would; process r takes
its rows [r * b, (r + 1) * b). With gradients averaged over processes, a model without
BatchNorm therefore follows the one-process run with the global batch up to float rounding.
BatchNorm normalises with each process's own rows unless `sync_bn` uses the global batch's
statistics (robench.training.sync_bn).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from robench.defenses import StepContext, StepOutput
from robench.defenses.base import Objective
from robench.distributed import World
from robench.errors import UserError
from robench.training.sync_bn import sync_batchnorm


class _ObjectiveStep(nn.Module):
    """The objective as a module's forward (so DDP sees and synchronises what it computes)."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, *args: Any, second: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if second:  # (prepared, ctx): the second update's loss (group-wise inhibition)
            loss = self.objective.second_loss(self.model, *args)
            return loss, loss.detach()
        out = self.objective(self.model, *args)
        return out.loss, out.logits


def all_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum over processes (the value itself in one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value


@torch.no_grad()
def agree_on_buffers(model: nn.Module, world: World) -> None:
    """Process 0's buffers (BatchNorm running statistics) copied to every process.

    Gradients are averaged, so parameters agree; buffers are updated by each process from
    its own rows. Called before validating and checkpointing, so that the validation counts
    summed over processes are of one model, the one process 0 saves.
    """
    if not world.distributed:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


@dataclass
class Replica:
    """How one process takes part in a step: its rows of the global batch, and the step."""

    world: World = field(default_factory=World)
    ddp: nn.Module | None = None
    objective: Any = None

    def part(self, tensor: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global batch."""
        if not self.world.distributed:
            return tensor
        b = len(tensor) // self.world.size
        return tensor[self.world.rank * b:(self.world.rank + 1) * b]

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             ctx: StepContext) -> StepOutput:
        if self.ddp is None:
            return self.objective(model, x, y, ctx)
        loss, logits = self.ddp(x, y, ctx)
        return StepOutput(loss=loss, logits=logits)

    def second_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    ctx: StepContext, optimizer: torch.optim.Optimizer) -> None:
        """An objective's second update of the same batch (group-wise inhibition)."""
        if self.ddp is None:
            self.objective.after_step(model, x, y, ctx, optimizer)
            return
        prepared = self.objective.prepare_second(model, x, y, ctx, reduce=all_sum)
        if prepared is None:  # every process skips it alike (the decision is all-reduced)
            return
        loss, _ = self.ddp(prepared, ctx, second=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def total(self, value: torch.Tensor) -> torch.Tensor:
        return all_sum(value)


def check_parallel(sync_bn: bool, world: World, device: torch.device, objective) -> None:
    """Refuse, before any file is written, what this launch cannot do."""
    if sync_bn and not world.distributed:
        raise UserError("--sync-bn synchronises BatchNorm across processes; start the run "
                        "with torchrun --nproc-per-node N (N > 1), or drop --sync-bn.")
    if (world.distributed and getattr(objective, "after_step", None) is not None
            and not hasattr(objective, "prepare_second")):
        raise UserError(f"the objective {type(objective).__name__} makes a second update of "
                        f"its own that cannot be synchronised across processes; train it in "
                        f"one process.")


def replicate(model: nn.Module, objective: Objective, world: World, device: torch.device, *,
              sync_bn: bool) -> Replica:
    """The replica of `model` for this process (the model itself in one process)."""
    check_parallel(sync_bn, world, device, objective)
    if not world.distributed:
        return Replica(world=world, objective=objective)
    if sync_bn:
        sync_batchnorm(model, device)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel(_ObjectiveStep(model, objective), device_ids=ids,
                                              find_unused_parameters=True)
    return Replica(world=world, ddp=ddp, objective=objective)
