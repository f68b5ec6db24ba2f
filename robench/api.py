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
from robench import records as records_mod
from robench import runs
from robench.atomic import atomic_path
from robench.attacks import Attack, create_attack
from robench.attacks.autoattack import check_flag
from robench.config import EvalConfig, TrainConfig
from robench.data import IMAGEFOLDER_PREFIX, DatasetSplits, Split, load_dataset, to_float
from robench.defenses import Defense, configure_model, resolve_defense
from robench.errors import Interrupted, UserError
from robench.evaluation import (
    ProtocolState,
    StepResult,
    accuracy,
    check_unchanged,
    clean_state,
    is_stochastic,
    predict,
    run_attacks,
    select_points,
)
from robench.models import create_model
from robench.progress import Counter, EpochReporter
from robench.records import (
    SCHEMA_VERSION,
    AttackResult,
    Record,
    Selection,
    record_key,
    wilson_interval,
)
from robench.registry import ATTACKS, DATASETS
from robench.runtime import autocast, resolve_device, seed_everything
from robench.targets import Target
from robench.threat import Eps, default_eps, parse_eps_list
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
                            precision=r.precision, channels_last=r.channels_last)
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
# Evaluation


@dataclass
class EvalOutcome:
    record: Record
    path: Path
    reused: bool = False  # True when the same protocol had already been evaluated


# Draws per gradient for EOT on a randomised model, as in AutoAttack's 'rand' version.
EOT_DRAWS = 20


def _attacks_for(cfg: EvalConfig, eps: Eps, stochastic: bool) -> tuple[list[Attack], list[str]]:
    """The attacks of the protocol at one eps, made sound for a randomised model."""
    attacks, notes = [], []
    for name in cfg.attacks:
        params = dict(cfg.params.get(name, {}))
        if stochastic:
            fields_ = {f.name for f in dataclasses.fields(ATTACKS.get(name).params_cls)}
            if name == "autoattack" and params.get("version", "standard") in ("standard",
                                                                              "plus"):
                params["version"] = "rand"
                notes.append("the model is randomised: AutoAttack's 'rand' version (EOT over "
                             "20 draws) replaces the standard version")
            elif "eot_iter" in fields_ and "eot_iter" not in params:
                params["eot_iter"] = EOT_DRAWS
                notes.append(f"the model is randomised: {name} averages gradients over "
                             f"{EOT_DRAWS} draws (EOT)")
        attack = create_attack(name, norm=cfg.norm, eps=eps.value, seed=cfg.seed,
                               params=params)
        if getattr(attack, "batches_itself", False):
            attack.batch_size = cfg.batch_size  # AutoAttack batches (and reseeds) itself
        attacks.append(attack)
    return attacks, notes


def _flags(steps: list, attacks: list[Attack],
           stochastic: bool) -> tuple[list[str], list[str]]:
    """(flags, notes): short flags for tables; AutoAttack's own sentences as notes."""
    flags = ["stochastic-model"] if stochastic else []
    notes = []
    white_box_before = False
    for step, attack in zip(steps, attacks, strict=True):
        if step.name == "square" and white_box_before and step.broken > 0:
            flags.append("square-beat-white-box")
        white_box_before = white_box_before or step.name not in ("square", "gaussian")
        report = getattr(attack, "report", None)
        if report is not None:
            for warning in getattr(report, "warnings", []):
                flags.append(check_flag(warning))
                notes.append(f"AutoAttack's check: {warning}")
            if getattr(report, "square_broke_points", False):
                flags.append("square-beat-white-box")
    return list(dict.fromkeys(flags)), notes


def _save_state(path: Path, state: ProtocolState) -> None:
    runs.save_state({
        "clean_correct": state.clean_correct, "robust": state.robust,
        "clean_seconds": state.clean_seconds,
        "steps": [dataclasses.asdict(s) for s in state.steps],
    }, path)


def _unlink_state(path: Path) -> None:
    """Remove a state file and any sidecar an attack keeps beside it."""
    path.unlink(missing_ok=True)
    for extra in path.parent.glob(path.name + ".*"):
        extra.unlink(missing_ok=True)


def _load_state(path: Path) -> ProtocolState:
    data = runs.load_state(path)
    return ProtocolState(clean_correct=data["clean_correct"], robust=data["robust"],
                         clean_seconds=data["clean_seconds"],
                         steps=[StepResult(**s) for s in data["steps"]])


