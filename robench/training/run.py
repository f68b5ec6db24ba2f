"""Starting, resuming and finishing a training run: the run directory's life cycle.

A run directory is created only once its config resolved and its dataset and model were
built; env.json says at every moment whether the run is running, interrupted, failed or
complete, and an interrupted run continues with `robench train --resume`.

Under torchrun every process builds the same parts and trains its rows of each batch
(robench.training.parallel); process 0 alone creates and writes the run directory, and a run
resumes only with the number of processes it started with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robench import config as config_mod
from robench import distributed, runs
from robench.config import TrainConfig
from robench.cost import measure, reset_peak
from robench.distributed import World
from robench.errors import Interrupted, Preempted, UserError
from robench.evaluation import accuracy
from robench.progress import EpochReporter
from robench.records import timestamp
from robench.runtime import is_out_of_memory, resolve_device, smaller_batch, warn_if_slow
from robench.training.engine import EpochCallback, fit
from robench.training.environment import environment
from robench.training.parallel import check_parallel
from robench.training.setup import build_parts, resolve_config
from robench.training.tensorboard import TensorBoardScalars, require_tensorboard


@dataclass
class TrainResult:
    run_dir: Path
    run_id: str
    config: TrainConfig
    summary: dict[str, Any]
    reused: bool = False  # True when an identical complete run already existed


def _world(cfg_world_size: int) -> World:
    """This process's place; a world size set by hand without torchrun is refused."""
    world = distributed.current()
    if cfg_world_size not in (1, world.size):
        raise UserError(f"runtime.world_size {cfg_world_size} is the number of processes "
                        f"torchrun starts, not a setting; launch with torchrun "
                        f"--nproc-per-node {cfg_world_size} instead.")
    return world


def train(cfg: TrainConfig, *, out: str | Path = "runs", quiet: bool = False,
          callbacks: Sequence[EpochCallback] = (), tensorboard: bool = False) -> TrainResult:
    """Train a new run of `cfg` under `out` and return where it is and how it did.

    `tensorboard` also writes each epoch's metrics as TensorBoard events in the run directory
    (robench.training.tensorboard); for a run already complete, from its metrics.jsonl."""
    if tensorboard:
        require_tensorboard()
    world = _world(cfg.runtime.world_size)
    cfg.runtime.world_size = world.size
    cfg, defense = resolve_config([cfg.to_dict()])
    rid = runs.run_id_of(cfg)
    run_dir = Path(out) / rid
    if run_dir.exists():
        if runs.is_complete(run_dir):
            if tensorboard and distributed.current().main:
                _events_from_metrics(run_dir)
            return TrainResult(run_dir=run_dir, run_id=rid, config=cfg,
                               summary=runs.read_env(run_dir)["summary"], reused=True)
        raise UserError(f"run {str(run_dir)!r} with this config exists but did not finish; "
                        f"continue it with: robench train --resume {run_dir}")
    runs.ensure_writable_dir(Path(out))
    device = resolve_device(cfg.runtime.device)
    warn_if_slow(device, cfg.runtime.precision)
    check_parallel(cfg.runtime.sync_bn, world, device, defense.objective)
    splits, model = build_parts(cfg, defense, init=True)
    distributed.barrier()  # every process has checked before process 0 creates anything
    env = {**environment(device), "status": "running", "started": timestamp(),
           "data": splits.description, **_world_fields(cfg, world)}
    if world.main:
        try:
            run_dir.mkdir(parents=True)
        except OSError as exc:
            raise UserError(f"cannot create run directory {str(run_dir)!r} "
                            f"({exc.strerror or exc}); pass --out with a writable "
                            f"directory.") from None
        config_mod.dump_yaml(cfg, run_dir / runs.CONFIG)
        runs.write_env(run_dir, env)
    distributed.barrier()
    return _run(cfg, defense, splits, model, run_dir, env, device, quiet, callbacks, world,
                tensorboard)


def _events_from_metrics(run_dir: Path) -> None:
    """TensorBoard events of a finished run, written from its metrics.jsonl."""
    writer = TensorBoardScalars(run_dir)
    try:
        writer.write_all(runs.read_metrics(run_dir))
    finally:
        writer.close()


def _world_fields(cfg: TrainConfig, world: World) -> dict[str, Any]:
    """env.json's account of the processes (only for a run on several)."""
    if not world.distributed:
        return {}
    b = cfg.optim.batch_size
    return {"world": {"size": world.size, "backend": distributed.backend_name(),
                      "batch_per_process": b, "global_batch": b * world.size}}


