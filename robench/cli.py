"""The `robench` command line: parses flags, calls `robench.api`, renders the result.

User mistakes (`UserError`) become one line on stderr and exit code 2; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import difflib
import functools
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from robench import __version__
from robench.errors import Interrupted, UserError

app = typer.Typer(
    name="robench",
    help=(
        "Train image classifiers with a defense, attack them, and measure their adversarial "
        "robustness with a protocol you can trust.\n\n"
        "Examples:\n\n"
        "  robench train                      # a small CNN on the embedded digits data\n\n"
        "  robench train --dataset cifar10 --data-dir data --arch preactresnet18\n\n"
        "  robench list archs"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

stdout = Console()
stderr = Console(stderr=True)


class _State:
    debug = False


def _version_callback(value: bool) -> None:
    if value:
        stdout.print(f"robench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    ctx.obj = _State()
    ctx.obj.debug = debug


def _fail(message: str, code: int) -> None:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn a user's mistake into one line on stderr and exit code 2 (traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")  # every command takes the typer context as `ctx`
        debug = bool(ctx is not None and ctx.obj is not None and ctx.obj.debug)
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            if debug:
                raise
            _fail(str(exc), 2)
        except KeyboardInterrupt as exc:
            if debug:
                raise
            _fail(exc.message if isinstance(exc, Interrupted) else "interrupted.", 130)

    return wrapper


# ---------------------------------------------------------------------------------------
# train


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"


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


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"{flag} {text!r} must be comma-separated integers, "
                        f"e.g. 100,105.") from None


def _flag_layer(**values: Any) -> dict[str, Any]:
    """Nested config overrides from flags, keeping only the flags that were given."""
    layer: dict[str, Any] = {}
    for dotted, value in values.items():
        if value is None:
            continue
        if isinstance(value, Enum):
            value = value.value
        section, _, key = dotted.rpartition("__")
        target = layer.setdefault(section, {}) if section else layer
        target[key] = value
    return layer


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


@app.command(help=TRAIN_HELP)
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    from robench import api
    from robench import config as config_mod
    from robench.registry import DEFENSES, load_all

    load_all()
    flags = _flag_layer(
        data__dataset=dataset, data__data_dir=data_dir, data__download=download,
        data__image_size=image_size, data__train_subset=train_subset, data__val_size=val_size,
        data__augment=augment, model__arch=arch, model__strides=strides, model__width=width,
        defense=defense, optim__epochs=epochs, optim__batch_size=batch_size, optim__lr=lr,
        optim__momentum=momentum, optim__nesterov=nesterov, optim__weight_decay=weight_decay,
        optim__schedule=schedule, optim__milestones=_int_list(milestones, "--milestones"),
        optim__label_smoothing=label_smoothing, runtime__device=device,
        runtime__precision=precision, runtime__channels_last=channels_last,
        runtime__seed=seed, runtime__deterministic=deterministic,
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
    if resume is not None:
        result = api.resume(resume, layers, quiet=quiet)
    else:
        cfg, _ = api.resolve_config(layers)
        finetune = _finetune_recipe(cfg.defense) if init is not None and recipe is None else None
        if finetune is not None:  # the method's own fine-tuning settings, below everything else
            from robench.recipes import recipe_layer

            cfg, _ = api.resolve_config([layers[0], recipe_layer(finetune), *layers[1:]])
        result = api.train(cfg, out=out, quiet=quiet)
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


# ---------------------------------------------------------------------------------------
# list


LIST_HELP = """List what robench knows: datasets, archs, defenses, attacks, recipes.

A pattern filters names shell-style.

Examples:

  robench list

  robench list archs

  robench list archs 'vgg*'

  robench list defenses --json
