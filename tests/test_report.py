"""Leaderboards from result records (robench.report): built from small hand-made records."""

import itertools
import json
import math
import re

import pandas as pd
import pytest
from record_fakes import add_record, make_run
from rich.console import Console

from robench import report
from robench.errors import UserError
from robench.records import ModelSource, wilson_interval


def only_table(loaded):
    tables = report.leaderboard(loaded)
    assert len(tables) == 1
    return next(iter(tables.values()))


@pytest.fixture
def three_runs(tmp_path):
    """Three digits runs at Linf 0.2, robust 30 %, 50 %, 40 % (PGD, 100 points)."""
    for name, robust, seed in (("a", 30, 0), ("b", 50, 1), ("c", 40, 2)):
        add_record(make_run(tmp_path, name, seed=seed, defense=f"def-{name}"), robust=robust)
    return tmp_path


# ---------------------------------------------------------------------------------------
# Ranking


def test_models_are_ranked_by_robust_accuracy_then_clean(tmp_path):
    add_record(make_run(tmp_path, "low"), robust=20)
    add_record(make_run(tmp_path, "high-clean"), robust=50, clean=95)
    add_record(make_run(tmp_path, "high"), robust=50, clean=80)
    table = only_table(report.load_records([tmp_path]))
    assert list(table["run"]) == ["high-clean", "high", "low"]
    assert list(table["rank"]) == [1, 2, 3]
    assert list(table.columns) == report.COLUMNS


def test_a_lower_number_from_another_attack_beats_autoattack_and_is_named(tmp_path):
    run = make_run(tmp_path, "r")
    add_record(run, robust=30, attacks=("pgd",))
    add_record(run, robust=35, attacks=("autoattack",))
    row = only_table(report.load_records([tmp_path])).iloc[0]
    assert (row["attacks"], row["robust"]) == ("pgd", 0.30)
    assert row["autoattack"] == 0.35  # AutoAttack's own number stays in its column


def test_without_autoattack_the_strongest_attack_set_is_used_and_named(tmp_path):
    run = make_run(tmp_path, "r")
    add_record(run, robust=50, attacks=("pgd",))
    add_record(run, robust=40, attacks=("pgd", "fgsm"))
    add_record(run, robust=60, attacks=("fgsm",))
    table = only_table(report.load_records([tmp_path]))
    assert len(table) == 1
    assert (table.loc[0, "attacks"], table.loc[0, "robust"]) == ("pgd+fgsm", 0.40)


def test_overlaps_leader_follows_the_wilson_intervals(tmp_path):
    leader, close, far = 50, 45, 20
    assert wilson_interval(close, 100)[1] >= wilson_interval(leader, 100)[0]  # overlapping
    assert wilson_interval(far, 100)[1] < wilson_interval(leader, 100)[0]  # separated
    for name, robust in (("leader", leader), ("close", close), ("far", far)):
        add_record(make_run(tmp_path, name), robust=robust)
    table = only_table(report.load_records([tmp_path])).set_index("run")
    assert table.loc["close", "overlaps_leader"]
    assert not table.loc["far", "overlaps_leader"]
    shown = report.display(table.reset_index()).set_index("run")["robust"]
    assert report.OVERLAP in shown["close"] and report.OVERLAP not in shown["far"]


def test_train_seconds_and_seed_come_from_the_run_directory_and_are_missing_for_external(
        tmp_path):
    add_record(make_run(tmp_path, "r", seed=7, train_seconds=33.0), robust=40)
    ext = ModelSource(kind="external", file="/m/model.py", factory="make", checkpoint="w.pt",
                      weights_sha256="cd" * 32, arch="wrn", defense="external")
    add_record(tmp_path / "external-wrn", robust=30, source=ext)
    table = only_table(report.load_records([tmp_path])).set_index("run")
    assert (table.loc["r", "train_seconds"], table.loc["r", "seed"]) == (33.0, 7)
    assert math.isnan(table.loc["external-wrn", "train_seconds"])
    assert pd.isna(table.loc["external-wrn", "seed"])


def test_best_and_final_checkpoints_of_a_run_are_different_models(tmp_path):
    run = make_run(tmp_path, "r")
    add_record(run, robust=40)
    add_record(run, robust=45, checkpoint="best.safetensors")
    loaded = report.load_records([tmp_path])
    assert loaded.replaced == []
    assert sorted(only_table(loaded)["run"]) == ["r", "r@best"]


# ---------------------------------------------------------------------------------------
# Loading: what is read, skipped, replaced


def test_records_are_found_from_a_file_a_run_directory_or_a_directory_of_runs(three_runs):
    by_root = report.load_records([three_runs])
    assert len(by_root.records) == 3 and by_root.skipped == []  # env.json is not a record
    assert len(report.load_records([three_runs / "a"]).records) == 1
    one_file = next((three_runs / "b" / "evals").glob("*.json"))
    assert len(report.load_records([one_file, three_runs / "b"]).records) == 1


