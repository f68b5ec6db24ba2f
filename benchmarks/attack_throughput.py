"""Attack speed: robench's PGD against torchattacks' and a plain loop, and robench's AutoAttack
against a direct pyautoattack call, on the same models, points and settings, in one run.

    pip install -e '.[bench]'     # torchattacks, for this comparison only
    python benchmarks/attack_throughput.py [--n 128] [--rounds 3] [--compile] [--device auto]

1. PGD-10, Linf 8/255, step 2/255, random start, on the trained reference ResNet-18
   (benchmarks/reference_model.py: trained here in plain PyTorch, not by robench) and `--n`
   CIFAR-10 test images: torchattacks, a plain PGD loop with the parameters frozen, and
   robench's `pgd` as `robench eval` runs it (on the BatchNorm-folded channels-last view,
   its build time counted), in fp32 and, where the device has bf16, under bf16 autocast.
   Rounds are interleaved; the table shows each path's median and its accuracy under attack
   (judged on the model in fp32), which should agree within a few points (random starts).
2. PGD-20 at eps 0.1 on a digits CNN trained for a few seconds: both libraries.
3. AutoAttack standard on that digits CNN, 360 points: robench's `autoattack` against
   `pyautoattack.AutoAttack(...).run_standard_evaluation` directly; overhead in percent.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from robench import api
from robench.attacks import create_attack
from robench.attacks.view import InPrecision, attack_view
from robench.data import load_dataset, to_float
from robench.runtime import evaluating, resolve_device, slow_bf16


def timed(fn, device):
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t0


@torch.no_grad()
def acc(model, x, y) -> float:
    with evaluating(model):
        return (model(x).argmax(1) == y).float().mean().item()


def plain_pgd(net, x, y, bf16: bool = False):
    """The textbook loop: parameters frozen, input gradients only, optionally under bf16."""
    for p in net.parameters():
        p.requires_grad_(False)
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    model = net.to(memory_format=fmt)
    x_adv = (x + torch.empty_like(x).uniform_(-8 / 255, 8 / 255)).clamp(0, 1)
    for _ in range(10):
        x_adv.requires_grad_(True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x_adv.contiguous(memory_format=fmt)).float()
        (g,) = torch.autograd.grad(F.cross_entropy(logits, y), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + 2 / 255 * g.sign(), x - 8 / 255),
                          x + 8 / 255).clamp(0, 1)
    net.to(memory_format=torch.contiguous_format)
    for p in net.parameters():
        p.requires_grad_(True)
    return x_adv


def torchattacks_pgd(model, eps, step, steps):
    import torchattacks

    return torchattacks.PGD(model, eps=eps, alpha=step, steps=steps, random_start=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true",
                        help="also time PGD on a torch.compile-d view")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    console = Console(width=200)
    table = Table(title=f"attack throughput on {device} ({torch.get_num_threads()} threads)")
    for col in ("comparison", "s", "reference s", "speed-up", "acc", "reference acc"):
        table.add_column(col, justify="right")

    # 1. PGD-10 on the trained reference ResNet-18.
    from reference_model import cifar, trained_resnet18

    net = trained_resnet18(device=device).to(device)
    x, y = cifar("test", args.n)
    x, y = x.to(device), y.to(device)
    ours = create_attack("pgd", norm="Linf", eps=8 / 255, params={"steps": 10,
                                                                 "step_size": 2 / 255})
    theirs = torchattacks_pgd(net, 8 / 255, 2 / 255, 10)
    paths = {"torchattacks PGD, fp32": lambda: theirs(x, y),
             "plain PGD loop, parameters frozen, fp32": lambda: plain_pgd(net, x, y)}
    # As in `robench eval`: the search runs on the BN-folded, channels-last view (its build
    # time counted), and the verdict (accuracy below) on the model itself.
    paths["robench pgd, fp32"] = lambda: ours(attack_view(net), x, y)
    if args.compile:
        t0 = time.perf_counter()
        compiled = torch.compile(attack_view(net), dynamic=False)
        ours(compiled, x, y)
        console.print(f"torch.compile of the view, first PGD call included: "
                      f"{time.perf_counter() - t0:.1f} s")
        paths["robench pgd, fp32, view compiled (compile time not counted)"] = (
            lambda: ours(compiled, x, y))
    if slow_bf16(device) is None:
        paths["plain PGD loop, bf16 autocast + channels-last"] = lambda: plain_pgd(
            net, x, y, bf16=True)
        paths["robench pgd, bf16 search"] = lambda: ours(
            InPrecision(attack_view(net), "bf16"), x, y)
    for fn in paths.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {label: [] for label in paths}
    found = {}
    for _ in range(args.rounds):
        for label, fn in paths.items():
            found[label], sec = timed(fn, device)
            times[label].append(sec)
    base = statistics.median(times["torchattacks PGD, fp32"])
    for label, values in times.items():
        sec = statistics.median(values)
        table.add_row(f"{label}: ResNet-18, {len(y)} CIFAR-10 test images", f"{sec:.2f}",
                      f"{base:.2f}", f"{base / sec:.2f}x", f"{acc(net, found[label], y):.2%}",
                      "")

    # 2 and 3. A trained digits CNN.
    cfg, _ = api.resolve_config([{"optim": {"epochs": 15}, "runtime": {"device": "cpu"}}])
    run = api.train(cfg, out=tempfile.mkdtemp(), quiet=True)
    model, _ = api.load_run_model(run.run_dir)
    model = model.to(device)
    test = load_dataset("digits").test
    x, y = to_float(test.x).to(device), test.y.to(device)
    ours = create_attack("pgd", norm="Linf", eps=0.1, params={"steps": 20})
    theirs = torchattacks_pgd(model, 0.1, 0.025, 20)
    x_ours, t_ours = timed(lambda: ours(attack_view(model), x, y), device)
    x_theirs, t_theirs = timed(lambda: theirs(x, y), device)
    table.add_row(f"PGD-20 digits CNN, {len(y)} points, eps 0.1", f"{t_ours:.2f}",
                  f"{t_theirs:.2f}", f"{t_theirs / t_ours:.2f}x", f"{acc(model, x_ours, y):.2%}",
                  f"{acc(model, x_theirs, y):.2%}")

    import pyautoattack

    ours = create_attack("autoattack", norm="Linf", eps=0.2, seed=0)
    ours.batch_size = len(y)

    def direct():
        with evaluating(model):
            aa = pyautoattack.AutoAttack(model, norm="Linf", eps=0.2, version="standard",
                                         seed=0, device=device)
            return aa.run_standard_evaluation(x, y, batch_size=len(y))[0]

    x_theirs, t_theirs = timed(direct, device)
    x_ours, t_ours = timed(lambda: ours(model, x, y), device)
    table.add_row(f"AutoAttack digits CNN, {len(y)} points", f"{t_ours:.2f}", f"{t_theirs:.2f}",
                  f"overhead {100 * (t_ours / t_theirs - 1):+.1f}%",
                  f"{acc(model, x_ours, y):.2%}", f"{acc(model, x_theirs, y):.2%}")
    console.print(table)


if __name__ == "__main__":
    main()