"""


@app.command("list", help=LIST_HELP)
@user_errors
def list_(
    ctx: typer.Context,
    kind: str = typer.Argument(None, help="datasets, archs, defenses, attacks or recipes "
                               "\\[default: all]."),
    pattern: str = typer.Argument(None, help="Shell-style filter on names, e.g. 'vgg*'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    from robench.registry import REGISTRIES, load_all

    load_all()
    if kind is None:
        kinds = list(REGISTRIES)
    else:
        kind = {k[:-1]: k for k in REGISTRIES}.get(kind, kind)  # accept the singular
        if kind not in REGISTRIES:
            close = difflib.get_close_matches(kind, list(REGISTRIES), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"unknown kind {kind!r}; {hint}known kinds: {', '.join(REGISTRIES)}.")
        kinds = [kind]
    if as_json:
        data = {k: [{"name": e.name, "description": e.description, **_jsonable(e.meta)}
                    for e in REGISTRIES[k].entries(pattern)] for k in kinds}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    for k in kinds:
        entries = REGISTRIES[k].entries(pattern)
        table = Table(title=f"{k} ({len(entries)})", title_justify="left")
        table.add_column("name", style="bold cyan", no_wrap=True)
        meta_keys = sorted({m for e in entries for m in e.meta})
        for m in meta_keys:
            table.add_column(m.replace("_", " "))
        table.add_column("description")
        for e in entries:
            table.add_row(e.name, *[_cell(e.meta.get(m)) for m in meta_keys], e.description)
        stdout.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
            for k, v in meta.items()}


def main() -> None:
    app()


# ---------------------------------------------------------------------------------------
# attack and eval


class Norm(str, Enum):
    linf = "Linf"
    l2 = "L2"


class Checkpoint(str, Enum):
    final = "final"
    best = "best"


def _n_examples(text: str | None, default: int | None) -> int | None:
    """An explicit count, `default` when not given, or None for 'all'."""
    if text is None:
        return default
    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise UserError(f"--n-examples {text!r} must be a positive integer or 'all'.") from None
    if n <= 0:
        raise UserError(f"--n-examples {text!r} must be a positive integer or 'all'.")
    return n


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UserError(f"{flag} {text!r} must be comma-separated numbers, "
                        f"e.g. 0.4914,0.4822,0.4465.") from None


def _attack_params(attacks: list[str], sets: list[str] | None, steps: int | None,
                   restarts: int | None) -> dict[str, dict[str, Any]]:
    """Per-attack parameters from `--set name.param=value` and the shorthand flags."""
    from robench.config import parse_set
    from robench.registry import ATTACKS

    params: dict[str, dict[str, Any]] = {}
    for key, value in parse_set(sets or []).items():
        if key not in attacks:
            if key not in ATTACKS:
                ATTACKS.entry(key)  # unknown name: the registry's did-you-mean error
            raise UserError(f"--set {key}.… names attack {key!r}, which is not among the "
                            f"attacks run ({', '.join(attacks)}).")
        if not isinstance(value, dict):
            raise UserError(f"--set {key}=… needs a parameter name: {key}.<param>=value.")
        params[key] = value
    for flag, name, value in (("--steps", "steps", steps), ("--restarts", "restarts", restarts)):
        if value is None:
            continue
        takers = [a for a in attacks if name in _param_names(a)]
        if not takers:
            raise UserError(f"{flag} applies to none of the attacks run "
                            f"({', '.join(attacks)}).")
        for a in takers:
            params.setdefault(a, {}).setdefault(name, value)
    return params


def _param_names(attack: str) -> set[str]:
    import dataclasses

    from robench.registry import ATTACKS

    return {f.name for f in dataclasses.fields(ATTACKS.get(attack).params_cls)}


def _target(run, model, weights, dataset, data_dir, image_size, mean, std, out, name,
            checkpoint):
    from robench import targets

    if run is not None and model is not None:
        raise UserError("give either a run directory or --model, not both.")
    if run is not None:
        for flag, value in (("--weights", weights), ("--dataset", dataset), ("--mean", mean),
                            ("--std", std), ("--out", out)):
            if value is not None:
                raise UserError(f"{flag} goes with --model; a run directory brings its own.")
        return targets.from_run(run, checkpoint.value if checkpoint else "final")
    if model is None:
        raise UserError("give a run directory (e.g. runs/<run-id>) or --model file.py:factory.")
    if dataset is None:
        raise UserError("--model needs --dataset, e.g. --dataset cifar10.")
    return targets.from_external(model, weights=weights, dataset=dataset, data_dir=data_dir,
                                 image_size=image_size, mean=_floats(mean, "--mean"),
                                 std=_floats(std, "--std"), out=out, name=name)


_RUN_ARG = typer.Argument(None, help="A run directory, e.g. runs/<run-id>.", show_default=False)
_MODEL_OPT = typer.Option(None, "--model", help="Your own model: path/to/file.py:factory.",
                          rich_help_panel="Your own model")
_WEIGHTS_OPT = typer.Option(None, "--weights", help="State dict for --model: .safetensors or "
                            ".pt (loaded with weights_only=True).",
                            rich_help_panel="Your own model")
_DATASET_OPT = typer.Option(None, "--dataset", "-d", help="Dataset for --model.",
                            rich_help_panel="Your own model")
_DATA_DIR_OPT = typer.Option(None, "--data-dir", rich_help_panel="Your own model")
_IMAGE_SIZE_OPT = typer.Option(None, "--image-size", rich_help_panel="Your own model")
_MEAN_OPT = typer.Option(None, "--mean", help="Per-channel mean if your model expects "
                         "normalised input, e.g. 0.4914,0.4822,0.4465.",
                         rich_help_panel="Your own model")
_STD_OPT = typer.Option(None, "--std", help="Per-channel std, with --mean.",
                        rich_help_panel="Your own model")
_NAME_OPT = typer.Option(None, "--name", help="Name for --model in records.",
                         rich_help_panel="Your own model")
_CHECKPOINT_OPT = typer.Option(None, "--checkpoint", help="Which weights of a run: final "
                               "(model.safetensors) or best (chosen on validation). "
                               "\\[default: final]")

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


@app.command("eval", help=EVAL_HELP)
@user_errors
def eval_(
    ctx: typer.Context,
    run: Path = _RUN_ARG,
    attack: list[str] = typer.Option(None, "--attack", "-A", help="Attack to run, in order "
                                     "(repeatable; robench list attacks). \\[default: "
                                     "autoattack]"),
    eps: list[str] = typer.Option(None, "--eps", help="Budget(s), e.g. 8/255 or 2/255,8/255 "
                                  "(one record each). \\[default: per dataset]"),
    norm: Norm = typer.Option(Norm.linf, "--norm"),
    n_examples: str = typer.Option(None, "--n-examples", "-n", help="Test points: the first "
                                   "N, or a stratified sample for class-ordered data; 'all'. "
                                   "\\[default: 1000, or all if fewer]"),
    batch_size: int = typer.Option(500, "--batch-size", "-b"),
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
    checkpoint: Checkpoint = _CHECKPOINT_OPT,
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
    force: bool = typer.Option(False, "--force", help="Evaluate again even if recorded."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    model: str = _MODEL_OPT, weights: Path = _WEIGHTS_OPT, dataset: str = _DATASET_OPT,
    data_dir: str = _DATA_DIR_OPT, image_size: int = _IMAGE_SIZE_OPT, mean: str = _MEAN_OPT,
    std: str = _STD_OPT,
    out: Path = typer.Option(None, "--out", "-o", help="Records directory for --model. "
                             "\\[default: runs/external-<name>/evals]",
                             rich_help_panel="Your own model"),
    name: str = _NAME_OPT,
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
    from robench import api
    from robench.config import EvalConfig
    from robench.registry import load_all

    load_all()
    attacks = attack or ["autoattack"]
    if "corruptions" in attacks:
        _eval_corruptions(locals())
        return
    for flag, value in (("--corruptions", corruptions), ("--reference", reference),
                        ("--generated", generated or None),
                        ("--severities", None if severities == "1-5" else severities)):
        if value is not None:
            raise UserError(f"{flag} goes with --attack corruptions.")
    cfg = EvalConfig(attacks=attacks, params=_attack_params(attacks, set_, steps, restarts),
                     norm=norm.value, eps=eps or [],
                     n_examples=_n_examples(n_examples, None),
                     all_examples=(n_examples or "").strip().lower() == "all",
                     batch_size=batch_size, seed=seed, selection_seed=selection_seed,
                     precision=precision.value, device=device,
                     checkpoint=(checkpoint.value if checkpoint else "final"),
                     verdict_draws=verdict_draws, allow_non_eot=allow_non_eot, sanity=sanity,
                     sanity_n=sanity_n)
    cfg.validate()
    target = _target(run, model, weights, dataset, data_dir, image_size, mean, std, out, name,
                     checkpoint)
    outcomes = api.evaluate(target, cfg, quiet=quiet, resume=resume, force=force)
    if as_json:
        sys.stdout.write(json.dumps([o.record.to_dict() for o in outcomes], indent=2) + "\n")
        return
    _print_eval(target.label, outcomes)


def _eval_corruptions(args: dict[str, Any]) -> None:
    """`robench eval --attack corruptions`: its own threat model, so its own flags."""
    from robench import targets
    from robench.corruption_eval import CorruptionConfig, evaluate_corruptions, parse_severities

    if args["attack"] != ["corruptions"]:
        raise UserError("--attack corruptions is a threat model of its own; run it without "
                        "other attacks (and the Lp attacks in a separate robench eval).")
    for flag, key in (("--eps", "eps"), ("--set", "set_"), ("--steps", "steps"),
                      ("--restarts", "restarts"), ("--resume", "resume"),
                      ("--sanity", "sanity"), ("--allow-non-eot", "allow_non_eot"),
                      ("--selection-seed", "selection_seed")):
        if args[key]:
            raise UserError(f"{flag} has no meaning for --attack corruptions.")
    cfg = CorruptionConfig(corruptions=_corruption_names(args["corruptions"]),
                           severities=parse_severities(args["severities"]),
                           n_examples=_n_examples(args["n_examples"], None),
                           all_examples=(args["n_examples"] or "").strip().lower() == "all",
                           seed=args["seed"], batch_size=args["batch_size"],
                           precision=args["precision"].value, device=args["device"],
                           premade=not args["generated"]).validate()
    target = _target(args["run"], args["model"], args["weights"], args["dataset"],
                     args["data_dir"], args["image_size"], args["mean"], args["std"],
                     args["out"], args["name"], args["checkpoint"])
    reference = targets.from_run(args["reference"]) if args["reference"] else None
    outcome = evaluate_corruptions(target, cfg, reference=reference, quiet=args["quiet"],
                                   force=args["force"])
    if args["as_json"]:
        sys.stdout.write(json.dumps([outcome.record.to_dict()], indent=2) + "\n")
        return
    _print_corruptions(target.label, outcome)


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


CORRUPT_HELP = """Save a picture of one test image under every corruption and severity.