def test_corrupt_and_truncated_records_are_skipped_and_named_with_the_count(three_runs,
                                                                            tmp_path):
    evals = three_runs / "a" / "evals"
    good = next(evals.glob("*.json")).read_text()
    (evals / "corrupt.json").write_text("{this is not json")
    (evals / "truncated.json").write_text(good[: len(good) // 2])
    loaded = report.load_records([three_runs])
    assert {p.name for p, _ in loaded.skipped} == {"corrupt.json", "truncated.json"}
    assert all("JSON" in why for _, why in loaded.skipped)
    assert len(loaded.records) == 3
    md = (report.write_report(loaded, tmp_path / "out", ["md"])[0]).read_text()
    assert "2 skipped" in md and "corrupt.json" in md and "truncated.json" in md


def test_a_record_failing_validation_is_skipped_with_the_reason(three_runs):
    path = next((three_runs / "a" / "evals").glob("*.json"))
    data = json.loads(path.read_text())
    data["robust_acc"] = 0.99  # more than clean accuracy: impossible
    path.write_text(json.dumps(data))
    loaded = report.load_records([three_runs])
    assert [(p.name, "exceeds clean accuracy" in why) for p, why in loaded.skipped] == [
        (path.name, True)]


def test_a_record_of_another_schema_version_is_refused_with_the_reason(three_runs):
    path = next((three_runs / "a" / "evals").glob("*.json"))
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 0}))
    loaded = report.load_records([three_runs])
    assert loaded.skipped == [(path.resolve(), "schema version 0, this robench reads 1, 2, 3, "
                                               "4 and 5")]


def test_an_identical_repeat_is_collapsed_and_named_another_protocol_is_kept(tmp_path):
    run = make_run(tmp_path, "r")
    newer = add_record(run, robust=40, created="2026-03-02T10:00:00+0000")
    older = add_record(run, robust=40, created="2026-03-01T10:00:00+0000")
    add_record(run, robust=45, steps=100)  # other attack parameters: another protocol
    loaded = report.load_records([tmp_path])
    assert loaded.replaced == [(older.resolve(), newer.resolve())]
    assert len(loaded.records) == 2
    assert "1 identical repeat collapsed" in loaded.summary()
    assert any(str(older.resolve()) in w for w in loaded.warnings())


@pytest.mark.parametrize("paths", [[], ["empty"]])
def test_no_records_is_a_user_error_saying_there_is_nothing_to_report(tmp_path, paths):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no result records found.*robench eval first"):
        report.load_records([tmp_path / p for p in paths])


# ---------------------------------------------------------------------------------------
# Aggregates


def test_seeds_aggregate_as_mean_and_std(tmp_path):
    for seed, (robust, clean) in enumerate([(40, 90), (46, 92), (49, 97)]):
        add_record(make_run(tmp_path, f"s{seed}", seed=seed), robust=robust, clean=clean)
    add_record(make_run(tmp_path, "longer", epochs=10), robust=60)  # another config
    agg = report.aggregate_seeds(only_table(report.load_records([tmp_path])))
    assert list(agg["n_seeds"]) == [1, 3]
    three = agg.iloc[1]
    # mean 45, deviations -5, 1, 4: sample variance (25 + 1 + 16) / 2 = 21
    assert three["robust_mean"] == pytest.approx(0.45)
    assert three["robust_std"] == pytest.approx(math.sqrt(21) / 100)
    # clean: mean 93, deviations -3, -1, 4: variance (9 + 1 + 16) / 2 = 13
    assert (three["clean_mean"], three["clean_std"]) == pytest.approx((0.93,
                                                                        math.sqrt(13) / 100))
    assert three["seeds"] == "0,1,2"
    assert math.isnan(agg.iloc[0]["robust_std"])
    (md,) = report.write_report(report.load_records([tmp_path]), tmp_path / "out", ["md"])
    assert "| 45.0% ± 4.6 |" in md.read_text()


def test_the_seed_section_appears_only_when_a_configuration_has_several_seeds(three_runs,
                                                                              tmp_path):
    (md,) = report.write_report(report.load_records([three_runs]), tmp_path / "out", ["md"])
    assert "differ only in the seed" not in md.read_text()


def test_pivot_is_defense_by_arch_with_the_best_run_per_cell(tmp_path):
    add_record(make_run(tmp_path, "a", defense="pgd-at", seed=0), robust=40)
    add_record(make_run(tmp_path, "b", defense="pgd-at", seed=1), robust=45)
    add_record(make_run(tmp_path, "c", defense="standard"), robust=5)
    piv = report.pivot(only_table(report.load_records([tmp_path])))
    assert piv.loc["pgd-at", "cnn"] == 0.45 and piv.loc["standard", "cnn"] == 0.05


# ---------------------------------------------------------------------------------------
# Output files


