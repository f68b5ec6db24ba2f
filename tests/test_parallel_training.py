"""One run on two torchrun processes (gloo), and a run stopped by a scheduler's signal."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

# README, "When one machine is not enough": with --sync-bn, every weight of the 2-process run
# is within this fraction of its tensor's largest value of the 1-process run's.
SYNC_BN_TOLERANCE = 1e-4

BASE = ["--dataset", "digits", "--train-subset", "256", "--epochs", "1", "--device", "cpu",
        "--quiet", "--set", "validation.every=1", "--set", "validation.steps=2"]


# robench with one more arch registered: convolutions and ReLUs only. With neither BatchNorm
# (statistics of each process's rows) nor dropout (each process's own draws), a step of an
# objective that draws nothing is, on two processes, the step on one with the global batch,
# up to float rounding.
PLAIN_ARCH = """
import sys
from torch import nn
from robench.cli import main
from robench.models import StagedNet
from robench.registry import ARCHS

class Plain(StagedNet):
    stage_names = ("layer1", "layer2")

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(32, num_classes)

    def head(self, x):
        return self.fc(x.mean(dim=(2, 3)))

@ARCHS.register("plain-test", "convolutions and ReLUs only (a test's)", default_strides="1")
def plain(*, in_channels, num_classes, strides, width):
    return Plain(in_channels, num_classes)

sys.exit(main())
"""


def _robench(*args, nproc=1, timeout=600, driver=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    program = [str(driver)] if driver else ["-m", "robench"]
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(nproc), *program] if nproc > 1
              else [sys.executable, *program])
    return subprocess.run([*launch, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _run_dir(out):
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_two_processes_follow_one_process_with_the_same_global_batch(tmp_path):
    driver = tmp_path / "robench_plain.py"
    driver.write_text(PLAIN_ARCH)
    # The standard objective draws nothing: an objective that does (PGD-AT's random start)
    # draws in each process from that process's own generator, another sample.
    common = [*BASE, "--arch", "plain-test"]
    one = _robench("train", *common, "--batch-size", "64", "--out", tmp_path / "one",
                   driver=driver)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _robench("train", *common, "--batch-size", "32", "--out", tmp_path / "two",
                   nproc=2, driver=driver)
    assert two.returncode == 0, two.stderr[-2000:]
    run_one, run_two = _run_dir(tmp_path / "one"), _run_dir(tmp_path / "two")
    a, b = (load_file(str(r / "model.safetensors")) for r in (run_one, run_two))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    env = json.loads((run_two / "env.json").read_text())
    assert env["status"] == "complete"
    assert env["world"] == {"size": 2, "backend": "gloo", "batch_per_process": 32,
                            "global_batch": 64}
    assert "world_size: 2" in (run_two / "config.yaml").read_text()
    (m_one,), (m_two,) = ([json.loads(line) for line in (r / "metrics.jsonl").open()]
                          for r in (run_one, run_two))
    n_val = env["summary"]["n_val"]
    for key in ("val_acc", "val_robust_acc"):  # counts over the shared validation split
        assert abs(m_one[key] - m_two[key]) * n_val <= 1
    assert m_one["train_loss"] == pytest.approx(m_two["train_loss"], rel=1e-4)


@pytest.mark.parametrize("defense, extra", [
    ("gwi", ["--set", "gwi.start=0", "--set", "gwi.every=1"]),  # its second update
    ("advbn", []),  # two BatchNorms per layer, one of them unused in some passes
    ("pgd-at", ["--set", "pgd-at.steps=2"]),
])
def test_every_objective_trains_on_two_processes(tmp_path, defense, extra):
    done = _robench("train", *BASE, "--defense", defense, *extra, "--batch-size", "32",
                    "--train-subset", "512", "--epochs", "3", "--out", tmp_path, nproc=2)
    assert done.returncode == 0, done.stderr[-3000:]
    env = json.loads((_run_dir(tmp_path) / "env.json").read_text())
    assert env["status"] == "complete" and env["world"]["size"] == 2
    assert env["summary"]["final_train_acc"] > 0.3  # ten classes: it learns


def test_with_batchnorm_sync_bn_follows_one_process_and_per_process_statistics_do_not(
        tmp_path):
    common = [*BASE, "--arch", "cnn"]  # conv-BN-ReLU stages
    runs = {}
    for name, extra, nproc in (("one", ["--batch-size", "64"], 1),
                               ("sync", ["--batch-size", "32", "--sync-bn"], 2),
                               ("own", ["--batch-size", "32"], 2)):
        done = _robench("train", *common, *extra, "--out", tmp_path / name, nproc=nproc)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = load_file(str(_run_dir(tmp_path / name) / "model.safetensors"))

    def gap(a, b):  # the largest difference relative to the tensor's size
        return max(float((a[k] - b[k]).abs().max() / (a[k].abs().max() + 1e-12))
                   for k in a if a[k].is_floating_point())

    assert runs["one"].keys() == runs["sync"].keys()
    assert gap(runs["one"], runs["sync"]) < SYNC_BN_TOLERANCE
    assert gap(runs["one"], runs["own"]) > 10 * SYNC_BN_TOLERANCE


def test_sync_bn_in_one_process_is_refused_before_anything_is_written(tmp_path):
    alone = _robench("train", *BASE, "--sync-bn", "--out", tmp_path / "runs")
    assert alone.returncode == 2 and "start the run with torchrun" in alone.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_sigterm_checkpoints_mid_epoch_and_the_resumed_run_ends_with_the_same_weights(
        tmp_path):
    args = ["train", "--dataset", "digits", "--defense", "pgd-at", "--epochs", "3",
            "--device", "cpu", "--deterministic", "--quiet", "--set", "pgd-at.steps=3"]
    whole = _robench(*args, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "stopped"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "robench", *args, "--out", str(out)],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:  # stop it during the second epoch
        metrics = list(out.glob("*/metrics.jsonl"))
        if metrics and metrics[0].read_text().strip():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGTERM  # the signal's own end, after the checkpoint
    assert "stopped by SIGTERM" in stderr and "--resume" in stderr
    run = _run_dir(out)
    assert json.loads((run / "env.json").read_text())["status"] == "interrupted"
    state = torch.load(run / "state.pt", weights_only=False)
    assert state["epoch"] in (1, 2) and 0 < state["partial"]["step"]  # stopped mid-epoch
    resumed = _robench("train", "--resume", run, "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(str(_run_dir(tmp_path / "whole") / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_stopped_by_sigterm_resume_to_the_uninterrupted_weights(tmp_path):
    args = ["train", "--dataset", "digits", "--defense", "pgd-at", "--epochs", "3",
            "--batch-size", "64", "--device", "cpu", "--deterministic", "--quiet",
            "--set", "pgd-at.steps=3"]
    whole = _robench(*args, "--out", tmp_path / "whole", nproc=2)
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "stopped"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc-per-node", "2", "-m", "robench", *args, "--out",
                             str(out)], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        metrics = list(out.glob("*/metrics.jsonl"))
        if metrics and metrics[0].read_text().strip():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it to both processes
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0
    run = _run_dir(out)
    assert json.loads((run / "env.json").read_text())["status"] == "interrupted", stderr[-2000:]
    state = torch.load(run / "state.pt", weights_only=False)
    assert len(state["rng_ranks"]) == 2 and state["partial"]["step"] > 0
    alone = _robench("train", "--resume", run, "--quiet")
    assert alone.returncode == 2 and "started on 2 process(es)" in alone.stderr
    resumed = _robench("train", "--resume", run, "--quiet", nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(str(_run_dir(tmp_path / "whole") / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
