"""Training throughput of ResNet-18 on 3x32x32 batches: fp32 vs bf16 vs bf16 + channels_last.

Times full optimisation steps (forward, backward, SGD update) through robench's own parts
(create_model, the `standard` objective, robench's autocast and optimiser), so the figures are
what `robench train` gets. Prints a table; record it in benchmarks/README.md with the command.

    python benchmarks/train_throughput.py [--batch-size 128] [--steps 5] [--device auto]
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from robench.config import TrainConfig
from robench.defenses import StepContext, resolve_defense
from robench.models import create_model
from robench.runtime import autocast, resolve_device
from robench.training import make_optimizer

SETTINGS = [("fp32", False), ("bf16", False), ("bf16", True)]


def time_steps(device, precision: str, channels_last: bool, batch_size: int, steps: int,
               arch: str) -> float:
    """Median seconds per optimisation step, after two warm-up steps."""
    torch.manual_seed(0)
    model = create_model(arch, in_channels=3, num_classes=10, image_size=32,
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device=device, memory_format=fmt).train()
    optimizer = make_optimizer(model, TrainConfig())
    objective = resolve_defense("standard").objective
    x = torch.rand(batch_size, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch_size,), device=device)
    ctx = StepContext(epoch=1, iteration=0)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        with autocast(device, precision):
            loss = objective(model, x, y, ctx).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    table = Table(title=f"{args.arch}, batch {args.batch_size} of 3x32x32, {device} "
                        f"({torch.get_num_threads()} threads), median of {args.steps} steps")
    for column in ("precision", "channels_last", "s / step", "images / s", "speed-up"):
        table.add_column(column, justify="right")
    base = None
    for precision, channels_last in SETTINGS:
        sec = time_steps(device, precision, channels_last, args.batch_size, args.steps,
                         args.arch)
        base = base or sec
        table.add_row(precision, str(channels_last), f"{sec:.3f}",
                      f"{args.batch_size / sec:.0f}", f"{base / sec:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
