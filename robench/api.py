"""robench's operations as Python functions; the CLI is a thin skin over these."""

from __future__ import annotations

import dataclasses
import getpass
import json
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
from robench.atomic import atomic_path
from robench.attacks import create_attack
from robench.attacks.judge import Judge
from robench.attacks.view import InPrecision
from robench.config import TrainConfig
from robench.data import IMAGEFOLDER_PREFIX, DatasetSplits, load_dataset, to_float
from robench.defenses import Defense, configure_model, resolve_defense
from robench.errors import Interrupted, UserError
from robench.evaluation import EvalOutcome, accuracy, evaluate, select_points
from robench.models import create_model
from robench.progress import Counter, EpochReporter
from robench.records import record_key
from robench.registry import DATASETS
from robench.runtime import resolve_device, seed_everything
from robench.targets import Target
from robench.threat import default_eps
from robench.training import EpochCallback, fit

__all__ = ["EvalOutcome", "TrainResult", "craft", "evaluate", "load_run_model", "resume",
           "train"]


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
    if not cfg.data.dataset.startswith(IMAGEFOLDER_PREFIX):
        DATASETS.entry(cfg.data.dataset)  # an unknown name: the did-you-mean error, first
    defense = resolve_defense(cfg.defense, cfg.defenses, dataset=cfg.data.dataset)
    configure_model(defense, cfg.model)
    cfg.defenses = defense.params_dict()
    if cfg.validation.eps is None:  # the budget the defense trains for, else the dataset's
        trained = [p["eps"] for p in cfg.defenses.values() if p.get("eps") is not None]
        cfg.validation.eps = (trained[0] if trained
                              else default_eps(cfg.data.dataset, "Linf").value)
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
    rid = runs.run_id_of(cfg)
    run_dir = Path(out) / rid
    if run_dir.exists():
        if runs.is_complete(run_dir):
            return TrainResult(run_dir=run_dir, run_id=rid, config=cfg,
                               summary=runs.read_env(run_dir)["summary"], reused=True)
        raise UserError(f"run {str(run_dir)!r} with this config exists but did not finish; "
                        f"continue it with: robench train --resume {run_dir}")
    runs.ensure_writable_dir(Path(out))
    device = resolve_device(cfg.runtime.device)
    splits, model = build_parts(cfg, defense, init=True)
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
                            channels_last=r.channels_last)
        summary = {
            "epochs": result.epochs,
            "train_seconds": round(result.train_seconds, 3),
            "final_train_acc": result.last.get("train_acc"),
            "final_val_acc": result.last.get("val_acc"),
            "final_val_robust_acc": result.last.get("val_robust_acc"),
            "best": result.best,
            "catastrophic_overfitting": any(m.get("catastrophic_overfitting")
                                            for m in runs.read_metrics(run_dir)),
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


# ---------------------------------------------------------------------------------------
# Crafting and saving adversarial examples


@dataclass
class AttackOutcome:
    path: Path
    attack: dict[str, Any]
    n: int
    clean_correct: int
    success_rate: float  # of the points classified correctly before the attack
    linf_mean: float
    linf_max: float
    l2_mean: float
    l2_max: float
    in_ball: bool
    in_range: bool


def craft(target: Target, name: str, *, params: dict[str, Any] | None = None, norm: str = "Linf",
          eps: str | None = None, n_examples: int | None = 100, batch_size: int = 500,
          seed: int = 0, selection_seed: int = 0, device: str = "auto",
          precision: str = "fp32", quiet: bool = False) -> AttackOutcome:
    """Adversarial examples for the first N test points, saved to adv/<key>.safetensors.

    The search runs in `precision`; the saved predictions are the model's in fp32.
    """
    from safetensors.torch import save_file

    from robench.attacks import perturbation_norms
    from robench.threat import parse_eps

    shape = tuple(target.test.x.shape[1:])
    eps_ = (parse_eps(eps, norm=norm, shape=shape) if eps is not None
            else default_eps(target.info.name, norm, shape))
    attack = create_attack(name, norm=norm, eps=eps_.value, seed=seed, params=params)
    n_avail = len(target.test)
    if n_examples is not None and not 0 < n_examples <= n_avail:
        raise UserError(f"--n-examples {n_examples} must be between 1 and the {n_avail} test "
                        f"points of {target.info.name}.")
    runs.ensure_writable_dir(target.adv_dir)
    dev = resolve_device(device)
    idx, method = select_points(target.test, n_examples, selection_seed)
    x, y = to_float(target.test.x[idx]), target.test.y[idx]
    model = target.model.to(dev)
    judge = Judge(model, batch_size=batch_size)
    searcher = model if precision == "fp32" else InPrecision(model, precision)
    clean_pred = judge.predict(x.to(dev)).cpu()
    advs = []
    with Counter(quiet=quiet) as counter:
        task = counter.task(name, len(y))
        for s in range(0, len(y), batch_size):
            advs.append(attack(searcher, x[s:s + batch_size].to(dev),
                               y[s:s + batch_size].to(dev), judge=judge).cpu())
            counter.advance(task, len(advs[-1]))
    x_adv = torch.cat(advs)
    adv_pred = judge.predict(x_adv.to(dev)).cpu()
    linf, l2 = perturbation_norms(x, x_adv)
    size = linf if norm == "Linf" else l2
    correct = clean_pred == y
    fooled = correct & (adv_pred != y)
    key = record_key([name], norm, eps_.slug, len(y),
                     {"attack": attack.describe(), "selection": method,
                      "selection_seed": selection_seed, "seed": seed,
                      "model": dataclasses.asdict(target.source), "precision": precision})
    path = target.adv_dir / f"{key}.safetensors"
    with atomic_path(path) as tmp:
        save_file({"x_adv": x_adv.contiguous(), "labels": y.contiguous(),
                   "indices": idx.contiguous(), "clean_pred": clean_pred.contiguous(),
                   "adv_pred": adv_pred.contiguous()}, tmp,
                  metadata={"attack": json.dumps(attack.describe()), "selection": method,
                            "dataset": target.info.name, "model": target.label})
    n_correct = int(correct.sum())
    return AttackOutcome(
        path=path, attack=attack.describe(), n=len(y), clean_correct=n_correct,
        success_rate=int(fooled.sum()) / n_correct if n_correct else 0.0,
        linf_mean=linf.mean().item(), linf_max=linf.max().item(), l2_mean=l2.mean().item(),
        l2_max=l2.max().item(), in_ball=bool((size <= eps_.value + 1e-5).all()),
        in_range=bool(((x_adv >= 0) & (x_adv <= 1)).all()),
    )
