"""Where an attack's time goes: torch.profiler over PGD, a PGD-AT step and AutoAttack.

    python benchmarks/profile_attacks.py [--n 128] [--aa-n 16] [--only pgd,pgd-at,autoattack]

Runs on the trained reference ResNet-18 (benchmarks/reference_model.py) and CIFAR-10 test
images, each path once to warm up and once under the profiler:
- PGD-10 (Linf 8/255, step 2/255) through robench's `pgd`, searching on the model itself and
  on robench's BatchNorm-folded channels-last view, in fp32 and under bf16 autocast;
- one PGD-AT step (PGD-10 crafting + forward, backward, SGD update) through robench's
  `pgd-at` objective, fp32 and bf16 + channels-last;
- AutoAttack (standard, through robench's `autoattack`) on `--aa-n` points, fp32 and bf16.
bf16 paths run only where the CPU has bf16 instructions (or on a GPU): elsewhere bf16 is
emulated and twenty times slower than fp32 (benchmarks/README.md).
For each it prints the wall seconds and the operators' share of self CPU time, grouped into
convolution forward, convolution backward, BatchNorm, ReLU and its backward, dtype and
layout copies, the other element-wise work, and the rest.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from reference_model import cifar, trained_resnet18
from rich.console import Console
from rich.table import Table
from torch.profiler import ProfilerActivity, profile

from robench.attacks import create_attack
from robench.attacks.view import InPrecision, attack_view
from robench.config import TrainConfig
from robench.defenses import StepContext, resolve_defense
from robench.runtime import autocast
from robench.training import make_optimizer

# Matched in this order: a name is in the first group with a key it equals or starts with
# followed by "_" or ".", so convolution_backward must be tried before convolution.
GROUPS = [
    ("conv backward", ("convolution_backward", "mkldnn_convolution_backward")),
    ("conv forward", ("convolution", "conv2d", "mkldnn_convolution", "_convolution")),
    ("batchnorm", ("batch_norm", "native_batch_norm", "_native_batch_norm_legit",
                   "_batch_norm_with_update", "cudnn_batch_norm")),
    ("relu + backward", ("relu", "threshold_backward", "clamp_min")),
    ("dtype/layout copies", ("_to_copy", "copy_", "contiguous", "clone", "to")),
    ("element-wise", ("add", "mul", "sub", "div", "sign", "where", "clamp", "neg", "fill_",
                      "sum", "max", "sort", "gather", "eq", "ge", "gt", "lt", "abs",
                      "log_softmax", "nll_loss", "_log_softmax")),
]


def group_of(name: str) -> str:
    op = name.removeprefix("aten::")
    for group, keys in GROUPS:
        if any(op == k or op.startswith(k + "_") or op.startswith(k + ".") for k in keys):
            return group
    return "other"


def profiled(fn) -> tuple[float, dict[str, float], list[tuple[str, float]]]:
    fn()  # warm-up: oneDNN primitives, allocator
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
    groups: dict[str, float] = defaultdict(float)
    ops = []
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            groups[group_of(event.key)] += event.self_cpu_time_total
            ops.append((event.key, event.self_cpu_time_total))
    total = sum(groups.values()) or 1.0
    shares = {g: 100 * v / total for g, v in groups.items()}
    top = sorted(ops, key=lambda kv: -kv[1])[:5]
    return wall, shares, [(k, 100 * v / total) for k, v in top]


def precisions() -> tuple[str, ...]:
    """bf16 only where the CPU has bf16 instructions: emulated, it profiles the emulation."""
    from robench.runtime import cpu_has_bf16

    return ("fp32", "bf16") if cpu_has_bf16() or torch.cuda.is_available() else ("fp32",)


def pgd_paths(model, x, y):
    pgd = create_attack("pgd", norm="Linf", eps=8 / 255,
                        params={"steps": 10, "step_size": 2 / 255})
    view = attack_view(model)
    for on, net in (("model", model), ("view", view)):
        for precision in precisions():
            searcher = net if precision == "fp32" else InPrecision(net, "bf16")
            yield f"pgd-10 on the {on}, {precision}", (lambda s=searcher: pgd(s, x, y))


def pgd_at_paths(model, x, y):
    objective = resolve_defense("pgd-at", {"pgd-at": {"eps": 8 / 255, "step_size": 2 / 255,
                                                   "steps": 10}}).objective
    for precision in precisions():
        fmt = torch.channels_last if precision == "bf16" else torch.contiguous_format
        net = trained_resnet18().to(memory_format=fmt).train()
        optimizer = make_optimizer(net, TrainConfig())
        xb = x.contiguous(memory_format=fmt)

        def step(net=net, optimizer=optimizer, xb=xb, precision=precision):
            with autocast(x.device, precision):
                loss = objective(net, xb, y, StepContext(epoch=1, iteration=0)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        label = "bf16 + channels-last" if precision == "bf16" else "fp32"
        yield f"pgd-at step, {label}", step


def autoattack_paths(model, x, y):
    aa = create_attack("autoattack", norm="Linf", eps=8 / 255, seed=0)
    aa.batch_size = len(y)
    for precision in precisions():
        searcher = model if precision == "fp32" else InPrecision(model, "bf16")
        yield f"autoattack standard, {len(y)} points, {precision}", (
            lambda s=searcher: aa(s, x, y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--aa-n", type=int, default=16)
    parser.add_argument("--only", default="pgd,pgd-at,autoattack")
    args = parser.parse_args()
    model = trained_resnet18()
    x, y = cifar("test", args.n)
    wanted = set(args.only.split(","))
    paths = []
    if "pgd" in wanted:
        paths += list(pgd_paths(model, x, y))
    if "pgd-at" in wanted:
        paths += list(pgd_at_paths(model, x, y))
    if "autoattack" in wanted:
        paths += list(autoattack_paths(model, x[:args.aa_n], y[:args.aa_n]))
    columns = [g for g, _ in GROUPS] + ["other"]
    table = Table(title=f"self CPU time by operator group, % ({torch.get_num_threads()} "
                        f"threads)")
    for col in ("path", "wall s", *columns):
        table.add_column(col, justify="right")
    tops = []
    console = Console(width=200)
    for label, fn in paths:
        wall, shares, top = profiled(fn)
        row = [label, f"{wall:.2f}", *(f"{shares.get(c, 0):.0f}" for c in columns)]
        table.add_row(*row)
        tops.append((label, top))
        console.print(" | ".join(row), highlight=False)  # as each finishes
    console.print(table)
    for label, top in tops:
        console.print(f"{label}: " + ", ".join(f"{k.removeprefix('aten::')} {v:.0f}%"
                                               for k, v in top))


if __name__ == "__main__":
    main()
