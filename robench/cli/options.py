"""The options and argument parsing that several commands share."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from robench.errors import UserError


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"


class Norm(str, Enum):
    linf = "Linf"
    l2 = "L2"


class Checkpoint(str, Enum):
    final = "final"
    best = "best"


def int_list(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"{flag} {text!r} must be comma-separated integers, "
                        f"e.g. 100,105.") from None


def flag_layer(**values: Any) -> dict[str, Any]:
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


def n_examples_arg(text: str | None, default: int | None) -> int | None:
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


def batch_size_arg(text: str) -> int | str:
    """--batch-size: a positive whole number, or "auto"."""
    text = text.strip()
    if text.lower() == "auto":
        return "auto"
    if not (text.isdigit() and int(text) > 0):
        raise UserError(f"--batch-size must be a positive integer or 'auto', got {text!r}.")
    return int(text)


def floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UserError(f"{flag} {text!r} must be comma-separated numbers, "
                        f"e.g. 0.4914,0.4822,0.4465.") from None


def attack_params(attacks: list[str], sets: list[str] | None, steps: int | None,
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
        takers = [a for a in attacks if name in param_names(a)]
        if not takers:
            raise UserError(f"{flag} applies to none of the attacks run "
                            f"({', '.join(attacks)}).")
        for a in takers:
            params.setdefault(a, {}).setdefault(name, value)
    return params


def param_names(attack: str) -> set[str]:
    from robench.registry import ATTACKS

    return {f.name for f in dataclasses.fields(ATTACKS.get(attack).params_cls)}


@dataclasses.dataclass
class ZooOptions:
    """`eval`'s options for --model robustbench:<name> (other commands take the defaults)."""

    threat: str | None = None  # None: Linf
    zoo_dataset: str | None = None
    model_dir: Path | None = None
    download: bool = False
    model_info: Path | None = None


def target_of(run, model, weights, dataset, data_dir, image_size, mean, std, out, name,
              checkpoint, zoo: ZooOptions | None = None):
    """The Target a command runs on: a run directory, or --model with its dataset."""
    from robench import api
    from robench.targets.zoo import is_zoo_spec

    if run is not None and model is not None:
        raise UserError("give either a run directory or --model, not both.")
    if run is not None:
        for flag, value in (("--weights", weights), ("--dataset", dataset), ("--mean", mean),
                            ("--std", std), ("--out", out)):
            if value is not None:
                raise UserError(f"{flag} goes with --model; a run directory brings its own.")
        if zoo is not None and zoo not in (ZooOptions(), ZooOptions(threat="corruptions")):
            raise UserError("--threat, --zoo-dataset, --model-dir, --download and --model-info "
                            "go with --model robustbench:<name>, not a run directory.")
        return api.from_run(run, checkpoint.value if checkpoint else "final")
    if model is None:
        raise UserError("give a run directory (e.g. runs/<run-id>) or --model file.py:factory.")
    if dataset is None:
        raise UserError("--model needs --dataset, e.g. --dataset cifar10.")
    if is_zoo_spec(model):
        for flag, value in (("--mean", mean), ("--std", std), ("--name", name)):
            if value is not None:
                raise UserError(f"{flag} is not for a zoo model: RobustBench's models take "
                                f"[0, 1] images and are named by the zoo.")
        z = zoo or ZooOptions()
        return api.from_zoo(model, dataset=dataset, threat=z.threat or "Linf",
                            zoo_dataset=z.zoo_dataset,
                            weights=weights, model_dir=z.model_dir, download=z.download,
                            model_info=z.model_info, data_dir=data_dir,
                            image_size=image_size, out=out)
    if zoo is not None and zoo not in (ZooOptions(), ZooOptions(threat="corruptions")):
        raise UserError("--threat, --zoo-dataset, --model-dir, --download and --model-info "
                        "go with --model robustbench:<name>.")
    return api.from_external(model, weights=weights, dataset=dataset, data_dir=data_dir,
                                 image_size=image_size, mean=floats(mean, "--mean"),
                                 std=floats(std, "--std"), out=out, name=name)


RUN_ARG = typer.Argument(None, help="A run directory, e.g. runs/<run-id>.", show_default=False)
MODEL_OPT = typer.Option(None, "--model", help="Your own model, path/to/file.py:factory, "
                         "or a RobustBench zoo model, robustbench:<name>.",
                          rich_help_panel="Your own model")
WEIGHTS_OPT = typer.Option(None, "--weights", help="State dict for --model: .safetensors or "
                            ".pt (loaded with weights_only=True).",
                            rich_help_panel="Your own model")
DATASET_OPT = typer.Option(None, "--dataset", "-d", help="Dataset for --model.",
                            rich_help_panel="Your own model")
DATA_DIR_OPT = typer.Option(None, "--data-dir", rich_help_panel="Your own model")
IMAGE_SIZE_OPT = typer.Option(None, "--image-size", rich_help_panel="Your own model")
MEAN_OPT = typer.Option(None, "--mean", help="Per-channel mean if your model expects "
                         "normalised input, e.g. 0.4914,0.4822,0.4465.",
                         rich_help_panel="Your own model")
STD_OPT = typer.Option(None, "--std", help="Per-channel std, with --mean.",
                        rich_help_panel="Your own model")
NAME_OPT = typer.Option(None, "--name", help="Name for --model in records.",
                         rich_help_panel="Your own model")
CHECKPOINT_OPT = typer.Option(None, "--checkpoint", help="Which weights of a run: final "
                               "(model.safetensors) or best (chosen on validation). "
                               "\\[default: final]")


def corruption_names(text: str | None) -> list[str]:
    from robench import corruptions as corruption_lib

    text = (text or "benchmark").strip()
    return {"benchmark": list(corruption_lib.names()),
            "all": list(corruption_lib.names(extra=True))}.get(
        text, [c.strip() for c in text.split(",") if c.strip()])