Shows what --attack corruptions measures: rows are corruptions, columns the clean image
and severities 1-5, generated by robench (robench list corruptions).

Examples:

  robench corrupt --dataset cifar10 --data-dir data --index 7 --out corruptions.png

  robench corrupt runs/<run-id> --corruptions all --severities 1,3,5
"""


@app.command("corrupt", help=CORRUPT_HELP)
@user_errors
def corrupt(
    ctx: typer.Context,
    run: Path = typer.Argument(None, help="A run directory: its dataset is used.",
                               show_default=False),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset, without a run."),
    data_dir: str = typer.Option(None, "--data-dir"),
    image_size: int = typer.Option(None, "--image-size"),
    index: int = typer.Option(0, "--index", "-i", help="Which test image."),
    corruptions: str = typer.Option("benchmark", "--corruptions", help="Comma-separated "
                                    "names, 'benchmark' (the 15) or 'all' (with the 4 extra)."),
    severities: str = typer.Option("1-5", "--severities"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("corruptions.png"), "--out", "-o", help="PNG to write."),
) -> None:
    from robench import corruption_grid, runs
    from robench.config import load_yaml
    from robench.corruption_eval import CorruptionConfig, parse_severities
    from robench.data import load_dataset

    if (run is None) == (dataset is None):
        raise UserError("give a run directory or --dataset (one of them).")
    if run is not None:
        cfg = load_yaml(runs.require_run(run) / runs.CONFIG)["data"]
        dataset, data_dir, image_size = cfg["dataset"], cfg.get("data_dir"), cfg.get("image_size")
    cfg = CorruptionConfig(corruptions=_corruption_names(corruptions),
                           severities=parse_severities(severities)).validate()
    test = load_dataset(dataset, data_dir=data_dir, image_size=image_size).test
    if not 0 <= index < len(test):
        raise UserError(f"--index {index} is outside the {len(test)} test images of {dataset}; "
                        f"give 0 to {len(test) - 1}.")
    grid = corruption_grid.corruption_grid(test.x[index], cfg.corruptions, cfg.severities, seed)
    path = corruption_grid.save_grid(grid, cfg.corruptions, cfg.severities, out,
                                     f"{dataset}, test image {index} (class {int(test.y[index])})")
    stderr.print(f"wrote {path}", highlight=False)


def _corruption_names(text: str | None) -> list[str]:
    from robench import corruptions as corruption_lib

    text = (text or "benchmark").strip()
    return {"benchmark": list(corruption_lib.names()),
            "all": list(corruption_lib.names(extra=True))}.get(
        text, [c.strip() for c in text.split(",") if c.strip()])


ATTACK_HELP = """Craft adversarial examples for N test points and save them.

