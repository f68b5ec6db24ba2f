"""Sweeps: a grid of runs, trained and evaluated by a launcher, then reported.

A grid file names a base training config, the axes to vary, the evaluations every run gets,
and where the report goes:

```yaml
out: runs/leaderboard            # run directories
train: {optim: {epochs: 30}}     # a config layer under every run
grid:                            # the cartesian product of these axes
  dataset: [digits]              # shorthands: dataset, arch, defense, seed; or dotted keys
  defense: [standard, pgd-at]
  seed: [0, 1]
evals:                           # each run gets every evaluation, in order
  - {attacks: [pgd], params: {pgd: {steps: 20}}, eps: ["0.2"]}
  - {attacks: [autoattack], eps: ["0.2"]}
report: {out: leaderboard, formats: [md, csv, png]}
```

Every job is the same two commands a user would type (`robench train --config ...`, then
`robench eval ...`), so a sweep can be resumed by running it again: complete runs are skipped
(train reuses them) and recorded evaluations are not repeated (eval reuses them). Launchers
decide where the commands run (robench.sweep.local, robench.sweep.cluster).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from robench import runs
from robench.config import build, load_yaml, set_dotted
from robench.errors import UserError
from robench.training.setup import resolve_config

SHORTHANDS = {"dataset": "data.dataset", "arch": "model.arch", "defense": "defense",
              "seed": "runtime.seed"}


@dataclass
class EvalSpec:
    attacks: list[str] = field(default_factory=lambda: ["autoattack"])
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    eps: list[str] = field(default_factory=list)
    norm: str = "Linf"
    n_examples: int | None = None
    checkpoint: str = "final"


@dataclass
class ReportSpec:
    out: str | None = None
    formats: list[str] = field(default_factory=lambda: ["md", "csv"])


@dataclass
class SlurmSpec:
    """What each job asks the scheduler for (`slurm:` in the grid file; flags override)."""

    partition: str | None = None
    time: int = 240  # minutes
    gpus: int = 0  # per job
    cpus: int = 4  # per job
    mem: str | None = None  # e.g. 32G
    account: str | None = None
    constraint: str | None = None
    array_parallelism: int = 64  # jobs of the array running at once


@dataclass
class SweepConfig:
    out: str = "runs"
    train: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    evals: list[EvalSpec] = field(default_factory=list)
    report: ReportSpec = field(default_factory=ReportSpec)
    slurm: SlurmSpec = field(default_factory=SlurmSpec)


@dataclass
class Job:
    """One run of the grid: its config layer, its run directory, and what to evaluate."""

    name: str
    layer: dict[str, Any]
    run_dir: Path
    evals: list[EvalSpec]


@dataclass
class JobResult:
    job: Job
    ok: bool
    message: str = ""


class Launcher(Protocol):
    def run(self, jobs: Sequence[Job]) -> list[JobResult]: ...


def load_sweep(path: str | Path) -> SweepConfig:
    data = load_yaml(path)
    for spec in data.get("evals") or []:  # eps may be written as 0.2 or "8/255"
        if isinstance(spec, dict) and isinstance(spec.get("eps"), list):
            spec["eps"] = [str(e) for e in spec["eps"]]
    cfg = build(SweepConfig, data)
    for axis, values in cfg.grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"sweep axis {axis!r} needs a non-empty list of values.")
    return cfg


def expand(cfg: SweepConfig) -> list[Job]:
    """Every combination of the grid's axes as a job (validated now, before anything runs)."""
    axes = list(cfg.grid.items())
    jobs: list[Job] = []
    seen: set[str] = set()
    for values in itertools.product(*[v for _, v in axes]) if axes else [()]:
        layer = _deep_copy(cfg.train)
        for (axis, _), value in zip(axes, values, strict=True):
            set_dotted(layer, SHORTHANDS.get(axis, axis), value)
        resolved, _ = resolve_config([layer])
        rid = runs.run_id_of(resolved)
        if rid not in seen:
            seen.add(rid)
            jobs.append(Job(name=rid, layer=layer, run_dir=Path(cfg.out) / rid,
                            evals=cfg.evals))
    return jobs


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(yaml.safe_dump(d))


def commands(job: Job, config_file: Path, out: str) -> list[list[str]]:
    """The robench commands of a job: train, then each evaluation."""
    robench = [sys.executable, "-m", "robench"]
    if job.run_dir.is_dir() and not runs.is_complete(job.run_dir):  # interrupted: continue it
        cmds = [[*robench, "train", "--resume", str(job.run_dir), "--quiet"]]
    else:
        cmds = [[*robench, "train", "--config", str(config_file), "--out", out, "--quiet"]]
    for spec in job.evals:
        cmd = [*robench, "eval", str(job.run_dir), "--norm", spec.norm, "--quiet",
               "--checkpoint", spec.checkpoint]
        if "corruptions" not in spec.attacks:
            cmd.append("--resume")  # an interrupted evaluation continues from its state
        for attack in spec.attacks:
            cmd += ["--attack", attack]
        for eps in spec.eps:
            cmd += ["--eps", str(eps)]
        if spec.n_examples is not None:
            cmd += ["--n-examples", str(spec.n_examples)]
        for attack, params in spec.params.items():
            for key, value in params.items():
                cmd += ["--set", f"{attack}.{key}={json.dumps(value)}"]  # JSON is YAML
        cmds.append(cmd)
    return cmds


def describe(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    return [{"run": j.name, "dir": str(j.run_dir),
             "evals": [dataclasses.asdict(e) for e in j.evals]} for j in jobs]
