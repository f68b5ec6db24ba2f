"""A run's parts from its config: the validated config, its defense, dataset and model.

Every input mistake surfaces here, before a file is written; the same functions rebuild a
finished run's model for evaluation, so a checkpoint always loads into the model it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from robench import config as config_mod
from robench import runs
from robench.config import TrainConfig
from robench.data import IMAGEFOLDER_PREFIX, DatasetSplits, load_dataset
from robench.defenses import Defense, configure_model, resolve_defense
from robench.errors import UserError
from robench.models import create_model
from robench.registry import DATASETS
from robench.runtime import seed_everything
from robench.threat import default_eps


def resolve_config(layers: Sequence[dict[str, Any]]) -> tuple[TrainConfig, Defense]:
    """A validated config with every default written out, and its defense."""
    cfg = config_mod.resolve(list(layers))
    if not cfg.data.dataset.startswith(IMAGEFOLDER_PREFIX):
        DATASETS.entry(cfg.data.dataset)  # an unknown name: the did-you-mean error, first
    defense = resolve_defense(cfg.defense, cfg.defenses, dataset=cfg.data.dataset)
    configure_model(defense, cfg.model)
    cfg.defenses = defense.params_dict()
    if cfg.validation.eps is None:  # the budget the defense trains for, else the dataset's
        trained = [p["eps"] for p in cfg.defenses.values() if p.get("eps") is not None]
        cfg.validation.eps = (trained[0] if trained
                              else default_eps(cfg.data.dataset, "Linf").value)
    if cfg.validation.select is None:
        cfg.validation.select = defense.default_select
    return cfg, defense


def build_parts(cfg: TrainConfig, defense: Defense, *, init: bool = False
                ) -> tuple[DatasetSplits, torch.nn.Module]:
    """Dataset and model for `cfg`: every input mistake surfaces here, before a file is written.

    `init` loads the final weights of run `cfg.init` into the architecture before the defense
    transforms it (a transform such as advbn's adds layers the source run does not have).
    """
    d = cfg.data
    splits = load_dataset(d.dataset, data_dir=d.data_dir, download=d.download,
                          image_size=d.image_size, train_subset=d.train_subset,
                          val_size=d.val_size, split_seed=d.split_seed)
    info = splits.info
    seed_everything(cfg.runtime.seed, cfg.runtime.deterministic)
    model = create_model(cfg.model.arch, in_channels=info.channels, num_classes=info.num_classes,
                         image_size=info.image_size, mean=info.mean, std=info.std,
                         strides=cfg.model.strides, width=cfg.model.width)
    if init and cfg.init:
        _load_init(model, cfg)
    return splits, defense.apply(model)


def init_layer(init: str | Path) -> dict[str, Any]:
    """The data and model settings of run `init`: what fine-tuning from it starts with."""
    saved = config_mod.load_yaml(runs.require_run(Path(init)) / runs.CONFIG)
    data = {k: saved["data"][k] for k in ("dataset", "data_dir", "image_size", "train_subset",
                                          "val_size", "split_seed") if k in saved["data"]}
    return {"data": data, "model": saved["model"], "init": str(init)}


def _load_init(model: torch.nn.Module, cfg: TrainConfig) -> None:
    source, source_cfg = load_run_model(Path(cfg.init))
    state, own = source.state_dict(), model.state_dict()
    fits = state.keys() == own.keys() and all(state[k].shape == own[k].shape for k in own)
    if not fits:
        raise UserError(f"the weights of run {cfg.init!r} ({source_cfg.model.arch}, defense "
                        f"{source_cfg.defense}, strides {source_cfg.model.strides}) do not fit "
                        f"{cfg.model.arch} with strides {cfg.model.strides} and width "
                        f"{cfg.model.width}; fine-tune from a run of the same architecture.")
    model.load_state_dict(state)


def rebuild_run(run_dir: Path, weights: str = runs.MODEL
                ) -> tuple[torch.nn.Module, TrainConfig, DatasetSplits]:
    """A run's model rebuilt from its config with its saved `weights` loaded (eval mode)."""
    run_dir = runs.require_run(Path(run_dir))
    path = run_dir / weights
    if not path.is_file():
        raise UserError(f"run {str(run_dir)!r} has no {weights}; it has not finished training "
                        f"(continue it with: robench train --resume {run_dir}).")
    cfg, defense = resolve_config([config_mod.load_yaml(run_dir / runs.CONFIG)])
    splits, model = build_parts(cfg, defense)
    runs.load_weights(model, path)
    return model.eval(), cfg, splits


def load_run_model(run_dir: Path, weights: str = runs.MODEL) -> tuple[torch.nn.Module, TrainConfig]:
    """Rebuild a run's model from its config and load its saved weights (eval mode)."""
    model, cfg, _ = rebuild_run(run_dir, weights)
    return model, cfg