def resume(run_dir: str | Path, layers: Sequence[dict[str, Any]] = (), *, quiet: bool = False,
           callbacks: Sequence[EpochCallback] = (), tensorboard: bool = False) -> TrainResult:
    """Continue an interrupted run from its last finished epoch.

    `layers` are the overrides a user gave with `--resume` (flags, `--set`, `--config`); a run
    continues only with the config it started with, so any value that differs is refused.
    """
    if tensorboard:
        require_tensorboard()
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
    world = distributed.current()
    if cfg.runtime.world_size != world.size:
        raise UserError(f"run {str(run_dir)!r} was started on {cfg.runtime.world_size} "
                        f"process(es) and this is {world.size}; resume it with torchrun "
                        f"--nproc-per-node {cfg.runtime.world_size} (the data of each step "
                        f"depends on it)." if cfg.runtime.world_size > 1 else
                        f"run {str(run_dir)!r} was started in one process; resume it "
                        f"without torchrun.")
    device = resolve_device(cfg.runtime.device)
    warn_if_slow(device, cfg.runtime.precision)
    splits, model = build_parts(cfg, defense)
    env = runs.read_env(run_dir)
    env.update(status="running")
    env.setdefault("resumed", []).append(timestamp())
    distributed.barrier()  # every process has read the run before process 0 writes
    if world.main:
        runs.write_env(run_dir, env)
    return _run(cfg, defense, splits, model, run_dir, env, device, quiet, callbacks, world,
                tensorboard)


def _run(cfg, defense, splits, model, run_dir, env, device, quiet, callbacks,
         world: World, tensorboard: bool = False) -> TrainResult:
    reporter = EpochReporter(cfg.optim.epochs, quiet=quiet or not world.main)
    reset_peak(device)
    events = None
    if tensorboard and world.main:  # the epochs done before a resume, then each new one
        events = TensorBoardScalars(run_dir)
        events.write_all(runs.read_metrics(run_dir))
        callbacks = [*callbacks, events]

    def write_env(**fields: Any) -> None:
        env.update(**fields)
        if world.main:
            runs.write_env(run_dir, env)

    try:
        with reporter:
            result = fit(model, defense, splits, cfg, run_dir, device=device, reporter=reporter,
                         callbacks=callbacks, world=world)
        r = cfg.runtime
        test_acc = accuracy(model, splits.test, device=device, batch_size=r.eval_batch_size,
                            channels_last=r.channels_last)
        cost = measure(device, result.wall_seconds, result.images)
        peaks = distributed.gather(cost.peak_memory_bytes)  # the largest process's
        cost.peak_memory_bytes = max(peaks)
        summary = {
            "epochs": result.epochs,
            "train_seconds": round(result.train_seconds, 3),
            "cost": dataclasses.asdict(cost),
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
        if world.main:
            runs.save_weights(model, run_dir / runs.MODEL,
                              metadata={"run_id": run_dir.name, "arch": cfg.model.arch,
                                        "config_hash": cfg.hash()})
    except Preempted:  # a scheduler's signal: checkpointed at a step boundary
        write_env(status="interrupted", interrupted=timestamp())
        raise
    except KeyboardInterrupt:
        write_env(status="interrupted", interrupted=timestamp())
        done = runs.read_metrics(run_dir)
        after = f"after epoch {done[-1]['epoch']}" if done else "before the first epoch ended"
        raise Interrupted(f"training interrupted {after}; continue it with: "
                          f"robench train --resume {run_dir}") from None
    except BaseException as exc:
        write_env(status="failed", failed=timestamp(), error=f"{type(exc).__name__}: {exc}")
        if is_out_of_memory(exc):
            b = cfg.optim.batch_size
            raise UserError(f"out of memory on {device} at --batch-size {b}; train with "
                            f"--batch-size {smaller_batch(b)} (a new run: the batch size is "
                            f"part of its config; run {run_dir.name} stays, marked failed)."
                            ) from None
        raise
    finally:
        if events is not None:
            events.close()
    write_env(status="complete", ended=timestamp(), summary=summary)
    distributed.barrier()  # the run is complete on disk before any process returns
    return TrainResult(run_dir=run_dir, run_id=run_dir.name, config=cfg, summary=summary)
