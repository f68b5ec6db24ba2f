"""Sweeps through submitit (its local executor standing in for Slurm): runs, status, requeue."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from robench import sweep
from robench.cli import app
from robench.sweep import journal

pytestmark = pytest.mark.slow


def _grid(tmp_path, train, defenses, evals):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({
        "out": str(tmp_path / "runs"), "train": train, "grid": {"defense": defenses},
        "evals": evals, "slurm": {"time": 20, "cpus": 1},
    }))
    return path


def _wait_for(condition, seconds=300):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_two_run_grid_runs_to_completion_and_status_says_so(tmp_path):
    grid = _grid(tmp_path, {"data": {"train_subset": 128}, "optim": {"epochs": 1},
                            "validation": {"steps": 2}, "runtime": {"device": "cpu"}},
                 ["standard", "gaussian"], [{"attacks": ["fgsm"], "eps": ["0.2"],
                                             "n_examples": 20}])
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(grid), "--launcher", "submitit-local", "--wait",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    jobs = sweep.expand(sweep.load_sweep(grid))
    assert [journal.read(tmp_path / "runs", j.name)["state"] for j in jobs] == ["done"] * 2
    for job in jobs:
        assert len(list((job.run_dir / "evals").glob("fgsm-*.json"))) == 1
    status = runner.invoke(app, ["sweep", str(grid), "--status"])
    assert status.exit_code == 0, status.output
    assert "2 done" in status.stdout


def test_slurm_flags_with_the_local_launcher_are_refused(tmp_path):
    grid = _grid(tmp_path, {}, ["standard"], [])
    result = CliRunner().invoke(app, ["sweep", str(grid), "--partition", "gpu"])
    assert result.exit_code == 2 and "--launcher slurm" in result.stderr


def test_a_job_sent_sigterm_is_requeued_and_ends_with_the_uninterrupted_weights(
        tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same threads, so the same float sums
    train = {"optim": {"epochs": 3}, "defenses": {"pgd-at": {"steps": 3}},
             "runtime": {"device": "cpu", "deterministic": True}}
    grid = _grid(tmp_path, train, ["pgd-at"], [])
    (job,) = sweep.expand(sweep.load_sweep(grid))
    reference = tmp_path / "reference"
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(job.layer))
    done = subprocess.run([sys.executable, "-m", "robench", "train", "--config", str(config),
                           "--out", str(reference), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    out = tmp_path / "runs"
    launcher = sweep.make_launcher("submitit-local", jobs=1, out=str(out),
                                   slurm=sweep.SlurmSpec(time=20, cpus=1))
    launcher.run([job])
    controller = int(journal.read(out, job.name)["job_id"])
    metrics = job.run_dir / "metrics.jsonl"
    assert _wait_for(lambda: metrics.is_file() and metrics.read_text().strip())
    os.kill(controller, signal.SIGTERM)  # submitit's controller passes it to the job
    assert _wait_for(lambda: journal.read(out, job.name).get("state") in ("done", "failed"))
    entry = journal.read(out, job.name)
    assert entry["state"] == "done", entry
    env = json.loads((job.run_dir / "env.json").read_text())
    assert env["status"] == "complete" and len(env["resumed"]) == 1  # it was requeued
    a = load_file(str(reference / job.name / "model.safetensors"))
    b = load_file(str(job.run_dir / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
