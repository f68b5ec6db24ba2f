"""Sweeps on a cluster: one job per run through submitit, requeued when preempted.

`slurm` submits a job array to Slurm (resources from the grid file's `slurm:` section or
flags, at most `array_parallelism` running at once); `submitit-local` runs the same jobs as
submitit's local processes on this machine (for a workstation, and for tests). Each job runs
the run's commands (robench.sweep.grid.commands) as a child process. When the scheduler
sends its signal (SIGTERM before a preemption or the time limit, or submitit's SIGUSR2), the
job passes SIGTERM to the child, which checkpoints at a step boundary and marks the run
interrupted (robench.preemption); the job then asks submitit to requeue it, and the requeued
job continues the run from that checkpoint (`robench train --resume`, `eval --resume`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from robench.errors import UserError
from robench.preemption import StopRequests
from robench.sweep import journal
from robench.sweep.grid import Job, JobResult, SlurmSpec, commands

KINDS = ("slurm", "submitit-local")


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UserError("the slurm launchers need submitit: pip install 'robench[slurm]' "
                        "(or pip install submitit).") from None
    return submitit


class SweepJob:
    """What one submitit job runs: a run's commands, continued after a requeue."""

    def __init__(self, job: Job, out: str):
        self.job, self.out = job, out

    def __call__(self) -> str:
        job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")
        journal.mark(self.out, self.job.name, "running", job_id=job_id)
        with tempfile.TemporaryDirectory() as tmp:
            config_file = Path(tmp) / "config.yaml"
            config_file.write_text(yaml.safe_dump(self.job.layer))
            for cmd in commands(self.job, config_file, self.out):
                code, signum = _run_child(cmd)
                if signum is not None:
                    journal.mark(self.out, self.job.name, "requeued",
                                 signal=signal.Signals(signum).name)
                    _requeue()
                if code != 0:
                    journal.mark(self.out, self.job.name, "failed",
                                 error=f"{' '.join(cmd[2:4])} exited with code {code}")
                    raise RuntimeError(f"{' '.join(cmd)} exited with code {code}")
        journal.mark(self.out, self.job.name, "done")
        return "done"

    def checkpoint(self) -> Any:
        """submitit's hook on preemption or timeout: the same job again (it continues)."""
        return _submitit().helpers.DelayedSubmission(self)


def _run_child(cmd: list[str]) -> tuple[int, int | None]:
    """(exit code, the signal that asked to stop or None), passing a stop signal on."""
    with StopRequests() as stop:
        child = subprocess.Popen(cmd)
        passed = False
        while child.poll() is None:
            if stop.requested and not passed:
                child.send_signal(signal.SIGTERM)  # it checkpoints and ends
                passed = True
            time.sleep(0.2)
    return child.returncode, stop.signum


def _requeue() -> None:
    """Hand over to submitit's requeue: its own signal, which checkpoints (SweepJob.checkpoint),
    requeues and ends this process."""
    os.kill(os.getpid(), _submitit().JobEnvironment._usr_sig())
    time.sleep(60)  # the handler ends the process; this is never reached in a real job
    raise RuntimeError("submitit did not requeue the job")


@dataclass
class SubmititLauncher:
    """Submits each job through submitit; `wait` blocks until all have ended."""

    kind: str
    out: str
    slurm: SlurmSpec
    wait: bool = False
    log: Any = None

    def executor(self):
        submitit = _submitit()
        folder = Path(self.out) / journal.FOLDER / "logs" / "%j"
        s = self.slurm
        if self.kind == "submitit-local":
            executor = submitit.LocalExecutor(folder=folder)
            executor.update_parameters(timeout_min=s.time, gpus_per_node=s.gpus,
                                       cpus_per_task=s.cpus)
            return executor
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params: dict[str, Any] = dict(timeout_min=s.time, gpus_per_node=s.gpus,
                                      cpus_per_task=s.cpus, tasks_per_node=1, nodes=1,
                                      slurm_array_parallelism=s.array_parallelism)
        for key, value in (("slurm_partition", s.partition), ("slurm_mem", s.mem),
                           ("slurm_account", s.account), ("slurm_constraint", s.constraint)):
            if value is not None:
                params[key] = value
        executor.update_parameters(**params)
        return executor

    def run(self, jobs: Sequence[Job]) -> list[JobResult]:
        if self.kind == "slurm" and shutil.which("sbatch") is None:
            raise UserError("--launcher slurm submits with Slurm's sbatch, which is not on PATH "
                            "here; run the sweep on a Slurm login node, or use --launcher "
                            "local (or submitit-local).")
        executor = self.executor()
        with executor.batch():  # one array on Slurm
            submitted = [executor.submit(SweepJob(job, self.out)) for job in jobs]
        for job, sub in zip(jobs, submitted, strict=True):
            journal.mark(self.out, job.name, "pending", launcher=self.kind,
                         job_id=str(sub.job_id), stdout=str(sub.paths.stdout),
                         stderr=str(sub.paths.stderr))
            if self.log:
                self.log(f"submitted: {job.name}: job {sub.job_id}, logs {sub.paths.stdout}")
        if not self.wait:
            return [JobResult(job, ok=True, message="submitted") for job in jobs]
        results = []
        for job, sub in zip(jobs, submitted, strict=True):
            try:
                sub.result()
                results.append(JobResult(job, ok=True))
                if self.log:
                    self.log(f"done: {job.name}")
            except Exception as exc:  # submitit re-raises the job's failure
                reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
                results.append(JobResult(job, ok=False, message=reason))
        return results