def evaluate(target: Target, cfg: EvalConfig, *, quiet: bool = False, resume: bool = False,
             force: bool = False) -> list[EvalOutcome]:
    """Clean and robust accuracy of `target` under `cfg`: one record per eps."""
    cfg.validate()
    eps_list = (parse_eps_list(cfg.eps) if cfg.eps
                else [default_eps(target.info.name, cfg.norm)])
    for eps in eps_list:  # every attack name, norm and parameter checked before any work
        _attacks_for(cfg, eps, stochastic=False)
    n_avail = len(target.test)
    if cfg.n_examples is not None and cfg.n_examples > n_avail:
        raise UserError(f"--n-examples {cfg.n_examples} is more than the {n_avail} test "
                        f"points of {target.info.name}; give at most {n_avail}.")
    if cfg.all_examples:
        n_points = n_avail
    else:
        n_points = cfg.n_examples or min(config_mod.DEFAULT_N_EXAMPLES, n_avail)
    runs.ensure_writable_dir(target.evals_dir)
    device = resolve_device(cfg.device)
    idx, method = select_points(target.test, n_points, cfg.seed)
    x, y = target.test.x[idx], target.test.y[idx]
    model = target.model.to(device)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    stochastic = is_stochastic(model, to_float(x[:cfg.batch_size].to(device)))
    selection = Selection(n_examples=len(idx), method=method, seed=cfg.seed,
                          n_available=n_avail)
    outcomes, clean = [], None
    with Counter(quiet=quiet) as counter:
        previous: Record | None = None  # the record at the next smaller eps
        for eps in sorted(eps_list, key=lambda e: e.value):
            attacks, notes = _attacks_for(cfg, eps, stochastic)
            protocol = {"attacks": [a.describe() for a in attacks], "norm": cfg.norm,
                        "batch_size": [getattr(a, "batch_size", None) for a in attacks],
                        "eps": eps.value, "selection": dataclasses.asdict(selection),
                        "precision": cfg.precision, "model": dataclasses.asdict(target.source)}
            key = record_key([a.name for a in attacks], cfg.norm, eps.slug, len(idx), protocol)
            path = target.evals_dir / f"{key}.json"
            if path.is_file() and not force:
                outcomes.append(EvalOutcome(records_mod.read(path), path, reused=True))
                previous = outcomes[-1].record
                continue
            state_path = target.evals_dir / f".{key}.state.pt"
            inner = [target.evals_dir / f".{key}.attack{i}.state" for i in range(len(attacks))]
            if resume and state_path.is_file():
                state = _load_state(state_path)
                counter.message(f"resuming {key} after {len(state.steps)} finished attack(s)")
            else:
                for path_ in (state_path, *inner):
                    _unlink_state(path_)
                if clean is None:
                    clean = clean_state(model, x, y, device=device,
                                        batch_size=cfg.batch_size, precision=cfg.precision)
                state = ProtocolState(clean.clean_correct, clean.clean_correct.clone(),
                                      clean_seconds=clean.clean_seconds)
            try:
                run_attacks(model, x, y, attacks, state, device=device,
                            batch_size=cfg.batch_size, precision=cfg.precision,
                            counter=counter, on_step=lambda s, p=state_path: _save_state(p, s),
                            state_path=lambda i, inner=inner: inner[i])
            except KeyboardInterrupt:
                raise Interrupted(f"evaluation interrupted after {len(state.steps)} of "
                                  f"{len(attacks)} attacks; run the same command with --resume "
                                  f"to continue it.") from None
            check_unchanged(model, before, was_training)
            flags, check_notes = _flags(state.steps, attacks, stochastic)
            record = _record(target, cfg, key, eps, attacks, state, selection,
                             notes + check_notes, flags + _curve_flags(state, previous), device,
                             seconds=state.clean_seconds + sum(s.seconds for s in state.steps))
            written = records_mod.write(record, target.evals_dir)
            for path_ in (state_path, *inner):
                _unlink_state(path_)
            outcomes.append(EvalOutcome(record, written))
            previous = record
    return outcomes


