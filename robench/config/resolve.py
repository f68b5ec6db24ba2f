"""A training config from its layers: defaults, merging, validation, and differences."""

from __future__ import annotations

from typing import Any

from robench.config.coerce import build
from robench.config.defaults import dataset_defaults
from robench.config.layers import deep_merge
from robench.config.schema import (
    AUGMENTS,
    DEVICES,
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
    require,
)


def validate(cfg: TrainConfig) -> TrainConfig:
    o, r, d, m = cfg.optim, cfg.runtime, cfg.data, cfg.model
    require(o.epochs > 0, f"optim.epochs (--epochs) must be a positive integer, got {o.epochs}.")
    require(o.lr > 0, f"optim.lr (--lr) must be a positive number, got {o.lr}.")
    require(o.batch_size > 0,
             f"optim.batch_size (--batch-size) must be a positive integer, got {o.batch_size}.")
    require(0 <= o.momentum < 1, f"optim.momentum must be in [0, 1), got {o.momentum}.")
    require(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}.")
    require(0 <= o.label_smoothing < 1,
             f"optim.label_smoothing must be in [0, 1), got {o.label_smoothing}.")
    require(0 < o.gamma <= 1, f"optim.gamma must be in (0, 1], got {o.gamma}.")
    require(0 <= o.warmup_epochs < o.epochs,
             f"optim.warmup_epochs must be in [0, epochs), got {o.warmup_epochs}.")
    require(o.schedule in SCHEDULES,
             f"optim.schedule {o.schedule!r} is not one of {', '.join(SCHEDULES)}.")
    bad = [s for s in o.milestones if not 0 < s < o.epochs]
    require(not bad, f"optim.milestones {o.milestones} must lie strictly between 0 and "
                      f"epochs ({o.epochs}).")
    require(o.milestones == sorted(o.milestones),
             f"optim.milestones {o.milestones} must be in increasing order.")
    require(r.precision in PRECISIONS,
             f"runtime.precision {r.precision!r} is not one of {', '.join(PRECISIONS)}.")
    require(r.device in DEVICES or r.device.startswith("cuda:"),
             f"runtime.device {r.device!r} is not one of {', '.join(DEVICES)} (or cuda:N).")
    require(r.eval_batch_size > 0,
             f"runtime.eval_batch_size must be a positive integer, got {r.eval_batch_size}.")
    require(isinstance(r.world_size, int) and r.world_size >= 1,
            f"runtime.world_size must be a positive integer, got {r.world_size!r}.")
    require(d.augment is None or d.augment in AUGMENTS,
             f"data.augment {d.augment!r} is not one of {', '.join(AUGMENTS)}.")
    require(d.image_size is None or d.image_size > 0,
             f"data.image_size (--image-size) must be a positive integer, got {d.image_size}.")
    require(d.train_subset is None or d.train_subset > 0,
             f"data.train_subset (--train-subset) must be a positive integer, "
             f"got {d.train_subset}.")
    require(d.val_size is None or d.val_size >= 0,
             f"data.val_size (--val-size) must be >= 0, got {d.val_size}.")
    require(m.width > 0, f"model.width must be a positive number, got {m.width}.")
    v = cfg.validation
    require(v.every > 0, f"validation.every must be a positive integer, got {v.every}.")
    require(v.steps > 0, f"validation.steps must be a positive integer, got {v.steps}.")
    require(v.eps is None or 0 < v.eps <= 1, f"validation.eps must be in (0, 1], got {v.eps}.")
    require(v.select in (None, "robust", "clean"),
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
