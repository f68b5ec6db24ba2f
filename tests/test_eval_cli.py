"""`robench eval` and `robench attack` from the command line, with runs and users' own models."""

import json
import pickle

import pytest
import torch
from helpers import one_line_error
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from robench.cli import app

runner = CliRunner()

USER_MODEL = '''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def wrong_shape():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))


def not_a_model():
    return 42
'''


@pytest.fixture
def user_model(tmp_path):
    """A user's model file and trained-looking weights (a linear model fitted on digits)."""
    from robench.data import load_dataset

    path = tmp_path / "mine.py"
    path.write_text(USER_MODEL)
    splits = load_dataset("digits")
    x, y = splits.train.x.flatten(1), splits.train.y
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    return path, weights


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_eval_of_a_run_prints_a_table_and_writes_the_record(digits_run):
    result = invoke("eval", digits_run, "-A", "fgsm", "-A", "pgd", "--steps", "5",
                    "-n", "50", "--eps", "0.2", "--quiet")
    assert result.exit_code == 0, result.output
    assert "after pgd" in result.stdout and "robust" in result.stdout
    # digits_run is shared by the session: other tests may have left fgsm+pgd records of
    # other settings in it, so the one this command wrote is picked by its settings.
    recs = [json.loads(p.read_text())
            for p in (digits_run / "evals").glob("fgsm+pgd-linf-0.2-n50-*.json")]
    mine = [r for r in recs if r["per_attack"][1]["params"].get("steps") == 5]
    assert len(mine) == 1
    assert [a["params"]["name"] for a in mine[0]["per_attack"]] == ["fgsm", "pgd"]


def test_eval_json_output_is_the_records(digits_run):
    result = invoke("eval", digits_run, "-A", "fgsm", "-n", "20", "--eps", "0.1,0.2",
                    "--json", "--quiet")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["eps"] for r in data] == [0.1, 0.2]


def test_eval_of_a_users_model_file_with_safetensors_and_pt_weights(tmp_path, user_model):
    path, weights = user_model
    for w in (weights, tmp_path / "w.pt"):
        out = tmp_path / f"evals-{w.suffix[1:]}"
        result = invoke("eval", "--model", f"{path}:build", "--weights", w, "--dataset",
                        "digits", "-A", "pgd", "-n", "100", "--out", out, "--quiet")
        assert result.exit_code == 0, result.output
        (rec,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
        assert rec["model"]["kind"] == "external"
        assert rec["model"]["file"] == str(path) and rec["model"]["factory"] == "build"
        assert len(rec["model"]["weights_sha256"]) == 64
        assert rec["clean_acc"] > 0.85  # the fitted linear model, not the random init
        assert rec["robust_acc"] < rec["clean_acc"]


def test_a_users_model_with_mean_and_std_gets_a_normalize_layer(tmp_path, user_model):
    path, weights = user_model
    out = tmp_path / "evals"
    result = invoke("eval", "--model", f"{path}:build", "--weights", weights, "--dataset",
                    "digits", "--mean", "0.5", "--std", "0.5", "-A", "fgsm", "-n", "10",
                    "--out", out, "--quiet")
    assert result.exit_code == 0, result.output


def test_attack_saves_examples_inside_the_ball_and_reports_their_size(digits_run):
    result = invoke("attack", digits_run, "-A", "pgd", "--eps", "0.1", "-n", "40",
                    "--steps", "10", "--quiet")
    assert result.exit_code == 0, result.output
    assert "every example lies in the Linf ball of radius 0.1" in result.stdout
    (path,) = (digits_run / "adv").glob("pgd-*.safetensors")
    saved = load_file(str(path))
    assert set(saved) == {"x_adv", "labels", "indices", "clean_pred", "adv_pred"}
    from robench.data import load_dataset

    test = load_dataset("digits").test
    x = test.x[saved["indices"]]
    assert torch.equal(saved["labels"], test.y[saved["indices"]])
    assert (saved["x_adv"] - x).abs().max() <= 0.1 + 1e-6
    assert saved["x_adv"].min() >= 0 and saved["x_adv"].max() <= 1


@pytest.mark.parametrize("args, fragment", [
    (["--eps", "0"], "eps '0'"),
    (["--eps", "-0.1"], "eps"),
    (["--eps", "8/0"], "divides by zero"),
    (["--eps", "eight"], "eps 'eight'"),
    (["--eps", "__import__('os')"], "not a number"),
    (["--norm", "L2", "-A", "apgd-t", "--set", "pgd.steps=3"], "pgd"),
    (["-n", "5000"], "5000"),
    (["-n", "361"], "at most 360"),
    (["-n", "0"], "--n-examples"),
    (["-A", "pgdd"], "did you mean 'pgd'"),
    (["-A", "pgd", "--set", "pgd.stepz=3"], "'pgd.stepz'"),
    (["-A", "fgsm", "--steps", "3"], "--steps"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_bad_eval_input_is_one_sentence_exit_2_and_no_record(digits_run, args, fragment):
    before = set((digits_run / "evals").glob("*")) if (digits_run / "evals").exists() else set()
    line = one_line_error(invoke("eval", digits_run, *args))
    assert fragment in line
    after = set((digits_run / "evals").glob("*")) if (digits_run / "evals").exists() else set()
    assert after == before


def test_bad_targets(tmp_path, digits_run):
    assert "not a robench run" in one_line_error(invoke("eval", tmp_path / "nope"))
    empty = tmp_path / "unfinished"
    empty.mkdir()
    (empty / "config.yaml").write_text((digits_run / "config.yaml").read_text())
    assert "has no model.safetensors" in one_line_error(invoke("eval", empty))
    for name in ("model.safetensors", "env.json"):
        (empty / name).write_bytes((digits_run / name).read_bytes())
    assert "has no best.safetensors" in one_line_error(
        invoke("eval", empty, "--checkpoint", "best"))
    assert "run directory" in one_line_error(invoke("eval"))


@pytest.mark.parametrize("spec, fragment", [
    ("missing.py:build", "does not exist"),
    ("mine.py", "path/to/file.py:factory"),
    ("mine.py:nothing", "no callable 'nothing'"),
    ("mine.py:wrong_shape", "expected logits of shape (2, 10)"),
    ("mine.py:not_a_model", "not a torch.nn.Module"),
    ("broken.py:build", "ZeroDivisionError"),
])
def test_bad_user_models(tmp_path, user_model, spec, fragment, monkeypatch):
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    monkeypatch.chdir(tmp_path)
    line = one_line_error(invoke("eval", "--model", spec, "--dataset", "digits"))
    assert fragment in line
    assert not (tmp_path / "runs").exists()


def test_weights_that_do_not_fit_or_carry_code_are_refused(tmp_path, user_model, monkeypatch):
    path, _ = user_model
    wrong = tmp_path / "wrong.safetensors"
    save_file({"1.weight": torch.zeros(3, 64), "1.bias": torch.zeros(3)}, str(wrong))
    line = one_line_error(invoke("eval", "--model", f"{path}:build", "--weights", wrong,
                                 "--dataset", "digits"))
    assert "do not fit" in line

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"1.weight": Payload()}))
    result = invoke("eval", "--model", f"{path}:build", "--weights", evil, "--dataset",
                    "digits")
    assert "code ran" not in result.output
    assert "weights_only" in one_line_error(result)
