"""Step time of group-wise inhibition (gwi) against a standard step, on ResNet-18.

methods.md asks gwi to cost at most 1.5x a standard step on average over a training run. A
gwi step is the loop's CE step plus, on every `every`-th iteration, the inhibition update
(an eval-mode pass with a gradient to the cut, batched k-means, a train-mode pass and its own
optimiser step). The script runs the loop's arithmetic (robench's autocast, the objective,
backward, SGD, then `after_step`) on random 3x32x32 batches whose labels are the model's
own predictions, so every sample takes part in the update, as late in training, the
costliest case. Mean seconds per step over `--steps` steps after two warm-up steps, for:

- standard;
- gwi with its default schedule (an update on one step in three, counted from its start);
- gwi with an update on every step (the update's own cost).

Timings on a shared machine are noisy; re-run on an idle one before recording a figure.

    python benchmarks/gwi_step_time.py [--width 0.25] [--batch-size 128] [--steps 30]
        [--device cpu] [--precision bf16]
"""

from __future__ import annotations

import argparse
import time

import torch

from robench.config import TrainConfig
from robench.defenses import StepContext, resolve_defense
from robench.defenses.gwi import batched_kmeans, split_stage
from robench.models import create_model
from robench.runtime import autocast, resolve_device
from robench.training import make_optimizer


def build(device, width: float, channels_last: bool):
    torch.manual_seed(0)
    model = create_model("resnet18", in_channels=3, num_classes=10, image_size=32,
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), width=width)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(device=device, memory_format=fmt).train(), fmt


def batch(model, device, fmt, batch_size: int, precision: str):
    """Random images labelled with the model's own (eval-mode) predictions."""
    x = torch.rand(batch_size, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    model.eval()
    with torch.no_grad(), autocast(device, precision):
        y = model(x).argmax(1)
    model.train()
    return x, y


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mean_step(device, args, spec: str, overrides: dict, first_iteration: int) -> float:
    """Mean seconds per loop step (CE step, then `after_step` if the objective has one)."""
    model, fmt = build(device, args.width, args.channels_last)
    optimizer = make_optimizer(model, TrainConfig())
    objective = resolve_defense(spec, overrides).objective
    after_step = getattr(objective, "after_step", None)
    x, y = batch(model, device, fmt, args.batch_size, args.precision)
    times = []
    for i in range(args.steps + 2):
        ctx = StepContext(epoch=1, iteration=first_iteration + i - 2)
        sync(device)
        t0 = time.perf_counter()
        with autocast(device, args.precision):
            loss = objective(model, x, y, ctx).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            with autocast(device, args.precision):
                after_step(model, x, y, ctx, optimizer)
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def kmeans_time(device, args) -> tuple[float, tuple[int, ...]]:
    """Seconds of one batched k-means call on the model's stage-3 features (K = 6, 50 its)."""
    model, fmt = build(device, args.width, args.channels_last)
    x, _ = batch(model, device, fmt, args.batch_size, args.precision)
    net, stage = split_stage(model, None)
    with torch.no_grad(), autocast(device, args.precision):
        features = net.forward_to(model.net_input(x), stage).float().flatten(2)
    gen = torch.Generator(device=device).manual_seed(0)
    batched_kmeans(features, 6, 50, gen)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    for _ in range(3):
        batched_kmeans(features, 6, 50, gen)
    sync(device)
    return (time.perf_counter() - t0) / 3, tuple(features.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30,
                        help="timed steps per setting; a multiple of 3 for the schedule")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    args = parser.parse_args()
    device = resolve_device(args.device)
    start = 500
    print(f"resnet18 width {args.width}, batch {args.batch_size} of 3x32x32, {device} "
          f"({torch.get_num_threads()} threads), {args.precision}, channels_last "
          f"{args.channels_last}; mean of {args.steps} steps")
    standard = mean_step(device, args, "standard", {}, 0)
    scheduled = mean_step(device, args, "gwi", {"gwi": {"start": start, "every": 3}},
                           start + 2)  # warm-up steps at start (an update) and start + 1
    every = mean_step(device, args, "gwi", {"gwi": {"start": 0, "every": 1}}, 0)
    seconds, shape = kmeans_time(device, args)
    print(f"standard                      {standard:.4f} s/step  1.00x")
    print(f"gwi, default schedule (1 in 3) {scheduled:.4f} s/step  {scheduled / standard:.2f}x")
    print(f"gwi, update every step         {every:.4f} s/step  {every / standard:.2f}x")
    print(f"batched k-means alone on {list(shape)}: {seconds:.4f} s "
          f"({seconds / standard:.2f}x a standard step)")


if __name__ == "__main__":
    main()
