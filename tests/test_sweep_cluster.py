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


def test_the_slurm_launcher_without_sbatch_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on it
    grid = _grid(tmp_path, {}, ["standard"], [])
    result = CliRunner().invoke(app, ["sweep", str(grid), "--launcher", "slurm"])
    assert result.exit_code == 2 and "sbatch, which is not on PATH" in result.stderr
    assert not (tmp_path / "runs").exists()


FAKE_SBATCH = """#!/bin/sh
# Slurm's sbatch as far as submitit sees it: keep the script, answer with a job id.
cat "$1" >> "{log}"
echo "Submitted batch job 4242"
"""


def test_slurm_jobs_are_one_array_with_the_grid_files_resources(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.txt"
    for name, text in (("sbatch", FAKE_SBATCH.format(log=log)), ("srun", "#!/bin/sh\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    grid = _grid(tmp_path, {"optim": {"epochs": 1}}, ["standard", "gaussian", "fast-at"], [])
    data = yaml.safe_load(grid.read_text())
    data["slurm"] = {"partition": "gpu", "time": 90, "gpus": 2, "cpus": 8, "mem": "32G",
                     "account": "lab", "array_parallelism": 2}
    grid.write_text(yaml.safe_dump(data))
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(grid), "--launcher", "slurm", "--constraint",
                                 "a100"])
    assert result.exit_code == 0, result.output
    assert "submitted 3 job(s)" in result.stderr and "4242_0" in result.stderr
    script = log.read_text()
    for line in ("--partition=gpu", "--time=90", "--gpus-per-node=2", "--cpus-per-task=8",
                 "--mem=32G", "--account=lab", "--constraint=a100", "--array=0-2%2"):
        assert f"#SBATCH {line}" in script
    jobs = sweep.expand(sweep.load_sweep(grid))
    ids = [journal.read(tmp_path / "runs", j.name)["job_id"] for j in jobs]
    assert ids == ["4242_0", "4242_1", "4242_2"]
    status = runner.invoke(app, ["sweep", str(grid), "--status"])
    assert status.exit_code == 0 and "3 pending" in status.stdout
