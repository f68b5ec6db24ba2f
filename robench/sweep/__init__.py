"""Sweeps: a grid of runs, trained and evaluated by a launcher, then reported.

grid (the file, its runs and their commands) -> journal (where each job stands) -> local
and cluster (the launchers: processes here, or submitit jobs on Slurm) -> status.
"""

from robench.errors import UserError
from robench.sweep.cluster import KINDS, SubmititLauncher, SweepJob
from robench.sweep.grid import (
    SHORTHANDS,
    EvalSpec,
    Job,
    JobResult,
    Launcher,
    ReportSpec,
    SlurmSpec,
    SweepConfig,
    commands,
    describe,
    expand,
    load_sweep,
)
from robench.sweep.local import LocalLauncher
from robench.sweep.status import RunStatus, status

LAUNCHERS = ("local", *KINDS)


def make_launcher(name: str, *, jobs: int, out: str, log=None, slurm: SlurmSpec | None = None,
                  wait: bool = False) -> Launcher:
    if name not in LAUNCHERS:
        raise UserError(f"launcher {name!r} is not available; known launchers: "
                        f"{', '.join(LAUNCHERS)}.")
    if jobs < 1:
        raise UserError(f"--jobs must be a positive integer, got {jobs}.")
    if name == "local":
        return LocalLauncher(jobs=jobs, out=out, log=log)
    return SubmititLauncher(kind=name, out=out, slurm=slurm or SlurmSpec(), wait=wait, log=log)


__all__ = ["LAUNCHERS", "SHORTHANDS", "EvalSpec", "Job", "JobResult", "Launcher",
           "LocalLauncher", "ReportSpec", "RunStatus", "SlurmSpec", "SubmititLauncher",
           "SweepConfig", "SweepJob", "commands", "describe", "expand", "load_sweep",
           "make_launcher", "status"]
