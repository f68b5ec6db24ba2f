"""What an evaluation is keyed on and bounded by: eps, the points, a user model's code, torch."""

import re
from pathlib import Path

import pytest
import torch
from helpers import one_line_error
from typer.testing import CliRunner

from robench import api
from robench.cli import app
from robench.config import EvalConfig
from robench.data import Split
from robench.errors import UserError
from robench.targets import from_run
from robench.threat import default_eps, largest_norm, parse_eps

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------------
# eps: at most the largest distance two images can be apart


def test_the_l2_bound_is_the_diagonal_of_the_image_cube():
    assert largest_norm("L2", (1, 28, 28)) == 28.0
    assert largest_norm("L2", (3, 32, 32)) == pytest.approx(55.43, abs=0.01)
    assert largest_norm("Linf", (3, 32, 32)) == 1.0
    assert parse_eps("2.0", norm="L2", shape=(1, 28, 28)).value == 2.0
    assert parse_eps("28", norm="L2", shape=(1, 28, 28)).value == 28.0
    with pytest.raises(UserError, match=r"'28.5'.*at most 28 .*L2 distance.*1x28x28"):
        parse_eps("28.5", norm="L2", shape=(1, 28, 28))
    with pytest.raises(UserError, match=r"at most 1 \(pixel values"):
        parse_eps("1.5", norm="Linf", shape=(1, 28, 28))


def test_mnists_own_l2_default_of_2_is_accepted():
    assert default_eps("mnist", "L2").value == 2.0
    assert default_eps("mnist", "L2", (1, 28, 28)).value == 2.0


USER_MODEL = '''
import torch
from torch import nn

SCALE = 1.0


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(10))
'''


def test_l2_eps_2_on_28x28_digits_evaluates_and_eps_above_the_diagonal_is_refused(tmp_path):
    model = tmp_path / "mine.py"
    model.write_text(USER_MODEL)
    common = ["eval", "--model", f"{model}:build", "--dataset", "digits", "--image-size", "28",
              "-A", "fgsm", "-n", "10", "--norm", "L2", "--out", tmp_path / "evals", "--quiet"]
    result = invoke(*common, "--eps", "2.0")
    assert result.exit_code == 0, result.output
    assert "at most 28" in one_line_error(invoke(*common, "--eps", "29"))


def test_l2_eps_above_the_8x8_diagonal_is_refused_for_a_run(digits_run):
    line = one_line_error(invoke("eval", digits_run, "--norm", "L2", "--eps", "9"))
    assert "eps '9'" in line and "at most 8" in line


# ------------------------------------------------------------------------------------------
# A user model's code is part of the record's key


def _eval_user_model(model, out):
    result = invoke("eval", "--model", f"{model}:build", "--dataset", "digits", "-A", "fgsm",
                    "-n", "10", "--eps", "0.1", "--out", out, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    return result


def test_an_edited_user_model_is_evaluated_again_and_an_unchanged_one_is_not(tmp_path):
    model, out = tmp_path / "mine.py", tmp_path / "evals"
    model.write_text(USER_MODEL)
    _eval_user_model(model, out)
    _eval_user_model(model, out)
    assert len(list(out.glob("*.json"))) == 1  # the second call showed the first record
    model.write_text(USER_MODEL.replace("SCALE = 1.0", "SCALE = 2.0"))
    _eval_user_model(model, out)
    assert len(list(out.glob("*.json"))) == 2


def test_an_edit_of_a_local_module_the_model_imports_counts_too(tmp_path):
    (tmp_path / "nets.py").write_text("from torch import nn\n\nWIDTH = 10\n\n\n"
                                      "def net():\n    return nn.Sequential(nn.Flatten(), "
                                      "nn.LazyLinear(WIDTH))\n")
    model, out = tmp_path / "mine.py", tmp_path / "evals"
    model.write_text("from nets import net\n\n\ndef build():\n    return net()\n")
    _eval_user_model(model, out)
    (tmp_path / "nets.py").write_text((tmp_path / "nets.py").read_text() + "# edited\n")
    _eval_user_model(model, out)
    assert len(list(out.glob("*.json"))) == 2


# ------------------------------------------------------------------------------------------
# The points do not depend on the attacks' seed


@pytest.fixture
def class_ordered(digits_run):
    """The digits run with its test split sorted by class: points must be sampled."""
    target = from_run(digits_run)
    order = torch.argsort(target.test.y, stable=True)
    target.test = Split(target.test.x[order], target.test.y[order])
    return target


def _record(target, **kwargs):
    cfg = EvalConfig(attacks=["fgsm"], eps=["0.1"], n_examples=30, device="cpu",
                     params={"fgsm": {"random_start": True}}, **kwargs)
    (outcome,) = api.evaluate(target, cfg, quiet=True, force=True)
    return outcome.record


def test_records_of_two_attack_seeds_are_on_the_same_points(class_ordered):
    a, b = _record(class_ordered, seed=0), _record(class_ordered, seed=1)
    assert a.selection.method == "stratified"
    assert a.selection.mask == b.selection.mask
    assert (a.seed, b.seed, a.selection.seed, b.selection.seed) == (0, 1, 0, 0)
    c = _record(class_ordered, seed=0, selection_seed=1)
    assert c.selection.mask != a.selection.mask and c.selection.seed == 1


# ------------------------------------------------------------------------------------------
# torch >= 2.6, for weights_only loading that runs no code


def test_the_package_requires_torch_2_6_or_newer():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    (spec,) = re.findall(r'"torch([<>=!~].*?)"', text)
    assert spec == ">=2.6"


def test_pickled_weights_are_refused_under_an_older_torch(tmp_path, monkeypatch):
    from robench.targets import external

    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(1)}, path)
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(UserError, match=r"CVE-2025-32434.*safetensors"):
        external.load_state_dict(path)
