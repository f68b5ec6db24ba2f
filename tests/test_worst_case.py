"""A model's number in a leaderboard: the per-point worst case over its records, never the best.

The records here are written by hand (tests/record_fakes.py), each with per-point verdicts
where a test needs them, so every expected number is a count written in the test.
"""

import json
import math

from record_fakes import add_record, make_run

from robench import report


def row(tmp_path):
    (table,) = report.leaderboard(report.load_records([tmp_path])).values()
    assert len(table) == 1
    return table.iloc[0]


def test_records_on_the_same_points_combine_point_by_point(tmp_path):
    run = make_run(tmp_path, "r")
    add_record(run, robust=0, attacks=("autoattack",), robust_points=range(0, 50))
    add_record(run, robust=0, attacks=("pgd",), robust_points=range(25, 75))
    r = row(tmp_path)
    # 50 robust under each, but only points 25..49 survive both
    assert (r["robust"], r["n"]) == (0.25, 100)
    assert r["attacks"] == "autoattack(standard) & pgd"
    assert r["autoattack"] == 0.50  # AutoAttack's own number, alone


def test_a_clean_miss_in_any_record_is_a_miss(tmp_path):
    run = make_run(tmp_path, "r")
    add_record(run, robust=0, robust_points=range(10), clean_points=range(90))
    add_record(run, robust=0, robust_points=range(5, 15), clean_points=range(5, 95),
               steps=50)  # another protocol, not a repeat of the first
    r = row(tmp_path)
    assert (r["clean"], r["robust"]) == (0.85, 0.05)  # clean 5..89, robust 5..9


def test_where_points_differ_the_lowest_is_shown_and_named(tmp_path):
    run = make_run(tmp_path, "r")
    add_record(run, robust=0, n=100, attacks=("autoattack",), robust_points=range(45))
    add_record(run, robust=0, n=50, first=100, attacks=("pgd",), robust_points=range(20))
    r = row(tmp_path)
    assert (r["robust"], r["n"], r["attacks"]) == (0.40, 50, "pgd")


def test_records_without_per_point_verdicts_take_the_lowest(tmp_path):
    run = make_run(tmp_path, "r")
    add_record(run, robust=45, attacks=("autoattack",))
    add_record(run, robust=40, attacks=("pgd",), robust_points=range(40))
    assert (row(tmp_path)["robust"], row(tmp_path)["attacks"]) == (0.40, "pgd")


def test_autoattack_acc_comes_only_from_the_standard_version(tmp_path):
    add_record(make_run(tmp_path, "rand"), robust=30, attacks=("autoattack",), version="rand")
    add_record(make_run(tmp_path, "custom"), robust=20, attacks=("autoattack",),
               version="custom")
    add_record(make_run(tmp_path, "std"), robust=25, attacks=("autoattack",))
    (table,) = report.leaderboard(report.load_records([tmp_path])).values()
    by_run = table.set_index("run")["autoattack"]
    assert math.isnan(by_run["rand"]) and math.isnan(by_run["custom"])
    assert by_run["std"] == 0.25
    report.write_report(report.load_records([tmp_path]), tmp_path / "out", ["json"])
    info = {name: json.loads((tmp_path / f"out/model_info/digits/Linf/{name}.json")
                             .read_text())["autoattack_acc"] for name in ("rand", "std")}
    assert info == {"rand": None, "std": 0.25}


def test_the_search_precision_is_shown(tmp_path):
    run = make_run(tmp_path, "r")
    add_record(run, robust=0, robust_points=range(40), precision="bf16")
    r = row(tmp_path)
    assert r["precision"] == "bf16"
    md = report.write_report(report.load_records([tmp_path]), tmp_path / "o", ["md"])[0]
    header = next(line for line in md.read_text().splitlines() if line.startswith("| rank"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    body = next(line for line in md.read_text().splitlines() if line.startswith("| 1 |"))
    assert [c.strip() for c in body.strip("|").split("|")][cells.index("search")] == "bf16"
