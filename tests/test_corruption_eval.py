"""`robench eval --attack corruptions`, its record, its report table and `robench corrupt`.

Expected accuracies come from how the test data is built (a fixed model and images made so
that its answer on each one is known), or from corrupting and classifying the points here
directly; mCE is worked out by hand from the paper's formula.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from helpers import one_line_error
from torch import nn
from typer.testing import CliRunner

from robench import corruptions as corruption_lib
from robench import records, report
from robench.cli import app
from robench.corruptions.grid import corruption_grid
from robench.data import Split, to_float
from robench.data.splits import DatasetInfo
from robench.errors import UserError
from robench.evaluation import predict, select_points
from robench.evaluation.corruptions import (
    CorruptionConfig,
    corruption_errors,
    evaluate_corruptions,
    parse_severities,
)
from robench.records import ModelSource
from robench.report import corruptions as rc
from robench.targets import Target, from_run

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


class Brightness(nn.Module):
    """Class 1 for a bright image (mean above 0.5), class 0 otherwise: a model whose answer
    on any image is known in advance."""

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = threshold

    def forward(self, x):
        bright = (x.mean(dim=(1, 2, 3)) > self.threshold).float()
        logits = torch.zeros(len(x), 10)
        logits[:, 1], logits[:, 0] = bright, 1 - bright
        return logits


def cifar_target(tmp_path, model: nn.Module, name: str, n: int = 10) -> Target:
    """A CIFAR-10-shaped target whose clean test images are all bright and labelled 1."""
    info = DatasetInfo(name="cifar10", channels=3, image_size=32, num_classes=10,
                       mean=(0.5,) * 3, std=(0.25,) * 3, classes=tuple("abcdefghij"),
                       augment="crop-flip")
    test = Split(torch.full((n, 3, 32, 32), 200, dtype=torch.uint8),
                 torch.ones(n, dtype=torch.long))
    return Target(model=model, info=info, test=test,
                  source=ModelSource(kind="external", arch=name, defense=name,
                                     weights_sha256=name),
                  evals_dir=tmp_path / name / "evals", label=name, data_dir=str(tmp_path))


def write_premade(root, bright: dict[str, list[int]], n: int = 10) -> None:
    """A CIFAR-10-C folder: for corruption c at severity s, the first bright[c][s-1] of the n
    images are bright (the Brightness model is right), the rest dark (it is wrong)."""
    folder = root / "CIFAR-10-C"
    folder.mkdir()
    for name, counts in bright.items():
        images = np.zeros((5 * n, 32, 32, 3), dtype=np.uint8)
        for s, k in enumerate(counts):
            images[s * n: s * n + k] = 230
        np.save(folder / f"{name}.npy", images)
    np.save(folder / "labels.npy", np.ones(5 * n, dtype=np.int64))


BRIGHT = {"fog": [10, 8, 6, 4, 2], "snow": [9, 9, 5, 5, 0]}


# ------------------------------------------------------------------------------------------
# Pre-made files


def test_premade_files_give_the_accuracy_each_severity_was_built_to_have(tmp_path):
    write_premade(tmp_path, BRIGHT)
    target = cifar_target(tmp_path, Brightness(), "model")
    cfg = CorruptionConfig(corruptions=["fog", "snow"], device="cpu")
    record = evaluate_corruptions(target, cfg, quiet=True).record
    c = record.corruptions
    assert c.source == f"premade:{tmp_path / 'CIFAR-10-C'}"
    assert c.accuracy == {"fog": [1.0, 0.8, 0.6, 0.4, 0.2], "snow": [0.9, 0.9, 0.5, 0.5, 0.0]}
    assert record.robust_acc == pytest.approx((3.0 + 2.8) / 10)
    assert record.clean_acc == 1.0 and record.norm == "corruptions"
    assert json.loads(next(target.evals_dir.glob("*.json")).read_text())["corruptions"]


def test_generated_corruptions_are_used_when_asked_even_with_premade_files(tmp_path):
    write_premade(tmp_path, BRIGHT)
    target = cifar_target(tmp_path, Brightness(), "model")
    cfg = CorruptionConfig(corruptions=["fog"], severities=[1], premade=False, device="cpu")
    assert evaluate_corruptions(target, cfg, quiet=True).record.corruptions.source == \
        "generated"


def test_mce_against_a_reference_equals_the_papers_formula_worked_by_hand(tmp_path):
    write_premade(tmp_path, BRIGHT)
    model = cifar_target(tmp_path, Brightness(), "model")
    # The reference calls everything class 0: wrong on every image, clean ones included.
    reference = cifar_target(tmp_path, Brightness(threshold=2.0), "reference")
    cfg = CorruptionConfig(corruptions=["fog", "snow"], device="cpu")
    c = evaluate_corruptions(model, cfg, reference=reference, quiet=True).record.corruptions
    # Model errors: fog 0+.2+.4+.6+.8 = 2.0, snow .1+.1+.5+.5+1 = 2.2; reference 5 each.
    assert c.ce == pytest.approx({"fog": 2.0 / 5, "snow": 2.2 / 5})
    assert c.mce == pytest.approx((0.4 + 0.44) / 2)
    # Relative: model clean error 0, reference clean error 1 -> reference gap 0: undefined.
    assert c.relative_ce == {"fog": None, "snow": None} and c.relative_mce is None
    assert c.reference == "reference" and c.reference_clean_acc == 0.0
    assert (tmp_path / "reference" / "evals").is_dir()  # its record, with the same protocol


def test_corruption_errors_by_hand():
    ce, rel = corruption_errors({"a": [0.9, 0.8], "b": [0.5, 0.5]}, 0.95,
                                {"a": [0.8, 0.6], "b": [0.5, 0.25]}, 0.9)
    assert ce == pytest.approx({"a": 0.3 / 0.6, "b": 1.0 / 1.25})
    assert rel == pytest.approx({"a": (0.05 + 0.15) / (0.1 + 0.3),
                                 "b": (0.45 + 0.45) / (0.4 + 0.65)})


# ------------------------------------------------------------------------------------------
# Generated corruptions on a trained model


def test_generated_accuracies_are_the_models_on_the_corrupted_points(digits_run):
    target = from_run(digits_run)
    cfg = CorruptionConfig(corruptions=["gaussian_noise", "contrast"], severities=[2, 5],
                           n_examples=40, seed=3, device="cpu")
    before = {k: v.clone() for k, v in target.model.state_dict().items()}
    record = evaluate_corruptions(target, cfg, quiet=True, force=True).record
    idx, _ = select_points(target.test, 40, 3)
    x, y = to_float(target.test.x[idx]), target.test.y[idx]
    for name in cfg.corruptions:
        for i, s in enumerate(cfg.severities):
            # One chunk of points, so the seed is the chunk's: seed * 100003 + 0.
            corrupted = corruption_lib.corrupt(x, name, s, seed=3 * 100_003)
            expected = (predict(target.model, Split(corrupted, y), device=torch.device("cpu"))
                        == y).float().mean().item()
            assert record.corruptions.accuracy[name][i] == pytest.approx(expected)
    assert record.corruptions.accuracy["contrast"][1] < record.clean_acc  # severity 5 bites
    assert all(torch.equal(v, target.model.state_dict()[k]) for k, v in before.items())
    again = evaluate_corruptions(from_run(digits_run), cfg, quiet=True, force=True).record
    assert again.corruptions.accuracy == record.corruptions.accuracy


def test_a_recorded_evaluation_is_reused_and_a_different_protocol_is_not(digits_run):
    cfg = CorruptionConfig(corruptions=["pixelate"], severities=[3], n_examples=20,
                           device="cpu")
    first = evaluate_corruptions(from_run(digits_run), cfg, quiet=True)
    second = evaluate_corruptions(from_run(digits_run), cfg, quiet=True)
    assert second.reused and second.path == first.path
    other = evaluate_corruptions(from_run(digits_run), dataclasses.replace(cfg, severities=[4]),
                                 quiet=True)
    assert other.path != first.path


# ------------------------------------------------------------------------------------------
# Configuration and CLI errors


@pytest.mark.parametrize(("text", "expected"), [("1-5", [1, 2, 3, 4, 5]), ("3", [3]),
                                                ("5,1,3", [1, 3, 5]), ("2-3,5", [2, 3, 5])])
def test_severities_parse_as_ranges_and_lists(text, expected):
    assert parse_severities(text) == expected


@pytest.mark.parametrize("text", ["0-5", "6", "a", "1-", ""])
def test_bad_severities_are_refused(text):
    with pytest.raises(UserError, match="--severities"):
        parse_severities(text)


def test_unknown_corruption_names_suggest_the_closest():
    with pytest.raises(UserError, match="did you mean 'fog'"):
        CorruptionConfig(corruptions=["fgo"]).validate()


def test_eval_corruptions_from_the_cli_prints_the_table_and_writes_the_record(digits_run):
    result = invoke("eval", digits_run, "-A", "corruptions", "--corruptions", "fog,contrast",
                    "--severities", "1,5", "-n", "30", "--device", "cpu", "--force")
    assert result.exit_code == 0, result.output
    assert "fog" in result.stdout and "mean corruption accuracy" in result.stdout
    path = result.stderr.split("record: ")[-1].splitlines()[0].strip()
    data = records.read(path)
    assert data.corruptions.corruptions == ["fog", "contrast"]
    assert data.corruptions.severities == [1, 5]


@pytest.mark.parametrize(("extra", "message"), [
    (["-A", "pgd"], "threat model of its own"),
    (["--eps", "0.1"], "--eps has no meaning for --attack corruptions"),
    (["--severities", "0-3"], "--severities '0-3' is not valid"),
    (["--corruptions", "fgo"], "did you mean 'fog'"),
])
def test_eval_corruptions_refuses_bad_input_in_one_line(digits_run, extra, message):
    line = one_line_error(invoke("eval", digits_run, "-A", "corruptions", *extra))
    assert message in line


def test_corruption_flags_without_the_corruption_attack_are_refused(digits_run):
    line = one_line_error(invoke("eval", digits_run, "-A", "fgsm", "--reference", digits_run))
    assert "--reference goes with --attack corruptions" in line


# ------------------------------------------------------------------------------------------
# Report


def test_the_report_has_a_corruptions_table_and_heat_map_apart_from_lp_tables(
        tmp_path, digits_run):
    write_premade(tmp_path, BRIGHT)
    a = cifar_target(tmp_path, Brightness(), "model")
    b = cifar_target(tmp_path, Brightness(threshold=2.0), "reference")
    cfg = CorruptionConfig(corruptions=["fog", "snow"], device="cpu")
    evaluate_corruptions(a, cfg, reference=b, quiet=True)
    loaded = report.load_records([tmp_path])
    assert report.leaderboard(loaded) == {}  # no Lp record among them
    (table,) = rc.corruption_tables(loaded).values()
    assert list(table["run"]) == ["external-model", "external-reference"]
    assert table.loc[0, "mean_corruption_acc"] == pytest.approx(0.58)
    assert table.loc[0, "fog"] == pytest.approx(0.6)
    assert table.loc[0, "mce"] == pytest.approx(0.42)
    written = report.write_report(loaded, tmp_path / "out", ["md", "csv", "png"])
    names = {p.name for p in written}
    # fog and snow only: the table and its heat map name the set
    assert {"cifar10-corruptions-s1-5-fog+snow.csv",
            "cifar10-corruptions-s1-5-fog+snow-heatmap.png"} <= names
    md = (tmp_path / "out" / "report.md").read_text()
    assert "common corruptions" in md and "| 42.0 |" in md


def test_a_corruptions_record_must_carry_its_results_and_v1_records_still_read(digits_run):
    from robench.evaluation.corruptions import CorruptionConfig as C

    outcome = evaluate_corruptions(from_run(digits_run), C(corruptions=["fog"], severities=[1],
                                                           n_examples=10, device="cpu"),
                                   quiet=True)
    data = json.loads(outcome.path.read_text())
    with pytest.raises(UserError, match="needs its per-corruption results"):
        records.validate({**data, "corruptions": None})
    (lp,) = [p for p in (digits_run / "evals").glob("*.json")
             if json.loads(p.read_text())["norm"] != "corruptions"][:1] or [None]
    if lp is not None:
        old = {k: v for k, v in json.loads(lp.read_text()).items() if k != "corruptions"}
        assert records.validate({**old, "schema_version": 1}).corruptions is None


# ------------------------------------------------------------------------------------------
# robench corrupt


def test_the_grid_starts_with_the_clean_image_then_one_column_per_severity():
    image = (torch.rand(3, 32, 32) * 255).to(torch.uint8)
    grid = corruption_grid(image, ["fog", "pixelate"], [1, 3, 5])
    assert grid.shape == (2, 4, 3, 32, 32)
    assert torch.equal(grid[0, 0], to_float(image))
    assert torch.equal(grid[1, 2], corruption_lib.corrupt(to_float(image)[None], "pixelate", 3)[0])


def test_robench_corrupt_writes_a_png_and_refuses_an_index_outside_the_test_set(tmp_path):
    out = tmp_path / "grid.png"
    result = invoke("corrupt", "--dataset", "digits", "--index", "5", "--out", out,
                    "--corruptions", "fog,snow")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = one_line_error(invoke("corrupt", "--dataset", "digits", "--index", "360",
                                 "--out", tmp_path / "x.png"))
    assert "--index 360 is outside the 360 test images" in line
    assert not (tmp_path / "x.png").exists()
