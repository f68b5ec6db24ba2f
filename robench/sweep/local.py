"""The local launcher: each job's commands as processes on this machine, `jobs` at a time.

It keeps no journal: `robench sweep --status` reads a local sweep's runs from their run
directories (the sweep itself waits for them and prints each as it ends).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from robench.sweep.grid import Job, JobResult, commands


@dataclass
class LocalLauncher:
    """Runs each job's commands as processes on this machine, `jobs` at a time."""

    jobs: int = 1
    out: str = "runs"
    log: Any = None  # callable(str) for progress lines

    def run(self, jobs: Sequence[Job]) -> list[JobResult]:
        with ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            return list(pool.map(self._run_one, jobs))

    def _run_one(self, job: Job) -> JobResult:
        with tempfile.TemporaryDirectory() as tmp:
            config_file = Path(tmp) / "config.yaml"
            config_file.write_text(yaml.safe_dump(job.layer))
            for cmd in commands(job, config_file, self.out):
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    reason = (proc.stderr.strip().splitlines() or ["exit code "
                                                                   f"{proc.returncode}"])[-1]
                    if self.log:
                        self.log(f"failed: {job.name}: {reason}")
                    return JobResult(job, ok=False, message=reason)
        if self.log:
            self.log(f"done: {job.name}")
        return JobResult(job, ok=True)
