"""`robench attack`: adversarial examples for N test points, saved and checked."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from robench.cli import options as shared
from robench.cli.options import (
    Checkpoint,
    Norm,
    Precision,
    attack_params,
    n_examples_arg,
    target_of,
)
from robench.cli.output import stdout, user_errors
from robench.errors import UserError

# robench.api and the packages below it are imported inside the command, so that
# `robench --help` and a mistyped flag answer without loading torch.


ATTACK_HELP = """Craft adversarial examples for N test points and save them.

Saves x_adv, labels, clean and adversarial predictions to <run>/adv/<key>.safetensors,
prints the success rate and the size of the perturbations, and checks that every example
lies in the eps-ball and in [0, 1].

Examples:

  robench attack runs/<run-id> --attack pgd --eps 8/255 --steps 20

  robench attack runs/<run-id> --attack fgsm --norm L2 --eps 0.5 -n 500

  robench attack --model mine.py:build --weights w.pt --dataset cifar10 --attack apgd-ce
"""


@user_errors
def attack_(
    ctx: typer.Context,
    run: Path = shared.RUN_ARG,
    attack: str = typer.Option("pgd", "--attack", "-A", help="robench list attacks."),
    eps: str = typer.Option(None, "--eps", help="Budget, e.g. 8/255. \\[default: per "
                            "dataset]"),
    norm: Norm = typer.Option(Norm.linf, "--norm"),
    n_examples: str = typer.Option(None, "--n-examples", "-n", help="Test points, or 'all'. "
                                   "\\[default: 100]"),
    batch_size: int = typer.Option(500, "--batch-size", "-b"),
    seed: int = typer.Option(0, "--seed"),
    selection_seed: int = typer.Option(0, "--selection-seed", help="Seed of the point sample "
                                       "(class-ordered splits)."),
    set_: list[str] = typer.Option(None, "--set", help="Attack parameter: attack.param=value."),
    steps: int = typer.Option(None, "--steps"),
    restarts: int = typer.Option(None, "--restarts"),
    checkpoint: Checkpoint = shared.CHECKPOINT_OPT,
    precision: Precision = typer.Option(Precision.fp32, "--precision"),
    device: str = typer.Option("auto", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    model: str = shared.MODEL_OPT, weights: Path = shared.WEIGHTS_OPT,
    dataset: str = shared.DATASET_OPT, data_dir: str = shared.DATA_DIR_OPT,
    image_size: int = shared.IMAGE_SIZE_OPT, mean: str = shared.MEAN_OPT,
    std: str = shared.STD_OPT,
    out: Path = typer.Option(None, "--out", "-o", help="Records directory for --model; "
                             "examples go to its sibling adv/.", rich_help_panel="Your own model"),
    name: str = shared.NAME_OPT,
) -> None:
    from robench import api
    from robench.registry import load_all

    load_all()
    params = attack_params([attack], set_, steps, restarts).get(attack)
    if batch_size <= 0:
        raise UserError(f"--batch-size must be a positive integer, got {batch_size}.")
    target = target_of(run, model, weights, dataset, data_dir, image_size, mean, std, out, name,
                     checkpoint)
    o = api.craft(target, attack, params=params, norm=norm.value, eps=eps,
                  n_examples=n_examples_arg(n_examples, 100), batch_size=batch_size, seed=seed,
                  selection_seed=selection_seed, device=device, precision=precision.value,
                  quiet=quiet)
    table = Table(title=f"{attack} on {target.label}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("points", f"{o.n} ({o.clean_correct} classified correctly)")
    table.add_row("success rate", f"{o.success_rate:.2%} of the correctly classified points")
    table.add_row("Linf size", f"mean {o.linf_mean:.4f}, max {o.linf_max:.4f}")
    table.add_row("L2 size", f"mean {o.l2_mean:.4f}, max {o.l2_max:.4f}")
    ok = o.in_ball and o.in_range
    table.add_row("check", ("every example lies in the " if ok else "[red]NOT all examples "
                            "lie in the ") + f"{norm.value} ball of radius {o.attack['eps']:g} "
                  "and in [0, 1]")
    table.add_row("saved", str(o.path))
    stdout.print(table)
