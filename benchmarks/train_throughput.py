"""Training throughput of ResNet-18 on 3x32x32 batches: robench's steps against a plain loop.

Times full optimisation steps (forward, backward, SGD update) through robench's own parts
(create_model, a defense's objective, robench's autocast and optimiser), so the figures are
what `robench train` gets, against the same step written as a plain fp32 PyTorch loop here.

    python benchmarks/train_throughput.py [--objective standard|pgd-at] [--rounds 3]
        [--steps 2] [--batch-size 128] [--settings fp32,bf16,bf16+cl] [--device auto]

`--objective pgd-at` is the PGD-AT step (PGD-10 at 8/255, step 2/255, crafted in eval
mode, then the update); the plain loop crafts the same way. Rounds are interleaved (each
round times every path once, `--steps` steps each after a warm-up step) and the table shows
the median of the rounds' per-step times.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from robench.config import TrainConfig
from robench.defenses import StepContext, resolve_defense
from robench.models import create_model
from robench.runtime import autocast, resolve_device

EPS, STEP, STEPS = 8 / 255, 2 / 255, 10


def _model(arch: str, device, channels_last: bool):
    torch.manual_seed(0)
    model = create_model(arch, in_channels=3, num_classes=10, image_size=32,
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(device=device, memory_format=fmt).train(), fmt


def plain_step(arch: str, device, objective: str, batch_size: int):
    """The reference: the textbook step in fp32, nothing of robench but the network."""
    model, _ = _model(arch, device, False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step():
        xb = x
        if objective == "pgd-at":
            model.eval()
            xa = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
            for _ in range(STEPS):
                xa.requires_grad_(True)
                (g,) = torch.autograd.grad(F.cross_entropy(model(xa), y), xa)
                xa = torch.min(torch.max(xa.detach() + STEP * g.sign(), x - EPS), x + EPS)
                xa = xa.clamp(0, 1)
            model.train()
            xb = xa.detach()
        loss = F.cross_entropy(model(xb), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def robench_step(arch: str, device, objective: str, batch_size: int, precision: str,
                 channels_last: bool):
    from robench.training import make_optimizer

    model, fmt = _model(arch, device, channels_last)
    optimizer = make_optimizer(model, TrainConfig())
    params = {"eps": EPS, "step_size": STEP, "steps": STEPS} if objective == "pgd-at" else {}
    spec = resolve_defense(objective, {objective: params} if params else None)
    x = torch.rand(batch_size, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch_size,), device=device)
    ctx = StepContext(epoch=1, iteration=0)

    def step():
        with autocast(device, precision):
            loss = spec.objective(model, x, y, ctx).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def timed(step, steps: int, device) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--objective", default="standard", choices=["standard", "pgd-at"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", default="fp32,bf16,bf16+cl")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    paths = {"plain loop, fp32": plain_step(args.arch, device, args.objective,
                                            args.batch_size)}
    for setting in args.settings.split(","):
        precision, _, layout = setting.partition("+")
        label = f"robench {args.objective}, {precision}" + (" + channels-last" if layout
                                                             else "")
        paths[label] = robench_step(args.arch, device, args.objective, args.batch_size,
                                    precision, bool(layout))
    for step in paths.values():
        step()  # warm-up
    seconds: dict[str, list[float]] = {label: [] for label in paths}
    for _ in range(args.rounds):
        for label, step in paths.items():
            seconds[label].append(timed(step, args.steps, device))
    table = Table(title=f"{args.arch} {args.objective} step, batch {args.batch_size} of "
                        f"3x32x32, {device} ({torch.get_num_threads()} threads), median of "
                        f"{args.rounds} interleaved rounds of {args.steps} steps")
    for column in ("path", "s / step", "images / s", "vs plain fp32"):
        table.add_column(column, justify="right")
    base = statistics.median(seconds["plain loop, fp32"])
    for label, times in seconds.items():
        sec = statistics.median(times)
        table.add_row(label, f"{sec:.3f}", f"{args.batch_size / sec:.0f}", f"{base / sec:.2f}x")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
