"""The command line: help with examples, listing, and one-sentence errors with exit code 2."""

import json
import subprocess
import sys

import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from robench.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_every_command_has_help_with_an_example():
    top = invoke("--help")
    assert top.exit_code == 0
    names = ("train", "eval", "attack", "report", "sweep", "list")
    commands = [c for c in names if c in top.output]
    assert commands == list(names)
    for command in commands:
        result = invoke(command, "--help")
        assert result.exit_code == 0
        assert "Examples" in result.output
        assert f"robench {command}" in result.output


def test_python_dash_m_runs_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "robench", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("robench ")


def test_list_prints_every_kind_and_filters_by_pattern():
    result = invoke("list")
    assert result.exit_code == 0
    for kind in ("datasets", "archs", "defenses", "attacks"):
        assert kind in result.output
    result = invoke("list", "archs", "vgg1*", "--json")
    names = [e["name"] for e in json.loads(result.output)["archs"]]
    assert names == ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
                     "vgg19", "vgg19_bn"]


def test_list_accepts_the_singular_and_refuses_an_unknown_kind():
    assert invoke("list", "arch").exit_code == 0
    result = invoke("list", "modles")
    assert result.exit_code == 2
    assert "unknown kind 'modles'" in result.output


@pytest.mark.parametrize("args, fragment", [
    (["--dataset", "cifar11"], "did you mean 'cifar10'"),
    (["--arch", "resnet19"], "did you mean 'resnet18'"),
    (["--defense", "pgd"], "unknown defense 'pgd'"),
    (["--epochs", "0"], "epochs"),
    (["--lr", "0"], "lr"),
    (["--lr", "-1"], "lr"),
    (["--batch-size", "0"], "batch_size"),
    (["--set", "optim.nope=1"], "'optim.nope'"),
    (["--set", "optim.epochs=many"], "'optim.epochs'"),
    (["--dataset", "cifar10"], "cifar-10-batches-py"),
    (["--dataset", "imagefolder:/nonexistent/folder"], "/nonexistent/folder"),
    (["--arch", "vgg16"], "--image-size"),
    (["--milestones", "a,b"], "--milestones"),
])
def test_bad_input_is_one_sentence_with_exit_code_2_and_writes_no_run(tmp_path, args, fragment):
    out = tmp_path / "runs"
    result = invoke("train", "--out", str(out), "--data-dir", str(tmp_path / "data"), *args)
    line = one_line_error(result)
    assert fragment in line
    assert not out.exists() or not any(out.iterdir())


def test_malformed_yaml_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optim: {lr: [\n")
    line = one_line_error(invoke("train", "--config", str(cfg), "--out", str(tmp_path / "r")))
    assert "c.yaml" in line and "YAML" in line


def test_unknown_key_in_a_yaml_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optim:\n  learning_rate: 0.1\n")
    line = one_line_error(invoke("train", "--config", str(cfg), "--out", str(tmp_path / "r")))
    assert "'optim.learning_rate'" in line


def test_image_folder_with_no_classes(tmp_path):
    root = tmp_path / "folder"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    line = one_line_error(invoke("train", "--dataset", f"imagefolder:{root}",
                                 "--out", str(tmp_path / "r")))
    assert "class" in line


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    line = one_line_error(invoke("train", "--out", str(blocker / "runs")))
    assert "a-file" in line


def test_resume_of_a_missing_run(tmp_path):
    line = one_line_error(invoke("train", "--resume", str(tmp_path / "nope")))
    assert "nope" in line


def test_debug_shows_the_traceback_instead(tmp_path):
    result = invoke("--debug", "train", "--epochs", "0", "--out", str(tmp_path))
    assert result.exit_code != 0
    assert result.exception is not None
    assert type(result.exception).__name__ == "UserError"
