"""Train the baseline defenses and evaluate each: clean, PGD-20 and AutoAttack accuracy.

    python benchmarks/defenses.py digits            # seconds per defense; writes a Markdown table
    python benchmarks/defenses.py cifar-subset      # 5,000 shared CIFAR-10 images, small net, bf16

Every number comes from robench's own commands (api.train, api.evaluate), so the table is what
a user gets; it is printed as Markdown for benchmarks/digits_defenses.md.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
from pathlib import Path

from robench import api
from robench.config import EvalConfig
from robench.targets import from_run

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data" / "cifar10-jpeg.tar.gz"
DEFENSES = ["standard", "gaussian", "fast-at", "pgd-at", "trades"]


def shared_cifar() -> Path:
    """The shared CIFAR-10 copy, unpacked once into a fixed folder under the temp dir.

    A fixed path keeps the runs' configs (which name the dataset folder) the same from one
    invocation to the next, so a benchmark run again with the same `--out` reuses its complete
    runs instead of training them again. The marker file is written after a whole unpacking.
    """
    root = Path(tempfile.gettempdir()) / "robench-shared-cifar10"
    if not (root / ".complete").is_file():
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(SHARED) as tar:
            tar.extractall(root, filter="data")
        (root / ".complete").touch()
    return root / "cifar10-jpeg"


def settings(which: str) -> tuple[dict, dict, str]:
    """(training layer, eval overrides, description) for a benchmark."""
    if which == "digits":
        return ({"data": {"dataset": "digits"}, "optim": {"epochs": 30},
                 "runtime": {"device": "cpu"}},
                {"eps": ["0.2"], "n_examples": None},
                "digits (1,293 train, 144 val, 360 test), cnn, 30 epochs, Linf 0.2, fp32")
    return ({"data": {"dataset": f"imagefolder:{shared_cifar()}", "train_subset": 5000},
             "model": {"arch": "preactresnet18", "width": 0.25},
             "optim": {"epochs": 8, "batch_size": 128, "lr": 0.1, "schedule": "onecycle"},
             "validation": {"every": 4},
             "runtime": {"device": "cpu", "precision": "bf16", "channels_last": True}},
            {"eps": ["8/255"], "n_examples": 200},
            "shared CIFAR-10 copy: 5,000 train images (stratified), 1,000 val, 200 test points "
            "(stratified); preactresnet18 at width 0.25; 8 epochs, one-cycle LR 0.1; bf16 "
            "training; Linf 8/255; evaluation in fp32")


def train_and_attack(layers: list[dict], out: Path, eval_kw: dict):
    """Train (or reuse) the run of `layers`, then PGD-20 and AutoAttack on it, as a user would:
    (train result, PGD-20 record, AutoAttack record)."""
    cfg, _ = api.resolve_config(layers)
    result = api.train(cfg, out=out, quiet=True)
    target = from_run(result.run_dir)
    pgd, = api.evaluate(target, EvalConfig(attacks=["pgd"], params={"pgd": {"steps": 20}},
                                           device="cpu", **eval_kw), quiet=True)
    aa, = api.evaluate(target, EvalConfig(attacks=["autoattack"], device="cpu", **eval_kw),
                       quiet=True)
    return result, pgd.record, aa.record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["digits", "cifar-subset"])
    parser.add_argument("--out", default=None, help="runs directory (default: a temp dir)")
    parser.add_argument("--defenses", default=",".join(DEFENSES))
    args = parser.parse_args()
    layer, eval_kw, description = settings(args.which)
    out = Path(args.out or tempfile.mkdtemp())
    rows = []
    for name in args.defenses.split(","):
        t0 = time.perf_counter()
        result, pgd, r = train_and_attack([layer, {"defense": name}], out, eval_kw)
        wall = time.perf_counter() - t0
        rows.append((name, r.clean_acc, pgd.robust_acc, r.robust_acc, r.robust_ci95,
                     result.summary["train_seconds"], wall, r.seconds,
                     result.summary.get("catastrophic_overfitting")))
        print(f"{name}: clean {r.clean_acc:.2%} pgd-20 {pgd.robust_acc:.2%} "
              f"autoattack {r.robust_acc:.2%} train {result.summary['train_seconds']:.0f}s",
              flush=True)
    lines = [f"Setting: {description}.", "",
             "| defense | clean | PGD-20 | AutoAttack [95 % CI] | training s | AutoAttack s |",
             "|---|---|---|---|---|---|"]
    for name, clean, pgd, aa, ci, train_s, _, aa_s, co in rows:
        lines.append(f"| {name}{' (catastrophic overfitting)' if co else ''} | {clean:.1%} | "
                     f"{pgd:.1%} | {aa:.1%} [{ci[0]:.1%}, {ci[1]:.1%}] | {train_s:.0f} | "
                     f"{aa_s:.0f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
