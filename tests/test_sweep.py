"""Sweeps: grid expansion, the commands each run gets, and a local sweep end to end."""

import json

import pytest
import yaml
from helpers import one_line_error
from typer.testing import CliRunner

from robench import sweep
from robench.cli import app
from robench.errors import UserError


def write(tmp_path, data, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_grid_is_the_cartesian_product_of_its_axes_with_shorthands(tmp_path):
    cfg = sweep.load_sweep(write(tmp_path, {
        "out": str(tmp_path / "runs"), "train": {"optim": {"epochs": 2}},
        "grid": {"defense": ["standard", "gaussian"], "seed": [0, 1],
                 "optim.lr": [0.05]},
        "evals": [{"attacks": ["fgsm"], "eps": [0.2]}],
    }))
    jobs = sweep.expand(cfg)
    assert len(jobs) == 4
    assert sorted("-".join(j.name.split("-")[:-2]) for j in jobs) == \
        ["digits-cnn-gaussian"] * 2 + ["digits-cnn-standard"] * 2
    assert {j.layer["runtime"]["seed"] for j in jobs} == {0, 1}
    assert all(j.layer["optim"] == {"epochs": 2, "lr": 0.05} for j in jobs)
    assert jobs[0].evals[0].eps == ["0.2"]


def test_each_run_is_the_train_and_eval_commands_a_user_would_type(tmp_path):
    cfg = sweep.load_sweep(write(tmp_path, {
        "grid": {"defense": ["standard"]},
        "evals": [{"attacks": ["pgd", "autoattack"], "params": {"pgd": {"steps": 20}},
                   "eps": ["8/255"], "n_examples": 100}],
    }))
    (job,) = sweep.expand(cfg)
    train, evaluate = sweep.commands(job, tmp_path / "c.yaml", "runs")
    assert train[-6:] == ["train", "--config", str(tmp_path / "c.yaml"), "--out", "runs",
                          "--quiet"]
    assert evaluate[3:5] == ["eval", str(job.run_dir)]
    assert "--attack" in evaluate and evaluate.count("--attack") == 2
    assert evaluate[evaluate.index("--eps") + 1] == "8/255"
    assert evaluate[evaluate.index("--set") + 1] == "pgd.steps=20"


@pytest.mark.parametrize("data, fragment", [
    ({"grid": {"defense": []}}, "non-empty list"),
    ({"grdi": {}}, "'grdi'"),
    ({"grid": {"defense": ["pgd"]}}, "unknown defense 'pgd'"),
    ({"evals": [{"atacks": ["pgd"]}]}, "'evals[0].atacks'"),
])
def test_bad_sweep_files_are_refused_before_anything_runs(tmp_path, data, fragment):
    path = write(tmp_path, data)
    line = one_line_error(CliRunner().invoke(app, ["sweep", str(path), "--dry-run"]))
    assert fragment in line


def test_an_unknown_launcher_is_refused():
    with pytest.raises(UserError, match="launcher 'slurmm'"):
        sweep.make_launcher("slurmm", jobs=1, out="runs")


def test_a_local_sweep_trains_evaluates_reports_and_continues_when_run_again(tmp_path):
    grid = write(tmp_path, {
        "out": str(tmp_path / "runs"),
        "train": {"data": {"train_subset": 200}, "optim": {"epochs": 2},
                  "validation": {"steps": 2}, "runtime": {"device": "cpu"}},
        "grid": {"defense": ["standard", "gaussian"]},
        "evals": [{"attacks": ["fgsm"], "eps": ["0.2"], "n_examples": 30}],
        "report": {"out": str(tmp_path / "board"), "formats": ["md", "csv"]},
    })
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(grid), "--quiet"])
    assert result.exit_code == 0, result.output
    run_dirs = sorted((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert json.loads((run_dir / "env.json").read_text())["status"] == "complete"
        assert len(list((run_dir / "evals").glob("fgsm-*.json"))) == 1
    assert (tmp_path / "board").is_dir() and any((tmp_path / "board").glob("*.md"))
    mtimes = {p: (p / "model.safetensors").stat().st_mtime_ns for p in run_dirs}
    result = runner.invoke(app, ["sweep", str(grid), "--quiet"])
    assert result.exit_code == 0, result.output
    assert {p: (p / "model.safetensors").stat().st_mtime_ns for p in run_dirs} == mtimes


def test_a_failing_run_fails_the_sweep_with_exit_code_1(tmp_path):
    grid = write(tmp_path, {
        "out": str(tmp_path / "runs"),
        "train": {"data": {"train_subset": 100}, "optim": {"epochs": 1},
                  "runtime": {"device": "cpu"}},
        "grid": {"defense": ["standard"]},
        "evals": [{"attacks": ["fgsm"], "eps": ["0.2"], "n_examples": 5000}],
    })
    result = CliRunner().invoke(app, ["sweep", str(grid), "--quiet"])
    assert result.exit_code == 1
    assert "n-examples" in result.stderr


def test_report_on_nothing_says_there_is_nothing_to_report(tmp_path):
    line = one_line_error(CliRunner().invoke(app, ["report", str(tmp_path)]))
    assert "nothing to report" in line
