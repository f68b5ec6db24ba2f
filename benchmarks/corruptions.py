"""Common corruptions: how fast robench generates them, and what they measure.

    python benchmarks/corruptions.py speed            # 10,000 shared CIFAR-10 test images x 75
    python benchmarks/corruptions.py accuracy         # standard vs gaussian on a CIFAR subset

`speed` times robench.corruptions on the whole test split of the shared CIFAR-10 copy at all
15 corruptions x 5 severities, in chunks of 1,000 images as `robench eval --attack corruptions`
runs them, and prints seconds per corruption. `accuracy` trains (or reuses) a standard and a
Gaussian-noise model in the setting of benchmarks/defenses.py and evaluates both with
`robench eval --attack corruptions --reference <standard>` on 500 test points.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from defenses import settings  # noqa: E402  (benchmarks/defenses.py)

from robench import api  # noqa: E402
from robench import corruptions as corruption_lib  # noqa: E402
from robench.data import load_dataset, to_float  # noqa: E402
from robench.evaluation.corruptions import CHUNK, CorruptionConfig, evaluate_corruptions  # noqa: E402
from robench.targets import from_run  # noqa: E402


def speed(threads: int) -> None:
    torch.set_num_threads(threads)
    layer, _, _ = settings("cifar-subset")
    test = load_dataset(layer["data"]["dataset"]).test
    print(f"{len(test)} test images, {torch.get_num_threads()} thread(s)", flush=True)
    total = 0.0
    for name in corruption_lib.BENCHMARK:
        t0 = time.perf_counter()
        for severity in corruption_lib.SEVERITIES:
            for i, start in enumerate(range(0, len(test), CHUNK)):
                corruption_lib.corrupt(to_float(test.x[start:start + CHUNK]), name, severity,
                                       seed=i)
        seconds = time.perf_counter() - t0
        total += seconds
        print(f"| {name} | {seconds:.1f} |", flush=True)
    print(f"| all 75 settings | {total:.1f} |")


def accuracy(out: Path) -> None:
    layer, _, description = settings("cifar-subset")
    print(f"Setting: {description}.", flush=True)
    runs = {}
    for name in ("standard", "gaussian"):
        cfg, _ = api.resolve_config([layer, {"defense": name}])
        runs[name] = api.train(cfg, out=out, quiet=True).run_dir
    cfg = CorruptionConfig(n_examples=500, device="cpu", precision="bf16")
    reference = from_run(runs["standard"])
    for name, run_dir in runs.items():
        t0 = time.perf_counter()
        r = evaluate_corruptions(from_run(run_dir), cfg,
                                 reference=reference if name != "standard" else None,
                                 quiet=True, force=True).record
        c = r.corruptions
        mce = "–" if c.mce is None else f"{100 * c.mce:.1f}"
        print(f"| {name} | {r.clean_acc:.1%} | {r.robust_acc:.1%} [{r.robust_ci95[0]:.1%}, "
              f"{r.robust_ci95[1]:.1%}] | {mce} | {time.perf_counter() - t0:.0f} |", flush=True)
        print("   per corruption: " + ", ".join(
            f"{k} {sum(v) / len(v):.0%}" for k, v in c.accuracy.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["speed", "accuracy"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=None, help="runs directory (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.which == "speed":
        speed(args.threads)
    else:
        accuracy(Path(args.out or tempfile.mkdtemp()))


if __name__ == "__main__":
    main()