def test_csv_round_trip_gives_back_the_same_frame(tmp_path):
    add_record(make_run(tmp_path, "r", seed=3), robust=41, flags=["a, b", "c; d"],
               eps=8 / 255, eps_text="8/255")
    ext = ModelSource(kind="external", file="/m/x.py", weights_sha256="ef" * 32, arch="wrn",
                      defense="external")
    add_record(tmp_path / "ext", robust=33, source=ext, eps=8 / 255, eps_text="8/255")
    table = only_table(report.load_records([tmp_path]))
    (path,) = report.write_report(report.load_records([tmp_path]), tmp_path / "out", ["csv"])
    assert path.name == "digits-Linf-8_255.csv"
    pd.testing.assert_frame_equal(report.read_csv(path), table)


def test_markdown_renders_github_tables_with_one_row_per_model(three_runs, tmp_path):
    (md_path,) = report.write_report(report.load_records([three_runs]), tmp_path / "out",
                                     ["md"])
    lines = md_path.read_text().splitlines()
    start = lines.index("## digits — Linf eps 0.2") + 2
    header, separator, *rest = lines[start:]
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), rest))
    n_columns = header.count("|") - 1
    assert re.fullmatch(r"\|(---\|)+", separator) and separator.count("---") == n_columns
    assert len(rows) == 3 and all(row.count("|") - 1 == n_columns for row in rows)
    assert "| 1 | b |" in rows[0] and "50.0%" in rows[0] and "[40.4, 59.6]" in rows[0]
    assert "3 records read, 0 skipped" in md_path.read_text()


def test_html_is_a_static_page_with_the_tables(three_runs, tmp_path):
    (page,) = report.write_report(report.load_records([three_runs]), tmp_path / "o", ["html"])
    html = page.read_text()
    assert "<script" not in html.lower() and "javascript" not in html.lower()
    assert html.count("<table") >= 2 and "def-b" in html


def test_model_info_json_has_the_robustbench_keys_as_numbers(tmp_path):
    add_record(make_run(tmp_path, "aa"), robust=30, attacks=("autoattack",))
    add_record(make_run(tmp_path, "pgd"), robust=20)
    paths = report.write_report(report.load_records([tmp_path]), tmp_path / "out", ["json"])
    assert {p.relative_to(tmp_path / "out").as_posix() for p in paths} == {
        "model_info/digits/Linf/aa.json", "model_info/digits/Linf/pgd.json"}
    aa = json.loads((tmp_path / "out/model_info/digits/Linf/aa.json").read_text())
    for key in ("clean_acc", "autoattack_acc", "eps", "robust_acc"):
        assert isinstance(aa[key], float), key
    assert (aa["dataset"], aa["architecture"], aa["additional_data"]) == ("digits", "cnn", False)
    assert aa["autoattack_acc"] == 0.30 and aa["n_examples"] == 100
    pgd = json.loads((tmp_path / "out/model_info/digits/Linf/pgd.json").read_text())
    assert pgd["autoattack_acc"] is None and pgd["attacks"] == "pgd"


def test_png_plots_are_written_as_valid_pngs(tmp_path):
    run = make_run(tmp_path, "r")
    add_record(run, robust=40, eps=0.1)
    add_record(run, robust=20, eps=0.2)
    paths = report.write_report(report.load_records([tmp_path]), tmp_path / "out", ["png"])
    assert sorted(p.name for p in paths) == ["digits-Linf-0.1-clean-vs-robust.png",
                                             "digits-Linf-0.1-cost-vs-robust.png",
                                             "digits-Linf-0.2-clean-vs-robust.png",
                                             "digits-Linf-0.2-cost-vs-robust.png",
                                             "digits-Linf-robust-vs-eps.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in paths)


def test_an_unknown_format_is_refused_naming_it_and_the_valid_ones(three_runs, tmp_path):
    with pytest.raises(UserError, match=r"'pdf'.*md, csv, html, json, png"):
        report.write_report(report.load_records([three_runs]), tmp_path / "o", ["md", "pdf"])
    assert not (tmp_path / "o").exists()


def test_an_interrupted_write_leaves_no_partial_file_and_the_old_one_whole(
        three_runs, tmp_path, monkeypatch):
    out = tmp_path / "out"
    (md_path,) = report.write_report(report.load_records([three_runs]), out, ["md"])
    before = md_path.read_text()
    add_record(three_runs / "a", robust=10, eps=0.3)  # a new table, so a new CSV file

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("robench.atomic.os.fsync", disk_full)  # after the bytes are written
    with pytest.raises(OSError):
        report.write_report(report.load_records([three_runs]), out, ["csv", "md"])
    assert [p.name for p in out.iterdir()] == ["report.md"]  # no temporary, no partial CSV
    assert md_path.read_text() == before


def test_render_terminal_shows_each_table(three_runs):
    console = Console(record=True, width=200)
    report.render_terminal(report.leaderboard(report.load_records([three_runs])), console)
    text = console.export_text()
    assert "digits — Linf eps 0.2" in text and "def-b" in text and "50.0%" in text
