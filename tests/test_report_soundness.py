"""A report never shows a model as more robust than its records measured (issue 29).

Different evaluations of one model all enter the per-point worst case; only exact repeats
collapse, and a repeat that disagrees is kept and flagged. Every row carries all of its
model's flags, the AutoAttack version, the sanity pass, disputed points and notes, and the
seed and pivot tables keep the flags. Corruption means are only ranked against means over
the same corruptions.
"""

import json
import math

import pytest
from record_fakes import add_record, make_run

from robench import report
from robench.records import (
    CORRUPTIONS,
    SCHEMA_VERSION,
    CorruptionResult,
    ModelSource,
    Record,
    Selection,
    wilson_interval,
    write,
)
from robench.report import corruptions as rc


def only_row(loaded):
    (table,) = report.leaderboard(loaded).values()
    assert len(table) == 1
    return table.iloc[0]


def edit(path, **changes):
    """Rewrite fields of a written record (e.g. the verdict rule) in place."""
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------------------------------
# Which records enter the worst case


def test_an_fp32_record_is_not_dropped_for_a_later_bf16_one_of_the_same_model(tmp_path):
    """The issue's reproduction: 40 of 100 robust in fp32, then 45 in bf16: 0.40, both."""
    run = make_run(tmp_path, "r")
    fp32 = add_record(run, robust=None, robust_points=range(40), clean=90,
                      created="2026-03-01T10:00:00+0000")
    bf16 = add_record(run, robust=None, robust_points=range(45), clean=90, precision="bf16",
                      created="2026-03-02T10:00:00+0000")
    loaded = report.load_records([tmp_path])
    assert sorted(p for _, p in loaded.records) == sorted([fp32.resolve(), bf16.resolve()])
    row = only_row(loaded)
    assert (round(row["robust"] * 100), row["records"]) == (40, 2)
    assert row["precision"] == "fp32+bf16"
    (md,) = report.write_report(loaded, tmp_path / "out", ["md"])
    assert "| 40.0% |" in md.read_text() and "45.0%" not in md.read_text()


@pytest.mark.parametrize("changes", [
    {"verdict": {"rule": "every-draw", "draws": 8, "precision": "fp32"}},
    {"batch_size": 64},
    {"sanity": {"n_points": 10, "attack": {"name": "pgd", "steps": 100}, "extra_broken": 0,
                "only_protocol": 0, "p_value": 1.0, "large_eps": 0.5,
                "large_eps_attack": {"name": "pgd"}, "large_eps_robust": 0,
                "large_eps_attacked": 10}},
    {"device": "cuda:0"},
])
def test_records_differing_in_any_protocol_field_are_all_kept(tmp_path, changes):
    run = make_run(tmp_path, "r")
    add_record(run, robust=None, robust_points=range(40), created="2026-03-01T10:00:00+0000")
    later = add_record(run, robust=None, robust_points=range(45),
                       created="2026-03-02T10:00:00+0000")
    edit(later, **changes)
    loaded = report.load_records([tmp_path])
    assert (len(loaded.records), loaded.replaced) == (2, [])
    assert round(only_row(loaded)["robust"] * 100) == 40


def test_an_exact_repeat_collapses_to_one_record_and_is_counted(tmp_path):
    run = make_run(tmp_path, "r")
    first = add_record(run, robust=None, robust_points=range(40),
                       created="2026-03-01T10:00:00+0000")
    again = add_record(run, robust=None, robust_points=range(40),
                       created="2026-03-02T10:00:00+0000")
    edit(again, seconds=7.5)  # how long it took is not part of what was measured
    loaded = report.load_records([tmp_path])
    assert [p for _, p in loaded.records] == [again.resolve()]
    assert loaded.replaced == [(first.resolve(), again.resolve())]
    assert "1 identical repeat collapsed" in loaded.summary()
    row = only_row(loaded)
    assert (round(row["robust"] * 100), row["records"], row["flags"]) == (40, 1, "")


