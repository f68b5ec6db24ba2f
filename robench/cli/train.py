"""`robench train`: a new run from flags, --set, --config and --recipe layers, or a resumed one."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.table import Table

from robench.cli.options import Precision, flag_layer, int_list
from robench.cli.output import shell_path, stderr, stdout, suggest, user_errors
from robench.errors import UserError

# robench.api and the packages below it are imported inside the command, so that
# `robench --help` and a mistyped flag answer without loading torch.


class Schedule(str, Enum):
    constant = "constant"
    multistep = "multistep"
    cosine = "cosine"
    onecycle = "onecycle"
    cyclic = "cyclic"


class Augment(str, Enum):
    crop_flip = "crop+flip"
    augmix_clean = "augmix+clean"
    crop = "crop"
    none = "none"


TRAIN_HELP = """Train a model with a defense and write a run directory.

Every default is written to the run's config.yaml; precedence is
flag > --set > --config file > --recipe > per-dataset defaults > built-in defaults.

Examples:

  robench train

  robench train -d imagefolder:data/cifar10-jpeg --precision bf16

  robench train --dataset digits --image-size 32 --arch resnet18 --epochs 5

  robench train --config my.yaml --set optim.lr=0.05 --set model.width=0.5

  robench train --recipe cifar10-pgd-at-bag-of-tricks --data-dir data

  robench train --defense pgd-at --set pgd-at.steps=7 --epochs 20

  robench train --resume runs/digits-cnn-standard-s0-1a2b3c4d

  robench train --defense advbn --init runs/digits-cnn-standard-s0-1a2b3c4d
