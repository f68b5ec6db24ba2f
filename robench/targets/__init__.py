"""What an evaluation is run on: a robench run, or a user's own model and a dataset.

Each ModelSource carries the hash of the parameters and buffers loaded (`state_sha256`), so
every record key built from it (Lp and corruption evaluations alike) changes with the model;
the Lp evaluation hashes the state again when it keys and writes a record
(robench.evaluation.identity), so what it stores is what it evaluated.

Either way the result is the same bundle, a robench.evaluation.target.Target (a model taking
[0, 1] images, the test split, and where its records go), so `attack` and `eval` need not know
where a model came from. `external` loads a user's model file and weights, `zoo` a model of
RobustBench's zoo.
"""

from __future__ import annotations

from pathlib import Path

from robench import runs
from robench.data import load_dataset, to_float
from robench.errors import UserError
from robench.evaluation.identity import state_digest
from robench.evaluation.target import Target
from robench.records import EVALS, ModelSource
from robench.targets.external import check_output_shape, load_external_model, sha256
from robench.targets.zoo import PREFIX as ZOO_PREFIX
from robench.targets.zoo import is_zoo_spec, load_zoo_model
from robench.training.setup import rebuild_run

__all__ = ["CHECKPOINTS", "ZOO_PREFIX", "Target", "from_external", "from_run", "from_zoo",
           "is_zoo_spec"]

CHECKPOINTS = {"final": runs.MODEL, "best": runs.BEST}


def from_run(run_dir: str | Path, checkpoint: str = "final") -> Target:
    run_dir = runs.require_run(Path(run_dir))
    if checkpoint not in CHECKPOINTS:
        raise UserError(f"checkpoint {checkpoint!r} is not one of {', '.join(CHECKPOINTS)}.")
    weights = run_dir / CHECKPOINTS[checkpoint]
    model, cfg, splits = rebuild_run(run_dir, weights.name)
    source = ModelSource(kind="run", run_id=run_dir.name, checkpoint=weights.name,
                         weights_sha256=sha256(weights), arch=cfg.model.arch,
                         defense=cfg.defense, state_sha256=state_digest(model))
    return Target(model=model, info=splits.info, test=splits.test, source=source,
                  evals_dir=run_dir / EVALS, label=run_dir.name, data_dir=cfg.data.data_dir)


def from_external(spec: str, *, weights: str | Path | None, dataset: str,
                  data_dir: str | None = None, image_size: int | None = None,
                  mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                  out: str | Path | None = None, name: str | None = None) -> Target:
    splits = load_dataset(dataset, data_dir=data_dir, image_size=image_size)
    ext = load_external_model(spec, weights=weights, mean=mean, std=std, name=name)
    check_output_shape(ext.model, to_float(splits.test.x[:2]), splits.info.num_classes, spec)
    source = ModelSource(kind="external", file=ext.file, factory=ext.factory,
                         checkpoint=ext.weights, weights_sha256=ext.weights_sha256,
                         arch=ext.name, defense="external", file_sha256=ext.source_sha256,
                         state_sha256=state_digest(ext.model))
    label = f"external-{ext.name}"
    evals_dir = Path(out) if out is not None else Path("runs") / label / EVALS
    return Target(model=ext.model, info=splits.info, test=splits.test, source=source,
                  evals_dir=evals_dir, label=label, data_dir=data_dir)


def from_zoo(spec: str, *, dataset: str, threat: str = "Linf", zoo_dataset: str | None = None,
             weights: str | Path | None = None, model_dir: str | Path | None = None,
             download: bool = False, model_info: str | Path | None = None,
             data_dir: str | None = None, image_size: int | None = None,
             out: str | Path | None = None) -> Target:
    """A RobustBench zoo model on `dataset` (cifar10, cifar100, or an image folder with
    `zoo_dataset` naming the zoo's dataset); records go to runs/robustbench-<...>/evals."""
    zoo_dataset = zoo_dataset or dataset
    zoo = load_zoo_model(spec, dataset=zoo_dataset, threat=threat, weights=weights,
                         model_dir=model_dir, download_missing=download, model_info=model_info)
    splits = load_dataset(dataset, data_dir=data_dir, image_size=image_size)
    check_output_shape(zoo.model, to_float(splits.test.x[:2]), splits.info.num_classes, spec)
    source = ModelSource(kind="zoo", zoo="robustbench", zoo_dataset=zoo.dataset,
                         zoo_threat=zoo.threat, checkpoint=zoo.checkpoint,
                         weights_sha256=zoo.weights_sha256, arch=zoo.name,
                         defense="robustbench", state_sha256=state_digest(zoo.model))
    label = f"robustbench-{zoo.dataset}-{zoo.threat}-{zoo.name}"
    evals_dir = Path(out) if out is not None else Path("runs") / label / EVALS
    return Target(model=zoo.model, info=splits.info, test=splits.test, source=source,
                  evals_dir=evals_dir, label=label, data_dir=data_dir, published=zoo.published)
