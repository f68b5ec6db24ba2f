"""`robench eval`: the Lp threat models (one record per eps) and common corruptions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from robench.cli import options as shared
from robench.cli.options import (
    Checkpoint,
    Norm,
    Precision,
    ZooOptions,
    attack_params,
    batch_size_arg,
    corruption_names,
    n_examples_arg,
    target_of,
)
from robench.cli.output import shell_path, stderr, stdout, suggest, user_errors
from robench.errors import UserError

# robench.api and the packages below it are imported inside the command, so that
# `robench --help` and a mistyped flag answer without loading torch.


EVAL_HELP = """Clean and robust accuracy under a sequence of attacks: one record per eps.

Clean predictions first, then each attack in order on the points still correct
(AutoAttack's protocol): robust accuracy is the per-point worst case. Records go to
<run>/evals/<key>.json; an evaluation already recorded is shown, not repeated (--force).

Examples:

  robench eval runs/<run-id>                            # AutoAttack, the dataset's eps

  robench eval runs/<run-id> --attack pgd --attack autoattack --eps 8/255

  robench eval runs/<run-id> -A pgd --steps 50 --restarts 5 --eps 2/255,4/255,8/255

  robench eval --model mine.py:build --weights w.safetensors --dataset cifar10

  robench eval runs/<run-id> --attack corruptions --reference runs/<standard-run-id>

  robench eval runs/<run-id> -A corruptions --corruptions fog,snow --severities 3-5

--attack corruptions is the common-corruption threat model (CIFAR-10-C protocol): accuracy
per corruption and severity, their mean, and mCE against --reference. It reads the
published CIFAR-10-C / CIFAR-100-C / Tiny-ImageNet-C files when they are in the data
directory, and generates the corruptions otherwise (robench list corruptions).
"""


@user_errors
def eval_(
    ctx: typer.Context,
    run: Path = shared.RUN_ARG,
    attack: list[str] = typer.Option(None, "--attack", "-A", help="Attack to run, in order "
                                     "(repeatable; robench list attacks). \\[default: "
                                     "autoattack]"),
    eps: list[str] = typer.Option(None, "--eps", help="Budget(s), e.g. 8/255 or 2/255,8/255 "
                                  "(one record each). \\[default: per dataset]"),
    norm: Norm = typer.Option(None, "--norm", help="Linf or L2. \\[default: a zoo model's "
                              "--threat, else Linf]", show_default=False),
    n_examples: str = typer.Option(None, "--n-examples", "-n", help="Test points: the first "
                                   "N, or a stratified sample for class-ordered data; 'all'. "
                                   "\\[default: 1000, or all if fewer]"),
    batch_size: str = typer.Option("500", "--batch-size", "-b", help="Points per batch, "
                                   "and per seeded block (recorded); 'auto': the largest "
                                   "that fits in memory."),
    seed: int = typer.Option(0, "--seed", help="Seed of the attacks (and of a randomised "
                             "model's draws)."),
    selection_seed: int = typer.Option(0, "--selection-seed", help="Seed of the point "
                                       "sample (class-ordered splits); its own, so records "
                                       "of different --seed share points."),
    set_: list[str] = typer.Option(None, "--set", help="Attack parameter: attack.param=value, "
                                   "e.g. pgd.loss=dlr (repeatable)."),
    steps: int = typer.Option(None, "--steps", help="Steps of every attack that has them."),
    restarts: int = typer.Option(None, "--restarts", help="Restarts of every attack that has "
                                 "them."),
    checkpoint: Checkpoint = shared.CHECKPOINT_OPT,
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="Arithmetic of "
                                        "the attacks' search; verdicts are always fp32."),
    device: str = typer.Option("auto", "--device"),
    sanity: bool = typer.Option(False, "--sanity", help="Also run PGD-100 with 5 restarts and "
                                "a PGD at the largest eps on a subset; flags what they find."),
    sanity_n: int = typer.Option(100, "--sanity-n", help="Points of the --sanity subset."),
    verdict_draws: int = typer.Option(10, "--verdict-draws", help="Randomised models: "
                                      "passes per verdict, all of which must be correct."),
    allow_non_eot: bool = typer.Option(False, "--allow-non-eot", help="Randomised models: "
                                       "run attacks that have no EOT, flagged "
                                       "not-eot-sound."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted evaluation."),
    shard: str = typer.Option(None, "--shard", help="Evaluate shard i of N (e.g. 0/4) and "
                              "write its part; --merge makes the record when all N are done.",
                              rich_help_panel="Several processes"),
    merge: bool = typer.Option(False, "--merge", help="Make the record from the N shards' "
                               "parts (give the same flags as the shards, without --shard).",
                               rich_help_panel="Several processes"),
    force: bool = typer.Option(False, "--force", help="Evaluate again even if recorded."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    model: str = shared.MODEL_OPT, weights: Path = shared.WEIGHTS_OPT,
    dataset: str = shared.DATASET_OPT, data_dir: str = shared.DATA_DIR_OPT,
    image_size: int = shared.IMAGE_SIZE_OPT, mean: str = shared.MEAN_OPT,
    std: str = shared.STD_OPT,
    out: Path = typer.Option(None, "--out", "-o", help="Records directory for --model. "
                             "\\[default: runs/external-<name>/evals]",
                             rich_help_panel="Your own model"),
    name: str = shared.NAME_OPT,
    threat: str = typer.Option(None, "--threat", help="RobustBench threat model: Linf, L2 or "
                               "corruptions. \\[default: corruptions with --attack corruptions, "
                               "else Linf]", rich_help_panel="RobustBench's zoo"),
    zoo_dataset: str = typer.Option(None, "--zoo-dataset", help="The zoo's dataset (cifar10, "
                                    "cifar100, imagenet) when --dataset is an image folder.",
                                    rich_help_panel="RobustBench's zoo"),
    model_dir: Path = typer.Option(None, "--model-dir", help="RobustBench's checkpoint folder: "
                                   "<dir>/<dataset>/<threat>/<name>.pt. \\[default: models]",
                                   rich_help_panel="RobustBench's zoo"),
    download: bool = typer.Option(False, "--download", help="Download a missing checkpoint "
                                  "into --model-dir (RobustBench's Google Drive links).",
                                  rich_help_panel="RobustBench's zoo"),
    model_info: Path = typer.Option(None, "--model-info", help="A RobustBench checkout's "
                                    "model_info folder, for the published accuracies beside "
                                    "robench's. \\[default: ./model_info if present]",
                                    rich_help_panel="RobustBench's zoo"),
    corruptions: str = typer.Option(None, "--corruptions", help="Comma-separated names, "
                                    "'benchmark' (the 15) or 'all' (with the 4 extra). "
                                    "\\[default: benchmark]", rich_help_panel="Corruptions"),
    severities: str = typer.Option("1-5", "--severities", help="e.g. 1-5, 3 or 1,3,5.",
                                   rich_help_panel="Corruptions"),
    reference: Path = typer.Option(None, "--reference", help="Run to compute mCE against "
                                   "(evaluated with the same protocol).",
                                   rich_help_panel="Corruptions"),
    generated: bool = typer.Option(False, "--generated", help="Generate the corruptions even "
                                   "when pre-made files are in the data directory.",
                                   rich_help_panel="Corruptions"),
) -> None:
    from robench import api, distributed
    from robench.registry import load_all

    load_all()
    attacks = attack or ["autoattack"]
    zoo = ZooOptions(threat=threat, zoo_dataset=zoo_dataset, model_dir=model_dir,
                     download=download, model_info=model_info)
    if "corruptions" in attacks and threat is None:
        zoo.threat = "corruptions"  # a zoo model of the corruptions leaderboard by default
    if norm is None:
        norm = Norm.l2 if zoo.threat == "L2" else Norm.linf
    if "corruptions" in attacks:
        _eval_corruptions(locals())
        return
    for flag, value in (("--corruptions", corruptions), ("--reference", reference),
                        ("--generated", generated or None),
                        ("--severities", None if severities == "1-5" else severities)):
        if value is not None:
            raise UserError(f"{flag} goes with --attack corruptions.")
    cfg = api.EvalConfig(attacks=attacks, params=attack_params(attacks, set_, steps, restarts),
                     norm=norm.value, eps=eps or [],
                     n_examples=n_examples_arg(n_examples, None),
                     all_examples=(n_examples or "").strip().lower() == "all",
                     batch_size=batch_size_arg(batch_size), seed=seed,
                     selection_seed=selection_seed,
                     precision=precision.value, device=device,
                     checkpoint=(checkpoint.value if checkpoint else "final"),
                     verdict_draws=verdict_draws, allow_non_eot=allow_non_eot, sanity=sanity,
                     sanity_n=sanity_n)
    cfg.validate()
    parsed = api.Shard.parse(shard) if shard is not None else None
    world = distributed.world_from_env()
    if merge and (parsed is not None or world.distributed):
        raise UserError("--merge makes the record from shards already evaluated; run it once, "
                        "without --shard and outside torchrun.")
    if parsed is not None and world.distributed:
        raise UserError(f"--shard {shard} and torchrun's {world.size} processes would both "
                        f"split the points; use one of them.")
    target = target_of(run, model, weights, dataset, data_dir, image_size, mean, std, out, name,
                     checkpoint, zoo)
    if merge:
        outcomes = api.merge_shards(target, cfg, command=_command_without_merge())
    elif parsed is not None and not parsed.whole:
        parts = api.evaluate(target, cfg, quiet=quiet, resume=resume, force=force,
                             shard=parsed)
        _print_shards(target.label, parts, parsed)
        return
    else:
        with distributed.process_group(world, device):
            outcomes = api.evaluate_ranks(target, cfg, quiet=quiet, resume=resume,
                                          force=force)
        if not world.main:
            return
    if as_json:
        sys.stdout.write(json.dumps([o.record.to_dict() for o in outcomes], indent=2) + "\n")
        return
    _print_eval(target.label, outcomes)
    _suggest_report(target)


def _suggest_report(target) -> None:
    """`robench report` over the folder of runs the record went into."""
    suggest(f"robench report {shell_path(target.evals_dir.parent.parent)}")


def _corruption_batch_size(batch_size: str) -> int:
    """The corruption evaluation takes no gradients, so it has no `auto` to choose."""
    value = batch_size_arg(batch_size)
    if value == "auto":
        raise UserError("--batch-size auto is for the Lp attacks; give --attack corruptions "
                        "a number.")
    return value


def _eval_corruptions(args: dict[str, Any]) -> None:
    """`robench eval --attack corruptions`: its own threat model, so its own flags."""
    from robench import api
    from robench.evaluation.corruptions import parse_severities

    if args["attack"] != ["corruptions"]:
        raise UserError("--attack corruptions is a threat model of its own; run it without "
                        "other attacks (and the Lp attacks in a separate robench eval).")
    for flag, key in (("--eps", "eps"), ("--set", "set_"), ("--steps", "steps"),
                      ("--restarts", "restarts"), ("--resume", "resume"),
                      ("--shard", "shard"), ("--merge", "merge"),
                      ("--sanity", "sanity"), ("--allow-non-eot", "allow_non_eot"),
                      ("--selection-seed", "selection_seed")):
        if args[key]:
            raise UserError(f"{flag} has no meaning for --attack corruptions.")
    cfg = api.CorruptionConfig(corruptions=corruption_names(args["corruptions"]),
                           severities=parse_severities(args["severities"]),
                           n_examples=n_examples_arg(args["n_examples"], None),
                           all_examples=(args["n_examples"] or "").strip().lower() == "all",
                           seed=args["seed"], batch_size=_corruption_batch_size(args["batch_size"]),
                           precision=args["precision"].value, device=args["device"],
                           premade=not args["generated"]).validate()
    target = target_of(args["run"], args["model"], args["weights"], args["dataset"],
                     args["data_dir"], args["image_size"], args["mean"], args["std"],
                     args["out"], args["name"], args["checkpoint"], args["zoo"])
    reference = api.from_run(args["reference"]) if args["reference"] else None
    outcome = api.evaluate_corruptions(target, cfg, reference=reference, quiet=args["quiet"],
                                   force=args["force"])
    if args["as_json"]:
        sys.stdout.write(json.dumps([outcome.record.to_dict()], indent=2) + "\n")
        return
    _print_corruptions(target.label, outcome)
    _suggest_report(target)


def _print_corruptions(label: str, outcome) -> None:
    r = outcome.record
    c = r.corruptions
    table = Table(title=f"{label}: {r.dataset}, common corruptions ({c.source.split(':')[0]}), "
                        f"{r.selection.n_examples} points", title_justify="left")
    table.add_column("corruption", no_wrap=True)
    for s in c.severities:
        table.add_column(f"s{s}", justify="right")
    table.add_column("mean", justify="right", style="bold")
    if c.ce is not None:
        table.add_column("CE", justify="right")
    for name in c.corruptions:
        accs = c.accuracy[name]
        ce = [] if c.ce is None else [_ratio(c.ce[name])]
        table.add_row(name, *[f"{a:.1%}" for a in accs], f"{sum(accs) / len(accs):.1%}", *ce)
    stdout.print(table)
    lo, hi = r.robust_ci95
    summary = (f"clean {r.clean_acc:.2%}, mean corruption accuracy {r.robust_acc:.2%} "
               f"[{lo:.1%}, {hi:.1%}]")
    if c.mce is not None:
        summary += (f", mCE {_ratio(c.mce)}, relative mCE {_ratio(c.relative_mce)} "
                    f"(reference {c.reference}: clean {c.reference_clean_acc:.2%})")
    stdout.print(summary + (" (recorded)" if outcome.reused else ""), highlight=False)
    for note in r.notes:
        stderr.print(f"note: {note}", highlight=False)
    stderr.print(f"record: {outcome.path}", highlight=False, soft_wrap=True)


def _ratio(value: float | None) -> str:
    """A corruption error as the paper prints it: percent of the reference's error."""
    return "n/a" if value is None else f"{100 * value:.1f}"


def _command_without_merge() -> str:
    """The command line that made the shards, for the sentence naming a missing one."""
    args = [a for a in sys.argv[1:] if a != "--merge"]
    return " ".join(["robench", *args])


def _print_shards(label: str, parts, shard) -> None:
    for part in parts:
        if hasattr(part, "record"):  # recorded already (one process or a merge)
            _print_eval(label, [part])
            continue
        s = part.partial.state
        mask = s.covered_mask()
        n = int(mask.sum())
        stdout.print(f"{label}: shard {shard.label} at eps {part.eps.text}: {n} points, clean "
                     f"{int(s.clean_correct[mask].sum())}, robust {int(s.robust[mask].sum())}"
                     + (" (recorded)" if part.reused else ""), highlight=False)
        stderr.print(f"part: {part.path}", highlight=False, soft_wrap=True)
    stderr.print(f"when all {shard.count} shards are done, make the record with the same "
                 f"command, --merge instead of --shard.", highlight=False, soft_wrap=True)


def _print_eval(label: str, outcomes) -> None:
    first = outcomes[0].record
    table = Table(title=f"{label}: {first.dataset}, {first.norm}, "
                        f"{first.selection.n_examples} points ({first.selection.method})",
                  title_justify="left")
    table.add_column("eps", justify="right")
    table.add_column("clean", justify="right")
    for step in first.per_attack:
        table.add_column(f"after {step.name}", justify="right")
    table.add_column("robust [95% CI]", justify="right", style="bold")
    table.add_column("seconds", justify="right")
    table.add_column("flags")
    for o in outcomes:
        r = o.record
        lo, hi = r.robust_ci95
        table.add_row(r.eps_text, f"{r.clean_acc:.2%}",
                      *[f"{s.robust_acc_after:.2%}" for s in r.per_attack],
                      f"{r.robust_acc:.2%} [{lo:.1%}, {hi:.1%}]",
                      f"{r.seconds:.1f}" + (" (recorded)" if o.reused else ""),
                      ", ".join(r.flags) or "-")
    stdout.print(table)
    for o in outcomes:
        for note in o.record.notes:
            stderr.print(f"note: {note}", highlight=False)
        stderr.print(f"record: {o.path}", highlight=False, soft_wrap=True)