"""


@user_errors
def train(
    ctx: typer.Context,
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset name (robench list "
                                "datasets) or imagefolder:<path>. \\[default: digits]",
                                rich_help_panel="Data"),
    data_dir: str = typer.Option(None, "--data-dir", help="Where torchvision datasets live.",
                                 rich_help_panel="Data"),
    download: bool = typer.Option(None, "--download/--no-download",
                                  help="Let torchvision download a missing dataset.",
                                  rich_help_panel="Data"),
    image_size: int = typer.Option(None, "--image-size", help="Resize every image to NxN.",
                                   rich_help_panel="Data"),
    train_subset: int = typer.Option(None, "--train-subset",
                                     help="Train on a seeded subset of N images.",
                                     rich_help_panel="Data"),
    val_size: int = typer.Option(None, "--val-size",
                                 help="Images held out of training for validation.",
                                 rich_help_panel="Data"),
    augment: Augment = typer.Option(None, "--augment", help="Training augmentation "
                                    "\\[default: per dataset].", rich_help_panel="Data"),
    arch: str = typer.Option(None, "--arch", "-a", help="Architecture (robench list archs).",
                             rich_help_panel="Model"),
    strides: str = typer.Option(None, "--strides", help="One digit per downsampling stage, "
                                "e.g. 1222 for ResNet-18.", rich_help_panel="Model"),
    width: float = typer.Option(None, "--width", help="Channel width multiplier.",
                                rich_help_panel="Model"),
    defense: str = typer.Option(None, "--defense", help="Defense spec, e.g. standard or a+b "
                                "(robench list defenses).", rich_help_panel="Model"),
    epochs: int = typer.Option(None, "--epochs", "-e", rich_help_panel="Optimisation"),
    batch_size: int = typer.Option(None, "--batch-size", "-b", rich_help_panel="Optimisation"),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate.",
                             rich_help_panel="Optimisation"),
    momentum: float = typer.Option(None, "--momentum", rich_help_panel="Optimisation"),
    nesterov: bool = typer.Option(None, "--nesterov/--no-nesterov",
                                  rich_help_panel="Optimisation"),
    weight_decay: float = typer.Option(None, "--weight-decay", "--wd",
                                       rich_help_panel="Optimisation"),
    schedule: Schedule = typer.Option(None, "--schedule", rich_help_panel="Optimisation"),
    milestones: str = typer.Option(None, "--milestones", help="Epochs where a multistep "
                                   "schedule multiplies the LR by gamma, e.g. 100,105.",
                                   rich_help_panel="Optimisation"),
    label_smoothing: float = typer.Option(None, "--label-smoothing",
                                          rich_help_panel="Optimisation"),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps.",
                               rich_help_panel="Runtime"),
    precision: Precision = typer.Option(None, "--precision", help="bf16 autocast is several "
                                        "times faster on AMX CPUs and GPUs.",
                                        rich_help_panel="Runtime"),
    channels_last: bool = typer.Option(None, "--channels-last/--no-channels-last",
                                       rich_help_panel="Runtime"),
    seed: int = typer.Option(None, "--seed", rich_help_panel="Runtime"),
    deterministic: bool = typer.Option(None, "--deterministic/--no-deterministic",
                                       help="Deterministic kernels (bit-exact resume on CPU).",
                                       rich_help_panel="Runtime"),
    sync_bn: bool = typer.Option(None, "--sync-bn/--no-sync-bn", help="Under torchrun: "
                                 "BatchNorm statistics over the global batch.",
                                 rich_help_panel="Runtime"),
    recipe: str = typer.Option(None, "--recipe", "-r", help="A published recipe (robench list "
                               "recipes), below --config, --set and flags.",
                               rich_help_panel="Config"),
    config: Path = typer.Option(None, "--config", "-c", help="YAML config file.",
                                rich_help_panel="Config"),
    set_: list[str] = typer.Option(None, "--set", help="Override any config key: "
                                   "section.key=value (repeatable).", rich_help_panel="Config"),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Directory of run directories.",
                             rich_help_panel="Config"),
    resume: Path = typer.Option(None, "--resume", help="Continue an interrupted run directory.",
                                rich_help_panel="Config"),
    init: Path = typer.Option(None, "--init", help="Fine-tune: start from the final weights of "
                              "this run, on its dataset and architecture (with advbn: the "
                              "recipe advbn-finetune unless --recipe is given).",
                              rich_help_panel="Config"),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also write each epoch's "
                                     "metrics as TensorBoard events in <run>/tensorboard "
                                     "(pip install 'robench[tensorboard]').",
                                     rich_help_panel="Runtime"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    from robench import api, distributed
    from robench import config as config_mod
    from robench.registry import DEFENSES, load_all

    load_all()
    flags = flag_layer(
        data__dataset=dataset, data__data_dir=data_dir, data__download=download,
        data__image_size=image_size, data__train_subset=train_subset, data__val_size=val_size,
        data__augment=augment, model__arch=arch, model__strides=strides, model__width=width,
        defense=defense, optim__epochs=epochs, optim__batch_size=batch_size, optim__lr=lr,
        optim__momentum=momentum, optim__nesterov=nesterov, optim__weight_decay=weight_decay,
        optim__schedule=schedule, optim__milestones=int_list(milestones, "--milestones"),
        optim__label_smoothing=label_smoothing, runtime__device=device,
        runtime__precision=precision, runtime__channels_last=channels_last,
        runtime__seed=seed, runtime__deterministic=deterministic, runtime__sync_bn=sync_bn,
    )
    layers = []
    if init is not None:
        if resume is not None:
            raise UserError("--init starts a new run; --resume continues one: give one of them.")
        layers.append(api.init_layer(init))
    if recipe is not None:
        from robench.recipes import recipe_layer

        layers.append(recipe_layer(recipe))
    if config is not None:
        layers.append(config_mod.load_yaml(config))
    if set_:
        layers.append(config_mod.parse_set(set_, DEFENSES.names()))
    if flags:
        layers.append(flags)
    world = distributed.world_from_env()
    with distributed.process_group(world, device or "auto"):
        if resume is not None:
            result = api.resume(resume, layers, quiet=quiet, tensorboard=tensorboard)
        else:
            cfg, _ = api.resolve_config(layers)
            finetune = (_finetune_recipe(cfg.defense) if init is not None and recipe is None
                        else None)
            if finetune is not None:  # the method's own fine-tuning settings, below the rest
                from robench.recipes import recipe_layer

                cfg, _ = api.resolve_config([layers[0], recipe_layer(finetune), *layers[1:]])
            result = api.train(cfg, out=out, quiet=quiet, tensorboard=tensorboard)
    if world.main:
        _print_summary(result)


def _finetune_recipe(defense: str) -> str | None:
    """The recipe a defense registers for fine-tuning with --init (advbn: advbn-finetune)."""
    from robench.registry import DEFENSES

    for name in defense.split("+"):
        recipe = DEFENSES.entry(name.strip()).meta.get("finetune_recipe")
        if recipe:
            return recipe
    return None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _print_summary(result) -> None:
    s = result.summary
    if result.reused:
        stderr.print(f"run {result.run_dir} with this exact config is already complete; "
                     f"showing its summary (change --seed or --out to train another).",
                     highlight=False)
    table = Table(title=f"run {result.run_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("directory", str(result.run_dir))
    table.add_row("dataset", f"{result.config.data.dataset} ({s['n_train']} train, "
                  f"{s['n_val']} val, {s['n_test']} test)")
    table.add_row("arch / defense", f"{result.config.model.arch} / {result.config.defense}")
    table.add_row("epochs", str(s["epochs"]))
    world = result.config.runtime.world_size
    if world > 1:
        b = result.config.optim.batch_size
        table.add_row("processes", f"{world} (batch {b} per process, {b * world} per step)")
    table.add_row("training time", f"{s['train_seconds']:.1f} s")
    table.add_row("train accuracy", _percent(s["final_train_acc"]))
    table.add_row("val accuracy", _percent(s["final_val_acc"]))
    table.add_row("val PGD accuracy", _percent(s.get("final_val_robust_acc")))
    best = s.get("best")
    if best:
        table.add_row("best.safetensors", f"epoch {best['epoch']} (val {_percent(best['val_acc'])}"
                      f", val PGD {_percent(best['val_robust_acc'])})")
    if s.get("catastrophic_overfitting"):
        table.add_row("warning", "[red]catastrophic overfitting detected (see metrics.jsonl)")
    table.add_row("test accuracy", _percent(s["test_acc"]))
    stdout.print(table)
    suggest(f"robench eval {shell_path(result.run_dir)}")