def test_a_repeat_that_disagrees_is_kept_point_by_point_and_flagged(tmp_path):
    """A randomised model evaluated twice: robust only where both runs said robust."""
    run = make_run(tmp_path, "r")
    add_record(run, robust=None, robust_points=range(0, 40), created="2026-03-01T10:00:00+0000")
    add_record(run, robust=None, robust_points=range(5, 50), created="2026-03-02T10:00:00+0000")
    loaded = report.load_records([tmp_path])
    assert (len(loaded.records), loaded.replaced) == (2, [])
    row = only_row(loaded)
    assert round(row["robust"] * 100) == 35  # points 5 .. 39
    assert "repeat-disagrees" in row["flags"].split("; ")


def test_disagreeing_repeats_without_per_point_verdicts_show_the_lower(tmp_path):
    run = make_run(tmp_path, "r")
    add_record(run, robust=40, created="2026-03-01T10:00:00+0000")
    add_record(run, robust=45, created="2026-03-02T10:00:00+0000")
    row = only_row(report.load_records([tmp_path]))
    assert round(row["robust"] * 100) == 40
    assert "repeat-disagrees" in row["flags"]


# ---------------------------------------------------------------------------------------
# What every row shows


def test_flags_of_records_outside_the_winning_point_set_stay_on_the_row(tmp_path):
    run = make_run(tmp_path, "r")
    add_record(run, robust=None, robust_points=range(40), flags=["randomised"])
    add_record(run, robust=None, robust_points=range(30), first=100)  # other points, lower
    row = only_row(report.load_records([tmp_path]))
    assert round(row["robust"] * 100) == 30
    assert row["flags"] == "randomised"


@pytest.mark.parametrize("version, shown", [("standard", "standard"), ("rand", "rand")])
def test_each_row_names_the_autoattack_version_it_ran(tmp_path, version, shown):
    add_record(make_run(tmp_path, "r"), robust=40, attacks=("autoattack",), version=version)
    row = only_row(report.load_records([tmp_path]))
    assert row["autoattack_version"] == shown
    assert row["attacks"] == f"autoattack({shown})"
    (md,) = report.write_report(report.load_records([tmp_path]), tmp_path / "out", ["md"])
    assert f"autoattack({shown})" in md.read_text()


def test_a_row_without_autoattack_has_an_empty_version(tmp_path):
    add_record(make_run(tmp_path, "r"), robust=40)
    row = only_row(report.load_records([tmp_path]))
    assert (row["autoattack_version"], row["attacks"]) == ("", "pgd")


def test_the_sanity_pass_disputed_points_and_notes_reach_the_row(tmp_path):
    path = add_record(make_run(tmp_path, "r"), robust=40)
    data = json.loads(path.read_text())
    data["per_attack"][0]["disputed"] = 3
    data["notes"] = ["model is randomised: judged over 8 draws"]
    data["sanity"] = {"n_points": 50, "attack": {"name": "pgd", "steps": 100},
                      "extra_broken": 2, "only_protocol": 0, "p_value": 0.25,
                      "large_eps": 0.5, "large_eps_attack": {"name": "pgd"},
                      "large_eps_robust": 0, "large_eps_attacked": 50}
    path.write_text(json.dumps(data))
    loaded = report.load_records([tmp_path])
    row = only_row(loaded)
    assert row["sanity"] == "2/50 more broken"
    assert row["disputed"] == 3
    assert row["notes"] == "model is randomised: judged over 8 draws"
    (md, csv) = report.write_report(loaded, tmp_path / "out", ["md", "csv"])
    text = md.read_text()
    assert "2/50 more broken" in text and "judged over 8 draws" in text
    assert report.read_csv(csv).loc[0, "sanity"] == "2/50 more broken"


def test_a_row_without_a_sanity_pass_says_so(tmp_path):
    add_record(make_run(tmp_path, "r"), robust=40)
    assert only_row(report.load_records([tmp_path]))["sanity"] == "not run"