Saves x_adv, labels, clean and adversarial predictions to <run>/adv/<key>.safetensors,
prints the success rate and the size of the perturbations, and checks that every example
lies in the eps-ball and in [0, 1].

Examples:

  robench attack runs/<run-id> --attack pgd --eps 8/255 --steps 20

  robench attack runs/<run-id> --attack fgsm --norm L2 --eps 0.5 -n 500

  robench attack --model mine.py:build --weights w.pt --dataset cifar10 --attack apgd-ce
"""


@app.command("attack", help=ATTACK_HELP)
@user_errors
def attack_(
    ctx: typer.Context,
    run: Path = _RUN_ARG,
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
    checkpoint: Checkpoint = _CHECKPOINT_OPT,
    precision: Precision = typer.Option(Precision.fp32, "--precision"),
    device: str = typer.Option("auto", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    model: str = _MODEL_OPT, weights: Path = _WEIGHTS_OPT, dataset: str = _DATASET_OPT,
    data_dir: str = _DATA_DIR_OPT, image_size: int = _IMAGE_SIZE_OPT, mean: str = _MEAN_OPT,
    std: str = _STD_OPT,
    out: Path = typer.Option(None, "--out", "-o", help="Records directory for --model; "
                             "examples go to its sibling adv/.", rich_help_panel="Your own model"),
    name: str = _NAME_OPT,
) -> None:
    from robench import api
    from robench.registry import load_all

    load_all()
    params = _attack_params([attack], set_, steps, restarts).get(attack)
    if batch_size <= 0:
        raise UserError(f"--batch-size must be a positive integer, got {batch_size}.")
    target = _target(run, model, weights, dataset, data_dir, image_size, mean, std, out, name,
                     checkpoint)
    o = api.craft(target, attack, params=params, norm=norm.value, eps=eps,
                  n_examples=_n_examples(n_examples, 100), batch_size=batch_size, seed=seed,
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


# ---------------------------------------------------------------------------------------
# report and sweep

FORMATS_HELP = "Comma-separated: md, csv, html, json (RobustBench model_info), png."

REPORT_HELP = """Leaderboards from result records: one table per dataset and threat model.

