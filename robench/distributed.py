"""torch.distributed for robench's commands under torchrun: who this process is, and the
few collective steps robench needs (start, gather to rank 0, wait, stop).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (or with one process) every
function here is the single-process case and touches no process group. nccl on GPUs, gloo on
CPUs, as torch.distributed advises.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from robench.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """This process's place, from torchrun's variables (one process when they are absent)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise UserError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}, "
                        f"RANK={os.environ.get('RANK')!r}, LOCAL_RANK="
                        f"{os.environ.get('LOCAL_RANK')!r} are not integers; start robench "
                        f"with torchrun, which sets them.") from None
    return World(rank=rank, size=size, local_rank=local)


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") or (
        device == "auto" and torch.cuda.is_available()) else "gloo"


@contextlib.contextmanager
def process_group(world: World, device: str) -> Iterator[World]:
    """The default process group for the block, when there is more than one process.

    On GPUs each process takes the GPU of its local rank, so `cuda` means that one.
    """
    if not world.distributed or dist.is_initialized():
        yield world
        return
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend=backend)
    try:
        yield world
    finally:
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def current() -> World:
    """This process's place in the process group now running (one process without one)."""
    return world_from_env() if active() else World()


def gather(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (on every rank); [obj] in one process."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()


def backend_name() -> str | None:
    return dist.get_backend() if active() else None
