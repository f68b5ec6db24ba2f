"""Attack speed: robench's PGD against torchattacks', and robench's AutoAttack against a direct
pyautoattack call, on the same model, points and settings, in one run.

    pip install -e '.[bench]'     # torchattacks, for this comparison only
    python benchmarks/attack_throughput.py [--n 128] [--device auto]

1. PGD-10, Linf 8/255, step 2/255, random start, fp32, on a CIFAR ResNet-18 and 128 images
   of the shared CIFAR-10 copy (random images if it is absent): seconds for each library, the
   ratio, and the accuracy under each attack (the weights are untrained, so the accuracy
   only checks that both find the same points; the agreement check below uses a trained net).
2. PGD-20 at eps 0.1 on a digits CNN trained for a few seconds: robust accuracy of both
   libraries (they should agree within a few points: the random starts differ).
3. AutoAttack standard on that digits CNN, 360 points: robench's `autoattack` against
   `pyautoattack.AutoAttack(...).run_standard_evaluation` directly; overhead in percent.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from robench import api
from robench.attacks import create_attack
from robench.attacks.view import attack_view
from robench.data import load_dataset, to_float
from robench.models import create_model
from robench.runtime import evaluating, resolve_device

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def cifar_batch(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    if not SHARED.is_file():
        torch.manual_seed(0)
        return torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,)), "random images"
    tmp = Path(tempfile.mkdtemp())
    with tarfile.open(SHARED) as tar:
        tar.extractall(tmp, filter="data")
    splits = load_dataset(f"imagefolder:{tmp / 'cifar10-jpeg'}", val_size=0)
    return to_float(splits.test.x[:n]), splits.test.y[:n], "shared CIFAR-10 copy"


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


def torchattacks_pgd(model, eps, step, steps):
    import torchattacks

    return torchattacks.PGD(model, eps=eps, alpha=step, steps=steps, random_start=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    console = Console()
    table = Table(title=f"attack throughput on {device} ({torch.get_num_threads()} threads)")
    for col in ("comparison", "robench s", "reference s", "speed-up", "robench acc",
                "reference acc"):
        table.add_column(col, justify="right")

    # 1. PGD-10 on a CIFAR ResNet-18.
    x, y, source = cifar_batch(args.n)
    x, y = x.to(device), y.to(device)
    torch.manual_seed(0)
    net = create_model("resnet18", in_channels=3, num_classes=10, image_size=32,
                       mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26)).to(device).eval()
    ours = create_attack("pgd", norm="Linf", eps=8 / 255, params={"steps": 10,
                                                                 "step_size": 2 / 255})
    theirs = torchattacks_pgd(net, 8 / 255, 2 / 255, 10)
    ours(net, x[:8], y[:8])  # warm-up
    # As in `robench eval`: the search runs on the BN-folded, channels-last view (its build
    # time counted), and the verdict (accuracy below) on the model itself.
    x_ours, t_ours = timed(lambda: ours(attack_view(net), x, y), device)
    x_theirs, t_theirs = timed(lambda: theirs(x, y), device)
    table.add_row(f"PGD-10 ResNet-18, {len(y)} {source}", f"{t_ours:.2f}", f"{t_theirs:.2f}",
                  f"{t_theirs / t_ours:.2f}x", f"{acc(net, x_ours, y):.2%}",
                  f"{acc(net, x_theirs, y):.2%}")

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
