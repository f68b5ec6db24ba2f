"""Does a bf16 search find what an fp32 search finds? Robust accuracy of trained models under
PGD-20 and AutoAttack, searched in fp32 and in bf16 (verdicts fp32 on the model, always),
on the same points.

    python benchmarks/bf16_agreement.py [--models digits-pgd-at,cifar-pgd-at,cifar-trades]
        [--n 500] [--epochs 10] [--out runs/bench-bf16]

The evidence `--precision bf16` needs before it may become a default (issue 17): on every
model, robust accuracy within 0.5 points of fp32 for both attacks, and the speed-up.
- digits-pgd-at: robench's `digits-pgd-at` recipe (Linf 0.2), all 360 test points.
- cifar-pgd-at, cifar-trades: PreAct ResNet-18 at width 0.5 trained by robench with PGD-AT
  or TRADES at Linf 8/255 on 10,000 images of the shared CIFAR-10 copy for `--epochs`
  epochs (bf16 training where the device has bf16), evaluated at 8/255 on `--n` points.
Runs are trained once into `--out` and reused. Prints one row per model and attack: robust
accuracy in fp32 and bf16, the difference in points, the points whose verdict differs, and
the seconds of each search. On a CPU without bf16 instructions bf16 is emulated: the
agreement columns still hold, the seconds do not mean anything there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from robench import api
from robench.records import decode_bits
from robench.runtime import resolve_device, slow_bf16


def train_layers(name: str, epochs: int, precision: str) -> list[dict]:
    if name == "digits-pgd-at":
        from robench.recipes import recipe_layer

        return [recipe_layer("digits-pgd-at"), {"runtime": {"device": "auto"}}]
    from robench.data.cache import cache_dir

    defense = name.removeprefix("cifar-")
    return [{"data": {"dataset": f"imagefolder:{cache_dir() / 'bench-cifar10' / 'cifar10-jpeg'}",
                      "train_subset": 10000, "val_size": 500},
             "model": {"arch": "preactresnet18", "width": 0.5},
             "defense": defense, "defenses": {defense: {"eps": 8 / 255}},
             "optim": {"epochs": epochs, "batch_size": 128, "lr": 0.1,
                       "schedule": "cosine"},
             "runtime": {"precision": precision, "channels_last": precision == "bf16"}}]


def trained(name: str, out: Path, epochs: int, precision: str) -> Path:
    if name.startswith("cifar-"):
        from reference_model import cifar

        cifar("test", 1)  # the shared copy unpacked where train_layers points
    cfg, _ = api.resolve_config(train_layers(name, epochs, precision))
    return api.train(cfg, out=out / name).run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits-pgd-at,cifar-pgd-at,cifar-trades")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="runs/bench-bf16")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    emulated = slow_bf16(device)
    train_precision = "fp32" if emulated else "bf16"
    table = Table(title=f"bf16 search against fp32 search, verdicts fp32, on {device}"
                        + (f" (bf16 emulated: {emulated})" if emulated else ""))
    for col in ("model", "attack", "points", "fp32 robust", "bf16 robust", "diff (points)",
                "verdicts differ", "fp32 s", "bf16 s"):
        table.add_column(col, justify="right")
    for name in args.models.split(","):
        run = trained(name, Path(args.out), args.epochs, train_precision)
        target = api.from_run(run)
        eps = "0.2" if name.startswith("digits") else "8/255"
        n = None if name.startswith("digits") else args.n
        for attacks, params in ((["pgd"], {"pgd": {"steps": 20}}), (["autoattack"], {})):
            rows = {}
            for precision in ("fp32", "bf16"):
                cfg = api.EvalConfig(attacks=attacks, params=params, eps=[eps], n_examples=n,
                                     all_examples=n is None, precision=precision,
                                     device=args.device)
                (outcome,) = api.evaluate(target, cfg, quiet=True)
                rows[precision] = outcome.record
            a, b = rows["fp32"], rows["bf16"]
            n_points = a.selection.n_examples
            differ = (decode_bits(a.points.robust) ^ decode_bits(b.points.robust)).bit_count()
            table.add_row(name, attacks[0], str(n_points), f"{a.robust_acc:.2%}",
                          f"{b.robust_acc:.2%}",
                          f"{100 * (b.robust_acc - a.robust_acc):+.2f}", str(differ),
                          f"{a.seconds:.1f}", f"{b.seconds:.1f}")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
