"""Training end to end on digits: the run directory, resume, and what is learnt."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from robench import api, runs
from robench.cli import app
from robench.config import resolve


def train(layers, out, **kwargs):
    cfg, _ = api.resolve_config(layers)
    return api.train(cfg, out=out, quiet=True, **kwargs)


def test_a_run_directory_holds_everything_design_md_lists(tmp_path, tiny_layers):
    result = train(tiny_layers, tmp_path)
    run_dir = result.run_dir
    assert run_dir.parent == tmp_path
    assert run_dir.name.startswith("digits-cnn-standard-s0-")
    for name in ("config.yaml", "env.json", "model.safetensors", "state.pt", "metrics.jsonl"):
        assert (run_dir / name).is_file(), name
    env = json.loads((run_dir / "env.json").read_text())
    assert env["status"] == "complete"
    assert env["torch"] == torch.__version__
    assert env["summary"]["test_acc"] == result.summary["test_acc"]
    rows = runs.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "train_acc", "val_acc", "seconds", "images_per_s", "lr"):
        assert all(key in r for r in rows), key
    # state.pt loads with weights_only=True; the weights load into a rebuilt model.
    state = torch.load(run_dir / "state.pt", weights_only=True)
    assert state["epoch"] == 2
    model, cfg = api.load_run_model(run_dir)
    saved = load_file(str(run_dir / "model.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert cfg.optim.epochs == 2


def test_the_saved_config_reproduces_the_run(tmp_path, tiny_layers):
    first = train([*tiny_layers, {"runtime": {"deterministic": True}}], tmp_path / "a")
    saved = yaml.safe_load((first.run_dir / "config.yaml").read_text())
    second = train([saved], tmp_path / "b")
    assert second.run_id == first.run_id
    a = load_file(str(first.run_dir / "model.safetensors"))
    b = load_file(str(second.run_dir / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def interrupt_after(epoch):
    def callback(row):
        if row["epoch"] == epoch:
            raise KeyboardInterrupt

    return callback


def test_an_interrupted_run_is_never_complete_and_resumes_to_identical_weights(tmp_path):
    layers = [{"data": {"dataset": "digits", "train_subset": 256},
               "model": {"arch": "cnn"},
               "optim": {"epochs": 3, "batch_size": 32, "schedule": "multistep",
                         "milestones": [2]},
               "runtime": {"device": "cpu", "deterministic": True}}]
    straight = train(layers, tmp_path / "straight")

    with pytest.raises(KeyboardInterrupt, match="after epoch 1.*--resume"):
        train(layers, tmp_path / "cut", callbacks=[interrupt_after(1)])
    cut_dir = tmp_path / "cut" / straight.run_id
    assert not runs.is_complete(cut_dir)
    assert not (cut_dir / "model.safetensors").exists()
    assert json.loads((cut_dir / "env.json").read_text())["status"] == "interrupted"

    resumed = api.resume(cut_dir, quiet=True)
    assert runs.is_complete(cut_dir)
    a = load_file(str(straight.run_dir / "model.safetensors"))
    b = load_file(str(cut_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in runs.read_metrics(cut_dir)] == [1, 2, 3]
    assert resumed.summary["test_acc"] == straight.summary["test_acc"]


def test_resume_refuses_flags_that_differ_from_the_runs_config(tmp_path, tiny_layers):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_layers, tmp_path, callbacks=[interrupt_after(1)])
    (run_dir,) = tmp_path.iterdir()
    result = CliRunner().invoke(app, ["train", "--resume", str(run_dir), "--epochs", "5"])
    assert result.exit_code == 2
    assert "optim.epochs=2" in result.stderr
    # Giving the same value it already has is fine.
    result = CliRunner().invoke(app, ["train", "--resume", str(run_dir), "--epochs", "2",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert runs.is_complete(run_dir)


def test_training_the_same_config_again_reuses_the_complete_run(tmp_path, tiny_layers):
    first = train(tiny_layers, tmp_path)
    mtime = (first.run_dir / "model.safetensors").stat().st_mtime_ns
    again = train(tiny_layers, tmp_path)
    assert again.reused and again.run_dir == first.run_dir
    assert (first.run_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_an_incomplete_run_with_the_same_config_is_not_overwritten(tmp_path, tiny_layers):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_layers, tmp_path, callbacks=[interrupt_after(1)])
    from robench.errors import UserError

    with pytest.raises(UserError, match="--resume"):
        train(tiny_layers, tmp_path)


def test_standard_training_on_digits_reaches_95_percent_test_accuracy(tmp_path):
    result = train([{"optim": {"epochs": 15}, "runtime": {"device": "cpu"}}], tmp_path)
    assert result.summary["test_acc"] >= 0.95
    assert result.summary["final_val_acc"] >= 0.95


def test_bf16_and_channels_last_train_and_record_their_settings(tmp_path, tiny_layers):
    result = train([*tiny_layers, {"data": {"image_size": 16},
                                   "model": {"arch": "resnet18", "width": 0.125},
                                   "runtime": {"precision": "bf16", "channels_last": True}}],
                   tmp_path)
    cfg = resolve([yaml.safe_load((result.run_dir / "config.yaml").read_text())])
    assert cfg.runtime.precision == "bf16" and cfg.runtime.channels_last
    assert 0.0 <= result.summary["test_acc"] <= 1.0
    assert torch.isfinite(torch.tensor(runs.read_metrics(result.run_dir)[-1]["train_loss"]))


def test_validation_records_pgd_accuracy_and_best_is_chosen_on_it(tmp_path, tiny_layers):
    result = train([*tiny_layers, {"optim": {"epochs": 3},
                                   "validation": {"every": 2, "steps": 3}}], tmp_path)
    rows = runs.read_metrics(result.run_dir)
    assert [r["val_robust_acc"] is not None for r in rows] == [False, True, True]
    assert all(r["val_acc"] is not None for r in rows)
    best = result.summary["best"]
    validated = [r for r in rows if r["val_robust_acc"] is not None]
    top = max(validated, key=lambda r: (r["val_robust_acc"], r["val_acc"]))
    assert best["epoch"] == top["epoch"]
    assert (result.run_dir / "best.safetensors").is_file()
    cfg = resolve([yaml.safe_load((result.run_dir / "config.yaml").read_text())])
    assert cfg.validation.eps == 0.2  # digits' standard budget, written out


def test_best_checkpoint_holds_the_weights_of_the_best_validation_epoch(tmp_path, tiny_layers):
    weights = {}

    def keep_weights(row):  # state.pt holds the model as it is at the end of this epoch
        (run_dir,) = tmp_path.iterdir()
        weights[row["epoch"]] = torch.load(run_dir / "state.pt", weights_only=True)["model"]

    result = train([*tiny_layers, {"optim": {"epochs": 3, "lr": 0.5},
                                   "validation": {"select": "clean"}}],
                   tmp_path, callbacks=[keep_weights])
    rows = runs.read_metrics(result.run_dir)
    best_epoch = max(rows, key=lambda r: (r["val_acc"], r["val_robust_acc"]))["epoch"]
    assert result.summary["best"]["epoch"] == best_epoch
    best = load_file(str(result.run_dir / "best.safetensors"))
    assert all(torch.equal(best[k], v) for k, v in weights[best_epoch].items())


def test_catastrophic_overfitting_is_pgd_collapsing_while_fgsm_rises():
    from robench.training import catastrophic_overfitting

    def row(pgd, fgsm):
        return {"val_robust_acc": pgd, "val_fgsm_acc": fgsm}

    healthy = [row(0.40, 0.50), row(0.45, 0.55), row(0.44, 0.56)]
    collapse = [row(0.40, 0.50), row(0.45, 0.55), row(0.05, 0.80)]
    both_fall = [row(0.40, 0.50), row(0.45, 0.55), row(0.05, 0.10)]
    never_robust = [row(0.05, 0.20), row(0.01, 0.60)]
    assert not catastrophic_overfitting(healthy)
    assert catastrophic_overfitting(collapse)
    assert not catastrophic_overfitting(both_fall)
    assert not catastrophic_overfitting(never_robust)
    assert not catastrophic_overfitting([{"val_robust_acc": None}, *healthy[:1]])
