"""`robench train --init <run>`: fine-tuning starts from another run's final weights."""

from __future__ import annotations

import torch
from helpers import one_line_error
from typer.testing import CliRunner

from robench import api
from robench.cli import app

runner = CliRunner()


def test_init_starts_from_the_source_runs_weights_on_its_data_and_arch(digits_run):
    cfg, defense = api.resolve_config([api.init_layer(digits_run),
                                       {"defense": "kap", "runtime": {"device": "cpu"}}])
    assert cfg.init == str(digits_run)
    assert cfg.model.arch == "cnn" and cfg.data.dataset == "digits"
    _, model = api.build_parts(cfg, defense, init=True)
    trained, _ = api.load_run_model(digits_run)
    # kap wraps every conv: its weights are the source's, under the new module names.
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    source_convs = [m for m in trained.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(source_convs) > 0
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(convs, source_convs, strict=True))
    _, fresh = api.build_parts(cfg, defense)  # without init: a new initialisation
    assert not torch.equal(next(fresh.parameters()), next(model.parameters()))


def test_weights_that_do_not_fit_are_refused_before_anything_is_written(digits_run, tmp_path):
    result = runner.invoke(app, ["train", "--init", str(digits_run), "--width", "0.5",
                                 "--out", str(tmp_path / "runs"), "--epochs", "1"])
    line = one_line_error(result)
    assert "do not fit cnn" in line and "width 0.5" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_init_and_resume_are_exclusive_and_a_missing_run_is_named(digits_run, tmp_path):
    line = one_line_error(runner.invoke(app, ["train", "--init", str(digits_run),
                                              "--resume", str(digits_run)]))
    assert "--init starts a new run; --resume continues one" in line
    line = one_line_error(runner.invoke(app, ["train", "--init", str(tmp_path / "nope")]))
    assert "is not a robench run directory" in line


def test_advbn_with_init_fine_tunes_with_the_authors_recipe_and_a_frozen_first_stage(
        digits_run, tmp_path):
    result = runner.invoke(app, ["train", "--defense", "advbn", "--init", str(digits_run),
                                 "--epochs", "2", "--out", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    model, cfg = api.load_run_model(run_dir)
    assert cfg.init == str(digits_run) and cfg.data.dataset == "digits"
    assert cfg.optim.lr == 0.001 and cfg.optim.weight_decay == 0.0001  # advbn-finetune
    assert cfg.defenses["advbn"]["freeze"] is True
    source, _ = api.load_run_model(digits_run)
    tuned, original = model.net.layer1.state_dict(), source.net.layer1.state_dict()
    frozen = [k for k in original if "running" not in k and "num_batches" not in k]
    assert frozen and all(torch.equal(tuned[k], original[k]) for k in frozen)
    assert not torch.equal(model.net.linear.weight, source.net.linear.weight)
