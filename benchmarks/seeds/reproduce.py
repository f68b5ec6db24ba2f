"""One command per seed: train it and its baselines, evaluate them, write the comparison.

    python benchmarks/seeds/reproduce.py SEED --scale cpu [--data digits|cifar-subset]
    python benchmarks/seeds/reproduce.py SEED --scale paper --device cuda [--dataset cifar10
        --data-dir DIR] [--out DIR] [--n-examples N] [--estimate-only]

SEED is kap, rcm, gwi, local-balls or advbn. `--scale paper` trains with the shipped recipes
(`robench list recipes`: the authors' settings, each recipe's header names the paper and the
published number) and evaluates with the paper's protocol: AutoAttack (standard, or rand for
a randomised model, which robench detects) with PGD-20 for the Lp seeds, the 15 CIFAR-10-C
corruptions at severities 1-5 for GWI and AdvBN (the official files when they are in the
data directory, else robench's generated ones). Before it trains it measures each run's
seconds per step and prints the expected device-hours; run again with the same --out and it
resumes where it stopped (complete runs and recorded evaluations are reused, an interrupted
run continues from its last epoch). `--scale cpu` is the small-scale study a CPU can run
(the settings of benchmarks/defenses.py) and regenerates benchmarks/seeds/SEED-DATA.md.

The table is `robench report` over the runs' records: no number is typed by hand. The
published figure beside it is quoted from methods.md and the recipes' headers.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from defenses import settings  # noqa: E402  (benchmarks/defenses.py)

from robench import api, runs  # noqa: E402
from robench.augment import copies  # noqa: E402
from robench.config import EvalConfig  # noqa: E402
from robench.evaluation.corruptions import CorruptionConfig, evaluate_corruptions  # noqa: E402
from robench.recipes import recipe_layer  # noqa: E402
from robench.registry import ARCHS  # noqa: E402
from robench.report import load_records, write_report  # noqa: E402
from robench.targets import from_run  # noqa: E402
from robench.training import steps_per_epoch  # noqa: E402

HERE = Path(__file__).resolve().parent


@dataclass
class Run:
    label: str
    layers: list[dict]
    init: str | None = None  # label of the run whose final weights this one starts from


@dataclass
class Seed:
    title: str
    claim: str
    published: str
    protocol: str  # "lp" (PGD-20 + AutoAttack) or "corruptions"
    reference: str | None = None  # the run mCE is computed against (corruptions)


SEEDS = {
    "kap": Seed(
        "KAP (Bashivan et al. 2022)",
        "AutoAttack robustness without adversarial examples, above Gaussian-noise training "
        "at the same sigma.",
        "The paper's CIFAR-10 table could not be retrieved (methods.md): only the direction "
        "is the claim.", "lp"),
    "rcm": Seed(
        "RCM, larger feature maps before global average pooling (Xu et al. 2022)",
        "higher robust accuracy with fewer strides (ResNet-18 1122) or the input upsampled x2 "
        "inside the model, under the same adversarial training.",
        "Records in the authors' repository (methods.md): AT 87.34 % clean / 41.56 % "
        "AutoAttack (last epoch), TRADES 83.09 / 47.68. The 1222 ResNet-18 under the same "
        "recipe: AT 84.15 / 48.72, TRADES 82.62 / 49.47 (MTandHJ/PyTorch-Robust).", "lp"),
    "gwi": Seed(
        "Group-wise inhibition (Liu et al. 2021)",
        "better accuracy under common corruptions at no cost in clean accuracy.",
        "ResNeXt-29 with AugMix: 3.50 % CIFAR-10 error, 12.31 % mean CIFAR-10-C corruption "
        "error (the authors' README; methods.md).", "corruptions", reference="standard"),
    "local-balls": Seed(
        "Local balls around adversaries (robench's interpretation of Lu & Kumar 2021)",
        "a weak (FGSM-RS) adversary reaches PGD-AT robustness at lower training cost.",
        "No number could be retrieved (abstract only, methods.md).", "lp"),
    "advbn": Seed(
        "AdvBN fine-tuning (Shu et al. 2021)",
        "better accuracy under common corruptions than the source model.",
        "ImageNet ResNet-50 only: clean 76.1 -> 77.0 %, ImageNet-C mCE 76.7 -> 72.7 "
        "(methods.md); no CIFAR figure exists.", "corruptions", reference="standard (source)"),
}


# --- the runs of each seed -------------------------------------------------------------------


def cpu_runs(seed: str, layer: dict, data: str) -> list[Run]:
    """The small-scale study: benchmarks/defenses.py's setting with each defense's defaults."""
    arch = layer.get("model", {}).get("arch", "cnn")
    base, rcm = (ARCHS.entry(arch).meta[k] for k in ("default_strides", "rcm_strides"))
    if seed == "kap":
        return [Run("gaussian", [layer, {"defense": "gaussian"}]),
                Run("kap", [layer, {"defense": "kap"}])]
    if seed == "rcm":
        compared = [Run(f"pgd-at {base}", [layer, {"defense": "pgd-at"}]),
                Run(f"rcm+pgd-at {rcm}", [layer, {"defense": "rcm+pgd-at"}])]
        if data == "digits":  # at CIFAR scale its AutoAttack alone took over 25 minutes
            compared.append(Run(f"rcm+pgd-at {base} x2", [layer, {
                "defense": "rcm+pgd-at", "model": {"strides": base},
                "defenses": {"rcm": {"scale": 2}}}]))
        return compared
    if seed == "gwi":
        cfg, _ = api.resolve_config([layer])
        n_train = 1293 if data == "digits" else 5000  # the setting's training images
        iters = cfg.optim.epochs * steps_per_epoch(n_train, cfg.optim.batch_size)
        # The paper's start (500 of ~39,000 iterations) would never come in a run this short.
        return [Run("standard", [layer, {"defense": "standard"}]),
                Run("gwi", [layer, {"defense": "gwi",
                                    "defenses": {"gwi": {"start": iters // 5}}}])]
    if seed == "local-balls":
        return [Run(name, [layer, {"defense": name}])
                for name in ("fast-at", "local-balls", "pgd-at")]
    finetune = recipe_layer("advbn-finetune")
    return [Run("standard (source)", [layer, {"defense": "standard"}]),
            Run("+ 20 epochs standard", [layer, {"optim": finetune["optim"],
                                                 "defense": "standard"}], init="standard (source)"),
            Run("+ 20 epochs advbn", [layer, finetune], init="standard (source)"),
            Run("advbn from scratch (robench's extension)", [layer, {"defense": "advbn"}])]


def paper_runs(seed: str, common: dict) -> list[Run]:
    """The recipes at full length; `common` (device, data) goes on top of each."""
    def r(name: str, *extra: dict) -> list[dict]:
        return [recipe_layer(name), *extra, common]

    def swapped(name: str, defense: str, params: dict | None = None) -> list[dict]:
        """Recipe `name` with another defense: the same data, arch and optimiser."""
        layer = {k: v for k, v in recipe_layer(name).items() if k != "defenses"}
        layer["defense"] = defense
        if params:
            layer["defenses"] = {defense: params}
        return [layer, common]

    if seed == "kap":
        return [Run("gaussian (sigma 0.2)", swapped("cifar10-kap", "gaussian", {"sigma": 0.2})),
                Run("kap", r("cifar10-kap"))]
    if seed == "rcm":
        return [Run("pgd-at 1222", r("cifar10-pgd-at-bag-of-tricks")),
                Run("rcm+pgd-at 1122", r("cifar10-rcm-pgd-at")),
                Run("trades 1222", r("cifar10-trades")),
                Run("rcm+trades 1122", r("cifar10-rcm-trades"))]
    if seed == "gwi":
        return [Run("standard", swapped("cifar10-gwi", "standard")),
                Run("gwi", r("cifar10-gwi"))]
    if seed == "local-balls":
        return [Run("fast-at", r("cifar10-fast-at")),
                Run("local-balls", r("cifar10-local-balls")),
                Run("pgd-at", r("cifar10-pgd-at-bag-of-tricks"))]
    finetune = recipe_layer("cifar10-advbn-finetune")
    return [Run("standard (source)", r("cifar10-standard")),
            Run("+ 20 epochs standard", [{"optim": finetune["optim"], "defense": "standard"},
                                         common], init="standard (source)"),
            Run("+ 20 epochs advbn", r("cifar10-advbn-finetune"), init="standard (source)")]


# --- training and evaluation ----------------------------------------------------------------


def train(run: Run, done: dict[str, Path], out: Path):
    layers = ([api.init_layer(done[run.init])] if run.init else []) + run.layers
    cfg, _ = api.resolve_config(layers)
    run_dir = out / runs.run_id_of(cfg)
    if run_dir.exists() and not runs.is_complete(run_dir):  # interrupted: continue it
        return api.resume(run_dir, quiet=True)
    return api.train(cfg, out=out, quiet=True)


def seconds_per_step(run: Run, scratch: Path) -> tuple[float, int]:
    """(measured seconds per training step, steps of the whole run) for `run`."""
    layers = run.layers
    cfg, _ = api.resolve_config(layers)
    bs, epochs = cfg.optim.batch_size, cfg.optim.epochs
    probe, _ = api.resolve_config([*layers, {"data": {"train_subset": 6 * bs, "val_size": bs},
                                             "optim": {"epochs": 1},
                                             "validation": {"steps": 1}}])
    result = api.train(probe, out=scratch, quiet=True)
    n_copies = copies(cfg.data.augment or "")
    per_step = result.summary["train_seconds"] / steps_per_epoch(
        result.summary["n_train"] * n_copies, bs)
    full = steps_per_epoch(49000 * n_copies, bs) * epochs  # CIFAR-10 less its 1,000 val images
    return per_step, full


def evaluate(seed: Seed, label: str, run_dir: Path, reference: Path | None, args) -> None:
    target = from_run(run_dir, checkpoint=args.checkpoint)
    if seed.protocol == "lp":
        kw = dict(device=args.device, n_examples=args.n, eps=[args.eps])
        api.evaluate(target, EvalConfig(attacks=["pgd"], params={"pgd": {"steps": 20}}, **kw),
                     quiet=True)
        api.evaluate(target, EvalConfig(attacks=["autoattack"], **kw), quiet=True)
    else:
        ref = from_run(reference, checkpoint=args.checkpoint) if reference else None
        cfg = CorruptionConfig(n_examples=args.n, device=args.device,
                               precision=args.corruption_precision)
        evaluate_corruptions(target, cfg, reference=ref, quiet=True)
    print(f"  evaluated {label}", flush=True)


def report_markdown(run_dirs: list[Path]) -> str:
    """`robench report` over the runs' records, its Markdown without the page title."""
    with tempfile.TemporaryDirectory() as tmp:
        write_report(load_records(run_dirs), Path(tmp), formats=("md",))
        lines = (Path(tmp) / "report.md").read_text().splitlines()
    return "\n".join(line.replace("## ", "### ", 1) if line.startswith("## ") else line
                     for line in lines[1:]).strip()


