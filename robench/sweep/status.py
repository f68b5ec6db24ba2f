"""`robench sweep --status`: where each run of a grid stands, from its run directory, the
sweep's journal (robench.sweep.journal) and, on Slurm, the scheduler's own view."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from robench import runs
from robench.sweep import journal
from robench.sweep.grid import Job

# Slurm's states after which a job no longer runs, though the journal may still say running.
ENDED = ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE")


@dataclass
class RunStatus:
    run: str
    state: str  # not started, pending, running, done, failed
    epochs: str  # e.g. "12/30"
    records: int  # result records in the run's evals folder
    job: str  # the scheduler's job id and state, if known
    detail: str  # an error, a log path


def _scheduler_state(entry: dict, out: str) -> str | None:
    if entry.get("launcher") != "slurm" or not entry.get("job_id"):
        return None
    try:
        import submitit

        folder = Path(out) / journal.FOLDER / "logs" / "%j"
        return submitit.SlurmJob(folder=folder, job_id=entry["job_id"]).state
    except Exception:  # no sacct here, or submitit absent: the journal alone
        return None


def status(jobs: Sequence[Job], out: str) -> list[RunStatus]:
    rows = []
    for job in jobs:
        entry = journal.read(out, job.name)
        env = runs.read_env(job.run_dir) if (job.run_dir / "env.json").is_file() else {}
        done_epochs = len(runs.read_metrics(job.run_dir)) if job.run_dir.is_dir() else 0
        total = env.get("summary", {}).get("epochs") or _epochs(job)
        records = len(list((job.run_dir / "evals").glob("*.json"))) \
            if (job.run_dir / "evals").is_dir() else 0
        state = entry.get("state")
        scheduler = _scheduler_state(entry, out)
        detail = entry.get("error") or env.get("error") or entry.get("stdout") or ""
        if state == "done":
            shown = "done"
        elif state == "failed" or env.get("status") == "failed":
            shown = "failed"
        elif scheduler in ENDED and state in ("running", "pending"):
            shown, detail = "failed", f"the scheduler says {scheduler}; {detail}"
        elif state in ("running",) or env.get("status") == "running":
            shown = "running"
        elif state in ("pending", "requeued") or env.get("status") == "interrupted":
            shown = "pending"
        elif env.get("status") == "complete" and records:
            shown = "done"
        else:
            shown = "not started"
        job_text = " ".join(x for x in (entry.get("job_id"), scheduler) if x) or "-"
        rows.append(RunStatus(run=job.name, state=shown, epochs=f"{done_epochs}/{total}",
                              records=records, job=job_text, detail=detail))
    return rows


def _epochs(job: Job) -> int | str:
    from robench.training.setup import resolve_config

    try:
        cfg, _ = resolve_config([job.layer])
        return cfg.optim.epochs
    except Exception:
        return "?"
