"""Planted models and planted soundness cases: what robench shows against the truth.

    python benchmarks/planted.py [--out DIR] [--n 200] [--eps 0.15] [--only models|cases]

Two tables. The planted soundness cases (benchmarks/planted_cases/*.py, one module per area:
report, record reuse, model checks, shards, training, attacks, randomness) each plant one
way a number could come out higher than robench measured, run robench on it, and print what
robench shows beside the truth. Run with PYTHONPATH=<older checkout> for an older robench
(a case that needs what the older one lacks prints its error).

The planted models table trains two digits CNNs (12 epochs, seeds 0 and 1) into --out, wraps them in the planted
models of tests/planted.py (randomness from Python's `random`, NumPy, a fixed-shape
`torch.randn`, a coin per pass), evaluates each with `robench eval`'s PGD-20 and AutoAttack,
and prints, beside them, the robust accuracy of an EOT-PGD written here (20 steps of eps/4,
gradients summed over 20 passes, last iterate, judged by one pass): what "attacking the real
model" gives. Run it with another checkout on PYTHONPATH to compare versions of robench.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from planted import (  # noqa: E402
    CoinFlipEnsemble,
    FixedShapeNoise,
    NumpyRandomShift,
    PythonRandomMember,
)

from robench import api  # noqa: E402
from robench.config import EvalConfig  # noqa: E402
from robench.data import to_float  # noqa: E402
from robench.targets import from_run  # noqa: E402


def eot_pgd(model, x, y, eps, steps=20, draws=20):
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = sum(F.cross_entropy(model(x_adv), y, reduction="sum") for _ in range(draws))
        (g,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = torch.min(torch.max(x_adv + eps / 4 * g.sign(), x - eps), x + eps)
            x_adv = x_adv.clamp(0, 1)
    return x_adv.detach()


def soundness_cases(workdir: Path) -> None:
    """One row per planted case of benchmarks/planted_cases/*.py: each module's cases()."""
    print("| area | planted case | robench shows | truth |")
    print("|---|---|---|---|")
    for path in sorted((Path(__file__).parent / "planted_cases").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"planted_cases_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        (workdir / path.stem).mkdir(parents=True, exist_ok=True)
        try:
            spec.loader.exec_module(module)
            rows = module.cases(workdir / path.stem)
        except Exception as error:  # an older robench lacks what the case needs
            print(f"| {path.stem} | (all) | error: {type(error).__name__}: {error} | |")
            continue
        for case, shown, truth in rows:
            print(f"| {path.stem} | {case} | {shown} | {truth} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/planted")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--eps", type=float, default=0.15)
    parser.add_argument("--only", choices=["models", "cases"], default=None)
    args = parser.parse_args()
    if args.only != "models":
        soundness_cases(Path(args.out) / "cases")
        if args.only == "cases":
            return
    run_dirs = []
    for seed in (0, 1):
        cfg, _ = api.resolve_config([{"optim": {"epochs": 12},
                                      "runtime": {"device": "cpu", "seed": seed}}])
        run_dirs.append(api.train(cfg, out=args.out, quiet=True).run_dir)
    a, b = (from_run(r).model for r in run_dirs)
    test = from_run(run_dirs[0]).test
    x, y = to_float(test.x[:args.n]), test.y[:args.n]
    models = {"Python random member": PythonRandomMember(a, b),
              "NumPy brightness shift": NumpyRandomShift(a),
              "fixed-shape torch.randn noise": FixedShapeNoise(a, (1, 1, 8, 8), 0.3),
              "coin-flip ensemble": CoinFlipEnsemble(a, b)}
    print(f"| model | robench pgd | robench autoattack | EOT-PGD on the model |  "
          f"(n={args.n}, Linf {args.eps})")
    print("|---|---|---|---|")
    for name, model in models.items():
        model.eval()
        cells = []
        for attacks in (["pgd"], ["autoattack"]):
            target = from_run(run_dirs[0])
            target.model = model
            cfg = EvalConfig(attacks=attacks, eps=[str(args.eps)], n_examples=args.n,
                             device="cpu")
            (outcome,) = api.evaluate(target, cfg, quiet=True, force=True)
            r = outcome.record
            cells.append(f"{r.robust_acc:.1%}" + (" (flagged)" if "stochastic-model" in
                                                   r.flags else " (not flagged)"))
        torch.manual_seed(0)
        random.seed(0)
        np.random.seed(0)
        x_adv = eot_pgd(model, x, y, args.eps)
        with torch.no_grad():
            reference = int((model(x_adv).argmax(1) == y).sum()) / len(y)
        print(f"| {name} | {cells[0]} | {cells[1]} | {reference:.1%} |")


if __name__ == "__main__":
    main()