def _curve_flags(state: ProtocolState, previous: Record | None) -> list[str]:
    """A larger budget that leaves more points robust is a sign of gradient masking."""
    if previous is None:
        return []
    robust = int(state.robust.sum()) / len(state.robust)
    if robust > previous.robust_acc:
        return [f"robust-accuracy-rose-with-eps (from {previous.robust_acc:.2%} at "
                f"{previous.eps_text})"]
    return []


def _record(target, cfg, key, eps, attacks, state, selection, notes, flags, device,
            seconds) -> Record:
    n = len(state.robust)
    clean_ok, robust_ok = int(state.clean_correct.sum()), int(state.robust.sum())
    names = [a.name for a in attacks]
    return Record(
        schema_version=SCHEMA_VERSION, robench_version=robench.__version__, key=key,
        created=_now(), model=target.source, dataset=target.info.name, norm=cfg.norm,
        eps=eps.value, eps_text=eps.text, attacks=names, selection=selection,
        clean_acc=clean_ok / n, robust_acc=robust_ok / n,
        robust_ci95=wilson_interval(robust_ok, n), clean_ci95=wilson_interval(clean_ok, n),
        per_attack=[AttackResult(**dataclasses.asdict(s)) for s in state.steps],
        flags=flags, notes=list(dict.fromkeys(notes)), seconds=round(seconds, 3),
        device=str(device), precision=cfg.precision, seed=cfg.seed,
        architecture=target.source.arch,
        autoattack_acc=robust_ok / n if "autoattack" in names else None,
    )


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
          seed: int = 0, device: str = "auto", precision: str = "fp32",
          quiet: bool = False) -> AttackOutcome:
    """Adversarial examples for the first N test points, saved to adv/<key>.safetensors."""
    from safetensors.torch import save_file

    from robench.attacks import perturbation_norms
    from robench.threat import parse_eps

    eps_ = parse_eps(eps) if eps is not None else default_eps(target.info.name, norm)
    attack = create_attack(name, norm=norm, eps=eps_.value, seed=seed, params=params)
    n_avail = len(target.test)
    if n_examples is not None and not 0 < n_examples <= n_avail:
        raise UserError(f"--n-examples {n_examples} must be between 1 and the {n_avail} test "
                        f"points of {target.info.name}.")
    runs.ensure_writable_dir(target.adv_dir)
    dev = resolve_device(device)
    idx, method = select_points(target.test, n_examples, seed)
    x, y = to_float(target.test.x[idx]), target.test.y[idx]
    model = target.model.to(dev)
    clean_pred = predict(model, Split(x, y), device=dev, batch_size=batch_size,
                         precision=precision)
    advs = []
    with Counter(quiet=quiet) as counter:
        task = counter.task(name, len(y))
        for s in range(0, len(y), batch_size):
            with autocast(dev, precision):
                advs.append(attack(model, x[s:s + batch_size].to(dev),
                                   y[s:s + batch_size].to(dev)).cpu())
            counter.advance(task, len(advs[-1]))
    x_adv = torch.cat(advs)
    adv_pred = predict(model, Split(x_adv, y), device=dev, batch_size=batch_size,
                       precision=precision)
    linf, l2 = perturbation_norms(x, x_adv)
    size = linf if norm == "Linf" else l2
    correct = clean_pred == y
    fooled = correct & (adv_pred != y)
    key = record_key([name], norm, eps_.slug, len(y),
                     {"attack": attack.describe(), "selection": method, "seed": seed,
                      "model": dataclasses.asdict(target.source), "precision": precision})
    path = target.adv_dir / f"{key}.safetensors"
    with atomic_path(path) as tmp:
        save_file({"x_adv": x_adv.contiguous(), "labels": y.contiguous(),
                   "indices": idx.contiguous(), "clean_pred": clean_pred.contiguous(),
                   "adv_pred": adv_pred.contiguous()}, tmp,
                  metadata={"attack": json.dumps(attack.describe()), "selection": method,
                            "dataset": target.info.name, "model": target.label})
    return AttackOutcome(
        path=path, attack=attack.describe(), n=len(y), clean_correct=int(correct.sum()),
        success_rate=(fooled.sum() / correct.sum()).item() if correct.any() else 0.0,
        linf_mean=linf.mean().item(), linf_max=linf.max().item(), l2_mean=l2.mean().item(),
        l2_max=l2.max().item(), in_ball=bool((size <= eps_.value + 1e-5).all()),
        in_range=bool(((x_adv >= 0) & (x_adv <= 1)).all()),
    )

