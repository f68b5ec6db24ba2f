"""Seeds 1 and 2 at small scale: does the papers' direction hold?

    python benchmarks/seeds/kap_rcm.py digits          # a few minutes on 2 CPU cores
    python benchmarks/seeds/kap_rcm.py cifar-subset    # 5,000 shared CIFAR-10 images, ~1 hour

Two comparisons, each trained and evaluated by robench's own API (what a user gets):
- KAP (Bashivan et al.) against Gaussian noise training with the same sigma (0.1): KAP's
  claim is AutoAttack robustness without adversarial examples;
- PGD-AT with the baseline strides against RCM's fewer strides and RCM's x2 input upsampling
  (Xu et al.): the claim is higher robust accuracy with larger maps before average pooling.
The settings (data, arch, epochs, precision) are those of benchmarks/defenses.py, so the
pgd-at and gaussian rows can be read against its table too. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defenses import settings, train_and_attack  # noqa: E402  (benchmarks/defenses.py)

from robench.registry import ARCHS  # noqa: E402


def variants(arch: str) -> list[tuple[str, dict]]:
    """(row label, config layer) for each model compared."""
    base = ARCHS.entry(arch).meta["default_strides"]
    rcm = ARCHS.entry(arch).meta["rcm_strides"]
    return [
        ("gaussian (sigma 0.1)", {"defense": "gaussian"}),
        ("kap (input sigma 0.1)", {"defense": "kap"}),
        (f"pgd-at, strides {base}", {"defense": "pgd-at"}),
        (f"rcm+pgd-at, strides {rcm}", {"defense": "rcm+pgd-at"}),
        (f"rcm+pgd-at, strides {base}, input x2",
         {"defense": "rcm+pgd-at", "model": {"strides": base},
          "defenses": {"rcm": {"scale": 2}}}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["digits", "cifar-subset"])
    parser.add_argument("--out", default=None, help="runs directory (default: a temp dir)")
    parser.add_argument("--only", default=None, help="comma-separated row numbers (1-based)")
    args = parser.parse_args()
    layer, eval_kw, description = settings(args.which)
    out = Path(args.out or tempfile.mkdtemp())
    arch = layer.get("model", {}).get("arch", "cnn")
    chosen = variants(arch)
    if args.only:
        chosen = [chosen[int(i) - 1] for i in args.only.split(",")]
    lines = [f"Setting: {description}.", "",
             "| model | clean | PGD-20 | AutoAttack [95 % CI] | training s | AutoAttack s |",
             "|---|---|---|---|---|---|"]
    for label, variant in chosen:
        t0 = time.perf_counter()
        result, pgd, r = train_and_attack([layer, variant], out, eval_kw)
        version = r.per_attack[0].params["suite"]["version"]
        row = (f"| {label}{'' if version == 'standard' else f' (AutoAttack {version})'} | "
               f"{r.clean_acc:.1%} | {pgd.robust_acc:.1%} | {r.robust_acc:.1%} "
               f"[{r.robust_ci95[0]:.1%}, {r.robust_ci95[1]:.1%}] | "
               f"{result.summary['train_seconds']:.0f} | {r.seconds:.0f} |")
        lines.append(row)
        print(row, f"({time.perf_counter() - t0:.0f} s wall)", flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
