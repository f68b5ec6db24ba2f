"""Seeds 3, 4 and 5 at small scale: does each paper's direction hold?

    python benchmarks/seeds/gwi_localballs_advbn.py digits
    python benchmarks/seeds/gwi_localballs_advbn.py cifar-subset [--parts gwi,local-balls,advbn]

Three comparisons, each trained and evaluated by robench's own API (what a user gets), in the
settings of benchmarks/defenses.py:
- gwi vs standard: clean accuracy, accuracy under the 15 generated corruptions (mean and mCE
  against the standard run) and training seconds. GWI's inhibition starts after a fifth of
  the run's iterations (the paper's 500 of ~39,000 would never start in a run this short);
  a third run with the update from iteration 0 measures its cost over a whole run.
- local-balls (weak FGSM-RS adversary) vs fast-at vs pgd-at (10 steps): AutoAttack accuracy
  and training seconds.
- advbn fine-tuning of the standard run (`--init`, recipe advbn-finetune: 20 epochs, lr 1e-3,
  x0.1 at 10, wd 1e-4, stem and first stage frozen) vs continuing standard training with the
  same optimiser settings: clean and corruption accuracy; and advbn trained from scratch in
  the source run's setting (robench's extension).
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defenses import settings  # noqa: E402  (benchmarks/defenses.py)

from robench import api  # noqa: E402
from robench.config import EvalConfig  # noqa: E402
from robench.corruption_eval import CorruptionConfig, evaluate_corruptions  # noqa: E402
from robench.recipes import recipe_layer  # noqa: E402
from robench.targets import from_run  # noqa: E402
from robench.training import steps_per_epoch  # noqa: E402


def train(layers: list[dict], out: Path):
    cfg, _ = api.resolve_config(layers)
    return api.train(cfg, out=out, quiet=True)


def corruption_row(label: str, result, reference, n: int, precision: str) -> str:
    cfg = CorruptionConfig(n_examples=n, device="cpu", precision=precision)
    ref = from_run(reference.run_dir) if reference is not None else None
    r = evaluate_corruptions(from_run(result.run_dir), cfg, reference=ref, quiet=True).record
    c = r.corruptions
    mce = "–" if c.mce is None else f"{100 * c.mce:.1f}"
    return (f"| {label} | {r.clean_acc:.1%} | {r.robust_acc:.1%} [{r.robust_ci95[0]:.1%}, "
            f"{r.robust_ci95[1]:.1%}] | {mce} | {result.summary['train_seconds']:.0f} |")


def gwi(layer, which, out, n, precision) -> list[str]:
    standard = train([layer, {"defense": "standard"}], out)
    cfg, _ = api.resolve_config([layer])
    iters = cfg.optim.epochs * steps_per_epoch(standard.summary["n_train"],
                                                cfg.optim.batch_size)
    run = train([layer, {"defense": "gwi", "defenses": {"gwi": {"start": iters // 5}}}], out)
    rows = ["| model | clean | mean corruption acc [95 % CI] | mCE vs standard | training s |",
            "|---|---|---|---|---|",
            corruption_row("standard", standard, None, n, precision),
            corruption_row(f"gwi (start {iters // 5} of {iters} iterations)", run, standard, n,
                           precision)]
    # The cost over a whole run, data pipeline included: the update from the first iteration.
    timing = train([layer, {"defense": "gwi", "defenses": {"gwi": {"start": 0}}}], out)
    base = standard.summary["train_seconds"]
    return rows + ["", f"Training seconds (validation excluded): standard {base:.0f}; gwi as "
                   f"above {run.summary['train_seconds']:.0f} "
                   f"({run.summary['train_seconds'] / base:.2f}x); gwi with its update from "
                   f"iteration 0, every 3rd, {timing.summary['train_seconds']:.0f} "
                   f"({timing.summary['train_seconds'] / base:.2f}x)."]


def local_balls(layer, which, out, eval_kw) -> list[str]:
    rows = ["| defense | clean | AutoAttack [95 % CI] | training s |", "|---|---|---|---|"]
    for name in ("fast-at", "local-balls", "pgd-at"):
        result = train([layer, {"defense": name}], out)
        aa, = api.evaluate(from_run(result.run_dir),
                           EvalConfig(attacks=["autoattack"], device="cpu", **eval_kw),
                           quiet=True)
        r = aa.record
        rows.append(f"| {name} | {r.clean_acc:.1%} | {r.robust_acc:.1%} "
                    f"[{r.robust_ci95[0]:.1%}, {r.robust_ci95[1]:.1%}] | "
                    f"{result.summary['train_seconds']:.0f} |")
        print(rows[-1], flush=True)
    return rows


def advbn(layer, which, out, n, precision) -> list[str]:
    source = train([layer, {"defense": "standard"}], out)
    finetune = recipe_layer("advbn-finetune")
    init = api.init_layer(source.run_dir)
    advbn_run = train([layer, init, finetune], out)
    continued = train([layer, init, {"optim": finetune["optim"], "defense": "standard"}], out)
    scratch = train([layer, {"defense": "advbn"}], out)  # robench's extension
    return ["| model | clean | mean corruption acc [95 % CI] | mCE vs source | training s |",
            "|---|---|---|---|---|",
            corruption_row("standard (source run)", source, None, n, precision),
            corruption_row("+ 20 epochs standard", continued, source, n, precision),
            corruption_row("+ 20 epochs advbn", advbn_run, source, n, precision),
            corruption_row("advbn from scratch, same epochs as the source (robench's extension)",
                           scratch, source, n, precision)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["digits", "cifar-subset"])
    parser.add_argument("--parts", default="gwi,local-balls,advbn")
    parser.add_argument("--out", default=None, help="runs directory (default: a temp dir)")
    args = parser.parse_args()
    layer, eval_kw, description = settings(args.which)
    out = Path(args.out or tempfile.mkdtemp())
    n = 360 if args.which == "digits" else 1000
    precision = "fp32" if args.which == "digits" else "bf16"
    print(f"Setting: {description}.\n", flush=True)
    for part in args.parts.split(","):
        if part == "gwi":
            lines = gwi(layer, args.which, out, n, precision)
        elif part == "local-balls":
            lines = local_balls(layer, args.which, out, eval_kw)
        else:
            lines = advbn(layer, args.which, out, n, precision)
        print(f"### {part}\n\n" + "\n".join(lines) + "\n", flush=True)


if __name__ == "__main__":
    main()
