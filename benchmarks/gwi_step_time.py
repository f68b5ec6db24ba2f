"""Step time of group-wise inhibition (gwi) against a standard step, on ResNet-18.

methods.md asks gwi to cost at most 1.5x a standard step on average over a training run. A
gwi step is the loop's CE step plus, on every `every`-th iteration, the inhibition update
(an eval-mode pass with a gradient to the cut, batched k-means, a train-mode pass and its own
optimiser step). The script runs the loop's arithmetic (robench's autocast, the objective,
backward, SGD, then `after_step`) on a random 3x32x32 batch whose labels are the model's own
predictions, so every sample takes part in the update, as late in training: the costliest
case.

This VM's speed drifts by 20-30 % within a minute, more than the effect measured, so the two
settings are not timed one after the other: each round times one standard step and then one
schedule cycle of gwi (the update step and the two plain steps that follow it) on a second
model, and the figures are means over the rounds (medians beside them). Two warm-up rounds
are not counted. Printed: seconds per standard step, per gwi step over whole cycles (the
figure the 1.5x budget is about), per update step, and the batched k-means alone.

With `--whole-runs N` it measures the cost over whole training runs instead, data pipeline
included: N pairs of `robench` training runs in the CIFAR-subset setting of
benchmarks/defenses.py (standard, then gwi with its update from iteration 0, every 3rd
step; each pair on its own seed), run one after the other after an uncounted warm-up run,
and the ratio of each pair's training seconds (validation excluded).

    python benchmarks/gwi_step_time.py [--rounds 20] [--width 0.25] [--batch-size 128]
        [--device cpu] [--precision bf16] [--no-channels-last]
    python benchmarks/gwi_step_time.py --whole-runs 3 [--epochs 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from robench.config import TrainConfig
from robench.defenses import StepContext, resolve_defense
from robench.defenses.gwi import split_stage
from robench.defenses.kmeans import batched_kmeans
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


class Stepper:
    """One model, its optimiser and objective, stepped as the training loop steps them."""

    def __init__(self, device, args, spec: str, overrides: dict):
        self.device, self.precision = device, args.precision
        self.model, fmt = build(device, args.width, args.channels_last)
        self.optimizer = make_optimizer(self.model, TrainConfig())
        self.objective = resolve_defense(spec, overrides).objective
        self.after_step = getattr(self.objective, "after_step", None)
        self.x, self.y = batch(self.model, device, fmt, args.batch_size, args.precision)
        self.iteration = 0

    def step(self) -> float:
        """Seconds of one loop step (CE step, then `after_step` if the objective has one)."""
        ctx = StepContext(epoch=1, iteration=self.iteration)
        self.iteration += 1
        sync(self.device)
        t0 = time.perf_counter()
        with autocast(self.device, self.precision):
            loss = self.objective(self.model, self.x, self.y, ctx).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.after_step is not None:
            with autocast(self.device, self.precision):
                self.after_step(self.model, self.x, self.y, ctx, self.optimizer)
        sync(self.device)
        return time.perf_counter() - t0


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


def whole_runs(pairs: int, epochs: int) -> None:
    """Training seconds of standard and gwi runs, alternated, on the CIFAR subset."""
    from defenses import settings  # benchmarks/defenses.py, beside this script

    from robench import api

    layer, _, description = settings("cifar-subset")
    layer = {**layer, "optim": {**layer["optim"], "epochs": epochs},
             "validation": {"every": epochs}}
    out = Path(tempfile.mkdtemp())
    print(f"{description}; here {epochs} epochs; after one uncounted run, {pairs} pairs of "
          f"runs, standard then gwi (update from iteration 0, every 3rd)")
    # Not counted: the first run in a process pays for reading the images and warming up.
    api.train(api.resolve_config([layer, {"runtime": {"seed": pairs}}])[0], out=out, quiet=True)
    ratios = []
    for seed in range(pairs):
        seconds = []
        for defense in ({"defense": "standard"},
                        {"defense": "gwi", "defenses": {"gwi": {"start": 0, "every": 3}}}):
            cfg, _ = api.resolve_config([layer, defense, {"runtime": {"seed": seed}}])
            seconds.append(api.train(cfg, out=out, quiet=True).summary["train_seconds"])
        ratios.append(seconds[1] / seconds[0])
        print(f"seed {seed}: standard {seconds[0]:.1f} s, gwi {seconds[1]:.1f} s, "
              f"{ratios[-1]:.2f}x", flush=True)
    print(f"gwi / standard over whole runs: median {statistics.median(ratios):.2f}x, "
          f"mean {statistics.mean(ratios):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20,
                        help="timed rounds (a standard step and a gwi cycle of 3 steps each)")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--whole-runs", type=int, default=0,
                        help="time N pairs of whole training runs on the CIFAR subset instead")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each whole run")
    args = parser.parse_args()
    if args.whole_runs:
        whole_runs(args.whole_runs, args.epochs)
        return
    device = resolve_device(args.device)
    print(f"resnet18 width {args.width}, batch {args.batch_size} of 3x32x32, {device} "
          f"({torch.get_num_threads()} threads), {args.precision}, channels_last "
          f"{args.channels_last}; {args.rounds} interleaved rounds")
    standard = Stepper(device, args, "standard", {})
    gwi = Stepper(device, args, "gwi", {"gwi": {"start": 0, "every": 3}})
    std_times, cycle_times, update_times = [], [], []
    for r in range(args.rounds + 2):
        s = standard.step()
        cycle = [gwi.step() for _ in range(3)]  # iterations 3r (an update), 3r + 1, 3r + 2
        if r >= 2:
            std_times.append(s)
            cycle_times.append(sum(cycle) / 3)
            update_times.append(cycle[0])
    seconds, shape = kmeans_time(device, args)
    std = statistics.mean(std_times)

    def line(label: str, times: list[float]) -> str:
        m = statistics.mean(times)
        return (f"{label:<34} {m:.4f} s/step  {m / std:.2f}x   "
                f"(median {statistics.median(times):.4f})")

    print(line("standard", std_times))
    print(line("gwi, default schedule (1 in 3)", cycle_times))
    print(line("gwi, an update step", update_times))
    print(f"batched k-means alone on {list(shape)}: {seconds:.4f} s "
          f"({seconds / std:.2f}x a standard step)")


if __name__ == "__main__":
    main()
