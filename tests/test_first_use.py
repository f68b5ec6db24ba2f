"""What a user meets first: which epoch best.safetensors keeps, per defense; TensorBoard
events of a run; shell completion; the command to run next."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from robench import api, runs
from robench.cli import app
from robench.registry import load_all

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

ADVERSARIAL = ("pgd-at", "fast-at", "trades", "local-balls", "rcm+pgd-at", "kap+pgd-at")
NO_ADVERSARY = ("standard", "gaussian", "kap", "gwi", "advbn", "rcm")


def resolved(defense, **validation):
    load_all()
    layer = {"data": {"dataset": "digits"}, "defense": defense, "runtime": {"device": "cpu"}}
    if validation:
        layer["validation"] = validation
    return api.resolve_config([layer])[0]


@pytest.mark.parametrize("defense", ADVERSARIAL)
def test_a_defense_that_trains_on_adversaries_keeps_the_best_pgd_epoch(defense):
    assert resolved(defense).validation.select == "robust"


@pytest.mark.parametrize("defense", NO_ADVERSARY)
def test_a_defense_that_trains_no_adversary_keeps_the_best_clean_epoch(defense):
    assert resolved(defense).validation.select == "clean"


@pytest.mark.parametrize("defense, select", [("standard", "robust"), ("pgd-at", "clean")])
def test_validation_select_given_by_the_user_wins(defense, select):
    assert resolved(defense, select=select).validation.select == select


def test_the_pgd_at_run_id_is_unchanged_by_the_new_default():
    """The default for adversarial defenses is what it always was, so their ids stay."""
    cfg = resolved("pgd-at")
    cfg.model.arch, cfg.optim.epochs = "cnn", 30
    again = api.resolve_config([{"data": {"dataset": "digits"}, "model": {"arch": "cnn"},
                                 "optim": {"epochs": 30}, "defense": "pgd-at",
                                 "validation": {"select": "robust"},
                                 "runtime": {"device": "cpu"}}])[0]
    assert runs.run_id_of(cfg) == runs.run_id_of(again)


@pytest.fixture(scope="module")
def standard_run(tmp_path_factory):
    cfg, _ = api.resolve_config([{"data": {"dataset": "digits", "train_subset": 256},
                                  "optim": {"epochs": 4, "batch_size": 64},
                                  "runtime": {"device": "cpu"}}])
    return api.train(cfg, out=tmp_path_factory.mktemp("runs"), quiet=True,
                     tensorboard=True).run_dir


def test_standard_training_keeps_the_first_epoch_of_highest_clean_validation_accuracy(
        standard_run):
    rows = runs.read_metrics(standard_run)
    val = [r["val_acc"] for r in rows]
    want = rows[val.index(max(val))]["epoch"]
    summary = runs.read_env(standard_run)["summary"]
    assert summary["best"]["epoch"] == want
    from safetensors import safe_open

    with safe_open(str(standard_run / runs.BEST), "pt") as f:
        assert f.metadata()["epoch"] == str(want)


def scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_hold_each_epoch_of_metrics_jsonl(standard_run):
    rows = runs.read_metrics(standard_run)
    events = scalars(standard_run)
    for tag, key in (("train/loss", "train_loss"), ("val/clean_accuracy", "val_acc"),
                     ("val/pgd_accuracy", "val_robust_acc"), ("optim/lr", "lr")):
        assert events[tag] == [(r["epoch"], float(np.float32(r[key]))) for r in rows], tag


def test_tensorboard_on_a_complete_run_writes_its_events_once_from_metrics(
        standard_run, tmp_path):
    import shutil

    copy = tmp_path / standard_run.name
    shutil.copytree(standard_run, copy, ignore=shutil.ignore_patterns("tensorboard"))
    cfg, _ = api.resolve_config([json.loads(json.dumps(
        __import__("yaml").safe_load((copy / runs.CONFIG).read_text())))])
    result = api.train(cfg, out=tmp_path, quiet=True, tensorboard=True)
    assert result.reused
    steps = [step for step, _ in scalars(copy)["val/clean_accuracy"]]
    assert steps == [r["epoch"] for r in runs.read_metrics(copy)]


def test_tensorboard_missing_is_one_sentence_before_anything_is_written(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    result = runner.invoke(app, ["train", "--tensorboard", "--out", str(tmp_path / "o"),
                                 "--epochs", "1", "--quiet"])
    assert result.exit_code == 2, result.output
    assert "pip install 'robench[tensorboard]'" in result.stderr
    assert not (tmp_path / "o").exists()


def test_shell_completion_is_on_and_completes_commands_and_options():
    script = runner.invoke(app, ["--show-completion", "bash"])
    assert script.exit_code == 0 and "_ROBENCH_COMPLETE" in script.stdout
    done = runner.invoke(app, [], env={"_ROBENCH_COMPLETE": "complete_bash",
                                       "COMP_WORDS": "robench train --defe", "COMP_CWORD": "2"},
                         prog_name="robench")
    assert done.stdout.split() == ["--defense"]


def test_train_and_eval_print_the_command_to_run_next(standard_run, monkeypatch):
    monkeypatch.chdir(standard_run.parent)
    trained = runner.invoke(app, ["train", "--train-subset", "256", "--epochs", "4",
                                  "--batch-size", "64", "--device", "cpu", "--out", ".",
                                  "--quiet"])
    assert trained.exit_code == 0, trained.output
    assert f"next: robench eval {standard_run.name}" in trained.stderr
    evaluated = runner.invoke(app, ["eval", standard_run.name, "-A", "fgsm", "-n", "10",
                                    "--quiet"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "next: robench report ." in evaluated.stderr