def test_the_seed_table_carries_the_flags_of_every_seed(tmp_path):
    add_record(make_run(tmp_path, "s0", seed=0), robust=40)
    add_record(make_run(tmp_path, "s1", seed=1), robust=46, flags=["weak-eot"])
    (table,) = report.leaderboard(report.load_records([tmp_path])).values()
    agg = report.aggregate_seeds(table)
    assert (agg.loc[0, "n_seeds"], agg.loc[0, "flags"]) == (2, "weak-eot")
    (md,) = report.write_report(report.load_records([tmp_path]), tmp_path / "out", ["md"])
    seeds_part = md.read_text().split("differ only in the seed")[1].split("###")[0]
    assert "weak-eot" in seeds_part


def test_the_pivot_cell_carries_the_flags_of_the_run_it_shows(tmp_path):
    add_record(make_run(tmp_path, "a", defense="kap", seed=0), robust=40)
    add_record(make_run(tmp_path, "b", defense="kap", seed=1), robust=45, flags=["randomised"])
    (md,) = report.write_report(report.load_records([tmp_path]), tmp_path / "out", ["md"])
    pivot_part = md.read_text().split("by defense and architecture")[1]
    assert "45.0% [randomised]" in pivot_part


# ---------------------------------------------------------------------------------------
# Corruption tables


def corruption_record(run, accuracy: dict[str, float], created: str):
    """A corruptions record of run's model: one severity, these accuracies per corruption."""
    n, mean = 100, sum(accuracy.values()) / len(accuracy)
    source = ModelSource(kind="run", run_id=run.name, checkpoint="model.safetensors",
                         weights_sha256="ab" * 32, arch="cnn", defense="standard")
    record = Record(
        schema_version=SCHEMA_VERSION, robench_version="test",
        key=f"corruptions-s1-{len(accuracy)}-{created[:10]}", created=created, model=source,
        dataset="cifar10", norm=CORRUPTIONS, eps=0.0, eps_text="s1", attacks=[CORRUPTIONS],
        selection=Selection(n_examples=n, method="first", seed=0, n_available=1000),
        clean_acc=0.9, robust_acc=mean, robust_ci95=wilson_interval(round(mean * n), n),
        clean_ci95=wilson_interval(90, n), per_attack=[], flags=[], notes=[], seconds=1.0,
        device="cpu", precision="fp32", seed=0, architecture="cnn",
        corruptions=CorruptionResult(source="generated", corruptions=list(accuracy),
                                     severities=[1],
                                     accuracy={k: [v] for k, v in accuracy.items()},
                                     mean_acc=mean))
    return write(record, run / "evals")


def test_a_subset_of_corruptions_gets_its_own_table_and_never_replaces_the_full_set(tmp_path):
    run = make_run(tmp_path, "r")
    corruption_record(run, {"fog": 0.5, "snow": 0.3, "frost": 0.4}, "2026-03-01T10:00:00+0000")
    corruption_record(run, {"fog": 0.5}, "2026-03-02T10:00:00+0000")
    tables = rc.corruption_tables(report.load_records([tmp_path]))
    means = sorted(round(t.loc[0, "mean_corruption_acc"] * 100) for t in tables.values())
    assert means == [40, 50]
    names = {rc.table_name(key) for key in tables}
    headings = {rc.heading(key) for key in tables}
    assert len(names) == 2 and len(headings) == 2
    assert any("fog" in h and "snow" not in h for h in headings)


def test_repeated_corruption_records_of_one_model_show_the_lower_mean(tmp_path):
    run = make_run(tmp_path, "r")
    corruption_record(run, {"fog": 0.4, "snow": 0.3}, "2026-03-01T10:00:00+0000")
    corruption_record(run, {"fog": 0.5, "snow": 0.4}, "2026-03-02T10:00:00+0000")
    (table,) = rc.corruption_tables(report.load_records([tmp_path])).values()
    assert len(table) == 1
    assert math.isclose(table.loc[0, "mean_corruption_acc"], 0.35)
    assert "repeat-disagrees" in table.loc[0, "flags"]

