"""Typed training configuration: defaults, layering, validation and YAML round trips.

A config is resolved from layers, later layers winning:
built-in defaults < per-dataset table < YAML file (`--config`) < `--set key=value` < flags.
The resolved config is written to the run directory with every default spelled out, so that
`robench train --config runs/<id>/config.yaml` reproduces the run.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from robench.atomic import atomic_write_text
from robench.errors import UserError

PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")
SCHEDULES = ("constant", "multistep", "cosine", "onecycle", "cyclic")
AUGMENTS = ("crop+flip", "crop", "none", "augmix+clean")


@dataclass
class DataConfig:
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None
    train_subset: int | None = None
    val_size: int | None = None
    split_seed: int = 0
    augment: str | None = None


@dataclass
class ModelConfig:
    arch: str = "cnn"
    strides: str | None = None
    width: float = 1.0


@dataclass
class OptimConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "multistep"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0


@dataclass
class RuntimeConfig:
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    seed: int = 0
    deterministic: bool = False
    eval_batch_size: int = 512


@dataclass
class ValidationConfig:
    """In-training validation; best.safetensors is chosen on it, never on the test split."""

    every: int = 1  # epochs between validations; the last epoch is always validated
    attack: str = "pgd"
    steps: int = 10
    eps: float | None = None  # None: the defense's eps, else the dataset's standard Linf eps
    select: str = "robust"  # what best.safetensors maximises: robust (then clean) or clean


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    defense: str = "standard"
    defenses: dict[str, dict[str, Any]] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    init: str | None = None  # a run directory whose final weights training starts from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        """Short digest of what determines the result (not where it runs or is stored)."""
        d = self.to_dict()
        for key in ("device", "eval_batch_size"):
            d["runtime"].pop(key)
        d["data"].pop("data_dir")
        d["data"].pop("download")
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


# Per-dataset defaults: the recipe a user gets with no flags. CIFAR-like values follow the
# usual CIFAR-10 recipe (SGD 0.1, momentum 0.9, wd 5e-4, bs 128, LR x0.1 at 100 and 105 of 110).
_CIFAR_LIKE = {
    "model": {"arch": "preactresnet18"},
    "optim": {"epochs": 110, "batch_size": 128, "lr": 0.1, "schedule": "multistep",
              "milestones": [100, 105]},
}
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {
        "model": {"arch": "cnn"},
        "optim": {"epochs": 30, "batch_size": 64, "lr": 0.05, "schedule": "cosine"},
    },
    "mnist": {
        "model": {"arch": "cnn"},
        "optim": {"epochs": 20, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
    },
    "fashion-mnist": {
        "model": {"arch": "cnn"},
        "optim": {"epochs": 30, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
    },
    "cifar10": _CIFAR_LIKE,
    "cifar100": _CIFAR_LIKE,
    "svhn": {
        "model": {"arch": "preactresnet18"},
        "optim": {"epochs": 50, "batch_size": 128, "lr": 0.01, "schedule": "multistep",
                  "milestones": [25, 40]},
    },
    "tinyimagenet": _CIFAR_LIKE,
    "imagefolder": _CIFAR_LIKE,
}


def dataset_defaults(dataset: str) -> dict[str, Any]:
    key = "imagefolder" if dataset.startswith("imagefolder:") else dataset
    return DATASET_DEFAULTS.get(key, {})


# ----------------------------------------------------------------------------------------
# Nested-dict layers


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        d = d.setdefault(part, {})
        if not isinstance(d, dict):
            raise UserError(f"config key {dotted!r} goes inside a value that is not a section.")
    d[parts[-1]] = value


def parse_set(items: list[str], defense_names: typing.Iterable[str] = ()) -> dict[str, Any]:
    """`--set key=value` items as a nested dict; values are read as YAML scalars.

    `<defense>.<param>=v` is shorthand for `defenses.<defense>.<param>=v`.
    """
    defense_names = set(defense_names)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r} is not of the form key=value, e.g. optim.lr=0.05.")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if key.split(".")[0] in defense_names:
            key = "defenses." + key
        set_dotted(out, key, value)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"config file {str(path)!r} is not valid YAML{where}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {str(path)!r} must hold a mapping of keys, "
                        f"not a {type(data).__name__}.")
    return data


def dump_yaml(cfg: TrainConfig, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# ----------------------------------------------------------------------------------------
# Typed construction: unknown keys and wrong types are rejected with the key named


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return True, args[0]
    return False, tp


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    return str(tp)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise UserError(f"config key {key!r} needs {_type_name(inner)}, got nothing.")
    tp = inner
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config key {key!r} is a section and needs a mapping, "
                            f"got {value!r}.")
        return build(tp, value, prefix=key + ".")
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and key.split(".")[-1] == "eps":
            from robench.threat import parse_eps  # eps may be written as a fraction: 8/255

            return parse_eps(value).value
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (list, tuple)):
            return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
    else:  # pragma: no cover - a field type this module does not know is a bug
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    raise UserError(f"config key {key!r} needs {_type_name(tp)}, got {value!r}.")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field types of a dataclass (resolving them is most of the cost of reading a record)."""
    return typing.get_type_hints(cls)


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from a nested dict, checking every key and type."""
    hints = _hints(cls)
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {prefix}{close[0]!r}? " if close else ""
            raise UserError(f"unknown config key {prefix + str(key)!r}; {hint}"
                            f"known keys here: {', '.join(prefix + k for k in known)}.")
    kwargs = {name: _coerce(prefix + name, data[name], hints[name])
              for name in known if name in data}
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------
# Semantic checks (types are already right here)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def validate(cfg: TrainConfig) -> TrainConfig:
    o, r, d, m = cfg.optim, cfg.runtime, cfg.data, cfg.model
    _require(o.epochs > 0, f"optim.epochs (--epochs) must be a positive integer, got {o.epochs}.")
    _require(o.lr > 0, f"optim.lr (--lr) must be a positive number, got {o.lr}.")
    _require(o.batch_size > 0,
             f"optim.batch_size (--batch-size) must be a positive integer, got {o.batch_size}.")
    _require(0 <= o.momentum < 1, f"optim.momentum must be in [0, 1), got {o.momentum}.")
    _require(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}.")
    _require(0 <= o.label_smoothing < 1,
             f"optim.label_smoothing must be in [0, 1), got {o.label_smoothing}.")
    _require(0 < o.gamma <= 1, f"optim.gamma must be in (0, 1], got {o.gamma}.")
    _require(0 <= o.warmup_epochs < o.epochs,
             f"optim.warmup_epochs must be in [0, epochs), got {o.warmup_epochs}.")
    _require(o.schedule in SCHEDULES,
             f"optim.schedule {o.schedule!r} is not one of {', '.join(SCHEDULES)}.")
    bad = [s for s in o.milestones if not 0 < s < o.epochs]
    _require(not bad, f"optim.milestones {o.milestones} must lie strictly between 0 and "
                      f"epochs ({o.epochs}).")
    _require(o.milestones == sorted(o.milestones),
             f"optim.milestones {o.milestones} must be in increasing order.")
    _require(r.precision in PRECISIONS,
             f"runtime.precision {r.precision!r} is not one of {', '.join(PRECISIONS)}.")
    _require(r.device in DEVICES or r.device.startswith("cuda:"),
             f"runtime.device {r.device!r} is not one of {', '.join(DEVICES)} (or cuda:N).")
    _require(r.eval_batch_size > 0,
             f"runtime.eval_batch_size must be a positive integer, got {r.eval_batch_size}.")
    _require(d.augment is None or d.augment in AUGMENTS,
             f"data.augment {d.augment!r} is not one of {', '.join(AUGMENTS)}.")
    _require(d.image_size is None or d.image_size > 0,
             f"data.image_size (--image-size) must be a positive integer, got {d.image_size}.")
    _require(d.train_subset is None or d.train_subset > 0,
             f"data.train_subset (--train-subset) must be a positive integer, "
             f"got {d.train_subset}.")
    _require(d.val_size is None or d.val_size >= 0,
             f"data.val_size (--val-size) must be >= 0, got {d.val_size}.")
    _require(m.width > 0, f"model.width must be a positive number, got {m.width}.")
    v = cfg.validation
    _require(v.every > 0, f"validation.every must be a positive integer, got {v.every}.")
    _require(v.steps > 0, f"validation.steps must be a positive integer, got {v.steps}.")
    _require(v.eps is None or 0 < v.eps <= 1, f"validation.eps must be in (0, 1], got {v.eps}.")
    _require(v.select in ("robust", "clean"),
             f"validation.select {v.select!r} is not one of robust, clean.")
    return cfg


def resolve(layers: list[dict[str, Any]]) -> TrainConfig:
    """Resolve a config from override layers (lowest first) on top of the defaults.

    The dataset is decided first, since it picks the per-dataset defaults below the layers.
    """
    dataset = "digits"
    for layer in layers:
        data = layer.get("data")
        if isinstance(data, dict) and isinstance(data.get("dataset"), str):
            dataset = data["dataset"]
    table = dataset_defaults(dataset)
    merged = deep_merge(TrainConfig().to_dict(), table)
    for layer in layers:
        merged = deep_merge(merged, layer)
    _scale_default_milestones(merged, table, layers)
    # Validate key names of every layer (merged dict would hide where a typo came from).
    return validate(build(TrainConfig, merged))


def _given(layers: list[dict[str, Any]], section: str, key: str) -> bool:
    return any(isinstance(layer.get(section), dict) and key in layer[section]
               for layer in layers)


def _scale_default_milestones(merged: dict[str, Any], table: dict[str, Any],
                              layers: list[dict[str, Any]]) -> None:
    """Move default LR milestones with a user's `epochs`.

    `--epochs 10` on CIFAR-10 should decay the LR at the same fractions of training as the
    110-epoch recipe (100 and 105), not fail because 100 > 10. Milestones that come with
    their own epoch count (the dataset table, a recipe) scale to the final epochs; milestones
    a user gives without epochs are taken as they are.
    """
    sources = [table, *layers]
    given = [s for s in sources
             if isinstance(s.get("optim"), dict) and "milestones" in s["optim"]]
    if not given or "epochs" not in given[-1]["optim"]:
        return
    base = given[-1]["optim"]
    epochs = merged["optim"]["epochs"]
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs == base["epochs"]:
        return
    scaled = {m * epochs // base["epochs"] for m in base["milestones"]}
    merged["optim"]["milestones"] = sorted(m for m in scaled if 0 < m < epochs)


def diff(a: TrainConfig, b: TrainConfig) -> list[tuple[str, Any, Any]]:
    """Keys whose values differ, dotted, with both values."""
    out: list[tuple[str, Any, Any]] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{prefix}{k}.")
        elif x != y:
            out.append((prefix.rstrip("."), x, y))

    walk(a.to_dict(), b.to_dict(), "")
    return out


DEFAULT_N_EXAMPLES = 1000


@dataclass
class EvalConfig:
    """An evaluation protocol: attacks in order, threat model, points, and runtime."""

    attacks: list[str] = field(default_factory=lambda: ["autoattack"])
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per attack name
    norm: str = "Linf"
    eps: list[str] = field(default_factory=list)  # empty: the dataset's standard eps
    n_examples: int | None = None  # None: the first DEFAULT_N_EXAMPLES (or all, if fewer)
    all_examples: bool = False  # the whole test split
    batch_size: int = 500
    seed: int = 0  # the attacks' seed (and the seed of a randomised model's draws)
    selection_seed: int = 0  # which points, when they are sampled (class-ordered splits)
    precision: str = "fp32"  # of the attacks' search; verdicts are always fp32
    device: str = "auto"
    checkpoint: str = "final"
    # Passes per verdict for a randomised model; a point is correct only if every one is.
    verdict_draws: int = 10
    allow_non_eot: bool = False  # run attacks without EOT on a randomised model, flagged
    sanity: bool = False  # the opt-in checks of robench.evaluation.sanity
    sanity_n: int = 100  # points they run on (the first ones evaluated)

    def validate(self) -> EvalConfig:
        _require(bool(self.attacks), "give at least one --attack, e.g. --attack autoattack.")
        _require(self.n_examples is None or self.n_examples > 0,
                 f"--n-examples must be a positive integer, got {self.n_examples}.")
        _require(self.batch_size > 0,
                 f"--batch-size must be a positive integer, got {self.batch_size}.")
        _require(self.precision in PRECISIONS,
                 f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}.")
        _require(self.verdict_draws >= 1,
                 f"--verdict-draws must be a positive integer, got {self.verdict_draws}.")
        _require(self.sanity_n >= 1,
                 f"--sanity-n must be a positive integer, got {self.sanity_n}.")
        stray = sorted(set(self.params) - set(self.attacks))
        _require(not stray, f"parameters were given for attack {stray[0]!r}, which is not "
                            f"among the attacks run ({', '.join(self.attacks)})."
                 if stray else "")
        return self
