"""robench's operations as Python functions; the CLI is a thin skin over these."""

from __future__ import annotations

import getpass
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import robench
from robench import config as config_mod
from robench import runs
from robench.config import TrainConfig
from robench.data import DatasetSplits, load_dataset
from robench.defenses import Defense, resolve_defense
from robench.errors import Interrupted, UserError
from robench.evaluation import accuracy
from robench.models import create_model
from robench.progress import EpochReporter
from robench.runtime import resolve_device, seed_everything
from robench.training import EpochCallback, fit


@dataclass
class TrainResult:
    run_dir: Path
    run_id: str
    config: TrainConfig
    summary: dict[str, Any]
    reused: bool = False  # True when an identical complete run already existed


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _git_commit() -> str | None:
    here = Path(robench.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _environment(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "robench": robench.__version__,
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "user": _user(),
        "git_commit": _git_commit(),
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "argv": sys.argv,
    }


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def resolve_config(layers: Sequence[dict[str, Any]]) -> tuple[TrainConfig, Defense]:
    """A validated config with every default written out, and its defense."""
    cfg = config_mod.resolve(list(layers))
    defense = resolve_defense(cfg.defense, cfg.defenses)
    cfg.defenses = defense.params_dict()
    return cfg, defense


def build_parts(cfg: TrainConfig, defense: Defense) -> tuple[DatasetSplits, torch.nn.Module]:
    """Dataset and model for `cfg`: every input mistake surfaces here, before a file is written."""
    d = cfg.data
    splits = load_dataset(d.dataset, data_dir=d.data_dir, download=d.download,
                          image_size=d.image_size, train_subset=d.train_subset,
                          val_size=d.val_size, split_seed=d.split_seed)
    info = splits.info
    seed_everything(cfg.runtime.seed, cfg.runtime.deterministic)
    model = create_model(cfg.model.arch, in_channels=info.channels, num_classes=info.num_classes,
                         image_size=info.image_size, mean=info.mean, std=info.std,
                         strides=cfg.model.strides, width=cfg.model.width)
    return splits, defense.apply(model)


def load_run_model(run_dir: Path, weights: str = runs.MODEL) -> tuple[torch.nn.Module, TrainConfig]:
    """Rebuild a run's model from its config and load its saved weights (eval mode)."""
    run_dir = runs.require_run(run_dir)
    cfg, defense = resolve_config([config_mod.load_yaml(run_dir / runs.CONFIG)])
    _, model = build_parts(cfg, defense)
    path = run_dir / weights
    if not path.is_file():
        raise UserError(f"run {str(run_dir)!r} has no {weights}; it has not finished training "
                        f"(continue it with: robench train --resume {run_dir}).")
    runs.load_weights(model, path)
    return model.eval(), cfg


def train(cfg: TrainConfig, *, out: str | Path = "runs", quiet: bool = False,
          callbacks: Sequence[EpochCallback] = ()) -> TrainResult:
    """Train a new run of `cfg` under `out` and return where it is and how it did."""
    cfg, defense = resolve_config([cfg.to_dict()])
    rid = runs.run_id(cfg.data.dataset, cfg.model.arch, cfg.defense, cfg.runtime.seed,
                      cfg.hash())
    run_dir = Path(out) / rid
    if run_dir.exists():
        if runs.is_complete(run_dir):
            return TrainResult(run_dir=run_dir, run_id=rid, config=cfg,
                               summary=runs.read_env(run_dir)["summary"], reused=True)
        raise UserError(f"run {str(run_dir)!r} with this config exists but did not finish; "
                        f"continue it with: robench train --resume {run_dir}")
    runs.ensure_writable_dir(Path(out))
    device = resolve_device(cfg.runtime.device)
    splits, model = build_parts(cfg, defense)
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot create run directory {str(run_dir)!r} "
                        f"({exc.strerror or exc}); pass --out with a writable directory.") from None
    config_mod.dump_yaml(cfg, run_dir / runs.CONFIG)
    env = {**_environment(device), "status": "running", "started": _now(),
           "data": splits.description}
    runs.write_env(run_dir, env)
    return _run(cfg, defense, splits, model, run_dir, env, device, quiet, callbacks)


def resume(run_dir: str | Path, layers: Sequence[dict[str, Any]] = (), *, quiet: bool = False,
           callbacks: Sequence[EpochCallback] = ()) -> TrainResult:
    """Continue an interrupted run from its last finished epoch.

    `layers` are the overrides a user gave with `--resume` (flags, `--set`, `--config`); a run
    continues only with the config it started with, so any value that differs is refused.
    """
    run_dir = runs.require_run(Path(run_dir))
    saved = config_mod.load_yaml(run_dir / runs.CONFIG)
    cfg, defense = resolve_config([saved])
    if layers:
        wanted, _ = resolve_config([saved, *layers])
        changed = config_mod.diff(cfg, wanted)
        if changed:
            key, old, new = changed[0]
            raise UserError(f"run {str(run_dir)!r} was started with {key}={old!r}, but "
                            f"{new!r} was given; a run resumes with its own config "
                            f"(drop the flag, or start a new run without --resume).")
    if runs.is_complete(run_dir):
        raise UserError(f"run {str(run_dir)!r} is already complete; there is nothing to resume.")
    device = resolve_device(cfg.runtime.device)
    splits, model = build_parts(cfg, defense)
    env = runs.read_env(run_dir)
    env.update(status="running")
    env.setdefault("resumed", []).append(_now())
    runs.write_env(run_dir, env)
    return _run(cfg, defense, splits, model, run_dir, env, device, quiet, callbacks)


def _run(cfg, defense, splits, model, run_dir, env, device, quiet, callbacks) -> TrainResult:
    reporter = EpochReporter(cfg.optim.epochs, quiet=quiet)
    try:
        with reporter:
            result = fit(model, defense, splits, cfg, run_dir, device=device, reporter=reporter,
                         callbacks=callbacks)
        r = cfg.runtime
        test_acc = accuracy(model, splits.test, device=device, batch_size=r.eval_batch_size,
                            precision=r.precision, channels_last=r.channels_last)
        summary = {
            "epochs": result.epochs,
            "train_seconds": round(result.train_seconds, 3),
            "final_train_acc": result.last.get("train_acc"),
            "final_val_acc": result.last.get("val_acc"),
            "test_acc": test_acc,
            "n_train": len(splits.train),
            "n_val": len(splits.val),
            "n_test": len(splits.test),
        }
        runs.save_weights(model, run_dir / runs.MODEL,
                          metadata={"run_id": run_dir.name, "arch": cfg.model.arch,
                                    "config_hash": cfg.hash()})
    except KeyboardInterrupt:
        env.update(status="interrupted", interrupted=_now())
        runs.write_env(run_dir, env)
        done = runs.read_metrics(run_dir)
        after = f"after epoch {done[-1]['epoch']}" if done else "before the first epoch ended"
        raise Interrupted(f"training interrupted {after}; continue it with: "
                          f"robench train --resume {run_dir}") from None
    except BaseException as exc:
        env.update(status="failed", failed=_now(), error=f"{type(exc).__name__}: {exc}")
        runs.write_env(run_dir, env)
        raise
    env.update(status="complete", ended=_now(), summary=summary)
    runs.write_env(run_dir, env)
    return TrainResult(run_dir=run_dir, run_id=run_dir.name, config=cfg, summary=summary)