def write_page(name: str, seed: Seed, args, description: str, labels: dict[str, Path],
               seconds: float) -> Path:
    cpu = platform.processor() or platform.machine()
    device = (torch.cuda.get_device_name() if args.device.startswith("cuda")
              else f"CPU ({cpu}, {torch.get_num_threads()} threads)")
    command = " ".join(["python benchmarks/seeds/reproduce.py", name, "--scale", args.scale]
                       + (["--data", args.data] if args.scale == "cpu" else []))
    lines = [f"# {seed.title}: {args.scale} scale, {args.data}", "",
             "Generated by `benchmarks/seeds/reproduce.py`; do not edit by hand.", "",
             "```", command, "```", "",
             f"{datetime.date.today().isoformat()}, {device}, torch {torch.__version__}; "
             f"{seconds / 60:.0f} min wall for the whole command.", "",
             f"- Claim: {seed.claim}",
             f"- Published: {seed.published}",
             f"- Setting: {description}.",
             "- Runs: " + "; ".join(f"{label} = `{path.name}`" for label, path in labels.items()),
             "- One training seed per row: differences inside the 95 % intervals are not "
             "findings.", "", report_markdown(list(labels.values())), ""]
    path = Path(args.page_dir) / f"{name}-{args.data}.md"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed", choices=sorted(SEEDS))
    parser.add_argument("--scale", choices=["cpu", "paper"], required=True)
    parser.add_argument("--data", choices=["digits", "cifar-subset"], default="digits",
                        help="--scale cpu: which small-scale setting")
    parser.add_argument("--dataset", default="cifar10", help="--scale paper: the dataset "
                        "(cifar10 with --data-dir, or imagefolder:PATH)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="runs directory (default: a temp dir)")
    parser.add_argument("--n-examples", type=int, default=None, dest="n")
    parser.add_argument("--estimate-only", action="store_true")
    parser.add_argument("--page-dir", default=str(HERE))
    args = parser.parse_args()
    seed = SEEDS[args.seed]
    t0 = time.perf_counter()
    out = Path(args.out or tempfile.mkdtemp(prefix=f"reproduce-{args.seed}-"))
    if args.scale == "cpu":
        layer, eval_kw, description = settings(args.data)
        plan = cpu_runs(args.seed, layer, args.data)
        args.eps = eval_kw["eps"][0]
        args.n = args.n or (360 if args.data == "digits" else  # all digits test points
                            200 if seed.protocol == "lp" else 1000)
        args.checkpoint, args.corruption_precision = "final", (
            "fp32" if args.data == "digits" else "bf16")
    else:
        args.data = args.dataset.split(":")[0].split("/")[-1]
        common = {"data": {"dataset": args.dataset, **(
            {"data_dir": args.data_dir} if args.data_dir else {})},
            "runtime": {"device": args.device}}
        plan, description = paper_runs(args.seed, common), "the recipes named in each run"
        args.eps, args.n = "8/255", args.n or 10000
        args.checkpoint, args.corruption_precision = "best", "fp32"
        estimate(plan, out)
        if args.estimate_only:
            return
    done: dict[str, Path] = {}
    for run in plan:
        result = train(run, done, out)
        done[run.label] = result.run_dir
        print(f"  trained {run.label}: {result.run_dir.name}", flush=True)
    reference = done.get(seed.reference) if seed.reference else None
    for label, run_dir in done.items():
        evaluate(seed, label, run_dir, reference if run_dir != reference else None, args)
    page = write_page(args.seed, seed, args, description, done, time.perf_counter() - t0)
    print(f"wrote {page}")


def estimate(plan: list[Run], out: Path) -> None:
    """Print each run's expected device-hours from a short measured probe, before training."""
    total = 0.0
    with tempfile.TemporaryDirectory() as scratch:
        for run in plan:
            if run.init is not None:
                print(f"  {run.label}: fine-tunes '{run.init}'; not estimated (short)")
                continue
            per_step, steps = seconds_per_step(run, Path(scratch))
            hours = per_step * steps / 3600
            total += hours
            print(f"  {run.label}: {per_step:.3f} s/step x {steps} steps = {hours:.1f} h")
    print(f"expected training time: {total:.1f} device-hours, evaluation not included "
          f"(runs in {out})", flush=True)


if __name__ == "__main__":
    main()