Reads runs/*/evals/*.json (or the record files and run directories given), ranks models by
robust accuracy (AutoAttack when recorded, else the strongest attack set, named), marks rows
whose 95 % interval overlaps the leader's, and writes the formats asked for.

Examples:

  robench report runs/ --out leaderboard/

  robench report runs/ --out leaderboard/ --format md,csv,html,json,png
"""


@app.command("report", help=REPORT_HELP)
@user_errors
def report_(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(None, help="Runs directories, run directories or "
                                       "record files. \\[default: runs]"),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write the report files; "
                             "without it, tables are only printed."),
    formats: str = typer.Option("md,csv", "--format", "-f", help=FORMATS_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the tables."),
) -> None:
    from robench import report, report_corruptions

    loaded = report.load_records(paths or [Path("runs")])
    for line in loaded.warnings():
        stderr.print(f"warning: {line}", highlight=False, soft_wrap=True)
    if loaded.skipped or loaded.replaced:
        stderr.print(loaded.summary(), highlight=False, soft_wrap=True)
    if not quiet:
        report.render_terminal(report.leaderboard(loaded), stdout,
                               report_corruptions.corruption_tables(loaded))
    if out is not None:
        written = report.write_report(loaded, out, [f.strip() for f in formats.split(",")
                                                    if f.strip()])
        stderr.print(f"wrote {len(written)} file(s) to {out}", highlight=False)


SWEEP_HELP = """Train and evaluate a grid of runs, then report them.

Runs already complete are skipped and recorded evaluations are not repeated, so running a
sweep again continues it. Exit code 1 if any run fails.

Examples:

  robench sweep benchmarks/leaderboard/digits.yaml

  robench sweep grid.yaml --jobs 2 --dry-run
"""


@app.command("sweep", help=SWEEP_HELP)
@user_errors
def sweep_(
    ctx: typer.Context,
    grid: Path = typer.Argument(..., help="The sweep's YAML file."),
    launcher: str = typer.Option("local", "--launcher", help="Where runs execute: local."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Runs at a time (local launcher)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and stop."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    from robench import sweep
    from robench.registry import load_all

    load_all()
    cfg = sweep.load_sweep(grid)
    jobs_ = sweep.expand(cfg)
    if dry_run:
        for job in jobs_:
            stdout.print(job.name, highlight=False)
        return
    from robench import report, report_corruptions

    log = None if quiet else (lambda line: stderr.print(line, highlight=False))
    run = sweep.make_launcher(launcher, jobs=jobs, out=cfg.out, log=log)
    results = run.run(jobs_)
    failed = [r for r in results if not r.ok]
    evaluated = [j.run_dir for j in jobs_ if (j.run_dir / "evals").is_dir()]
    if evaluated:
        loaded = report.load_records(evaluated)
        if not quiet:
            report.render_terminal(report.leaderboard(loaded), stdout,
                               report_corruptions.corruption_tables(loaded))
        if cfg.report.out:
            written = report.write_report(loaded, Path(cfg.report.out), cfg.report.formats)
            if not quiet:
                stderr.print(f"wrote {len(written)} file(s) to {cfg.report.out}",
                             highlight=False)
    if failed:
        for r in failed:
            stderr.print(f"[bold red]failed:[/] {r.job.name}: {r.message}", highlight=False)
        raise typer.Exit(1)
