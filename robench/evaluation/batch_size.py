"""`--batch-size auto`: the largest batch an evaluation's attacks fit in memory.

The batch is also the evaluation's seeded block (robench.evaluation.blocks), so the choice
is part of the protocol and is recorded; giving the chosen number reproduces the record.
The choice is a power of two (or all the points, if fewer), at most `MAX_BATCH`: beyond
that no device gains throughput on small images, while a block is the unit an interrupted
evaluation resumes from.

How it decides, on any device: one forward pass of the search model on a few of the
evaluated points, with autograd on, counts the bytes autograd saves for the backward pass
per point (a saved-tensor hook sees every activation an input gradient needs). An attack
step holds those, the logits and a few image-sized buffers; `HEADROOM` covers the
allocator's workspace and AutoAttack's extra copies. The batch is the largest whose estimate
fits in `BUDGET` of the memory free now (a CUDA device's free memory; on a CPU,
MemAvailable). A CPU that runs out of memory is killed by the kernel rather than raising,
so there the estimate is all there is; on a GPU the chosen batch then takes one real
forward and backward pass, and is halved while that runs out of memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from robench.attacks.losses import ce
from robench.errors import UserError
from robench.runtime import is_out_of_memory

AUTO = "auto"
MAX_BATCH = 4096
PROBE_POINTS = 8
BUDGET = 0.5  # of the free memory
HEADROOM = 2.0  # x the bytes autograd saves


@dataclass(frozen=True)
class Choice:
    batch_size: int
    bytes_per_point: int
    free_bytes: int

    def describe(self) -> str:
        return (f"--batch-size auto chose {self.batch_size}: about "
                f"{self.bytes_per_point / 2**20:.2f} MiB per point for an attack step, "
                f"{self.free_bytes / 2**30:.1f} GiB free")


def free_memory(device: torch.device) -> int:
    """Bytes that may be allocated now: CUDA's free memory, or the kernel's MemAvailable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def step_bytes_per_point(search: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes one attack step holds per point: what autograd saves for the input gradient,
    with the input and its gradient, times HEADROOM."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    x = x.detach().float().clone().requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = search(x).float()
        (grad,) = torch.autograd.grad(ce(logits, y).sum(), x)
    image = x.numel() * x.element_size()
    total = saved + 4 * image + 2 * logits.numel() * logits.element_size()
    return max(1, int(HEADROOM * total / len(x)))


def _ladder(n_points: int) -> list[int]:
    """Candidates, largest first: all the points if fewer than MAX_BATCH, then powers of two."""
    top = min(n_points, MAX_BATCH)
    return [top] + [2**k for k in range(12, -1, -1) if 2**k < top]


def _fits_on_device(search: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> bool:
    """One real forward and backward pass at `batch` points (x's points, repeated)."""
    reps = -(-batch // len(x))
    xb = x.repeat(reps, *([1] * (x.dim() - 1)))[:batch].detach().float().requires_grad_(True)
    yb = y.repeat(reps)[:batch]
    try:
        with torch.enable_grad():
            torch.autograd.grad(ce(search(xb).float(), yb).sum(), xb)
        return True
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        return False
    finally:
        if x.device.type == "cuda":
            torch.cuda.empty_cache()


def choose_batch_size(search: nn.Module, x: torch.Tensor, y: torch.Tensor, n_points: int,
                      *, free: Callable[[torch.device], int] = free_memory,
                      trial: Callable[..., bool] = _fits_on_device,
                      confirm: bool | None = None) -> Choice:
    """The largest batch of the ladder for `n_points` that fits (see the module docstring),
    measured on the probe points x, y (a few of the evaluated ones, PROBE_POINTS say).
    `confirm`: try each candidate for real (default: on a GPU only)."""
    confirm = x.device.type == "cuda" if confirm is None else confirm
    per_point = step_bytes_per_point(search, x, y)
    available = free(x.device)
    fitting = [b for b in _ladder(n_points) if b * per_point <= BUDGET * available]
    if not fitting:
        raise UserError(f"--batch-size auto: one point needs about {per_point / 2**20:.0f} "
                        f"MiB for an attack step and {available / 2**20:.0f} MiB are free; "
                        f"free memory or evaluate on another device.")
    for batch in fitting:
        if not confirm or trial(search, x, y, batch):
            return Choice(batch, per_point, available)
    raise UserError(f"--batch-size auto: even a batch of 1 ran out of memory on {x.device}; "
                    f"free memory or evaluate on another device.")
