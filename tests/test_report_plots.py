"""The report's pictures and seed summary: labels that do not overlap and name the method,
training curves from metrics.jsonl, 3-seed aggregation with its spread."""

import json
import struct

import pytest
from record_fakes import add_record, make_run

from robench import report
from robench.report.curves import best_epoch, training_curves
from robench.report.labels import group_labels, spread

PNG = b"\x89PNG\r\n\x1a\n"


# --- label placement ----------------------------------------------------------------------


def test_labels_at_one_height_are_spread_a_gap_apart_in_input_order():
    assert spread([0.0, 0.0, 0.0], gap=0.25) == [0.0, 0.25, 0.5]


def test_labels_far_apart_stay_where_their_points_are():
    assert spread([0.1, 0.9, 0.5], gap=0.1) == [0.1, 0.9, 0.5]


def test_labels_pushed_past_the_top_come_down_from_it():
    assert spread([1.0, 1.0, 0.0], gap=0.25) == [0.75, 1.0, 0.0]


def test_more_labels_than_fit_share_the_height_evenly():
    assert spread([0.5] * 5, gap=0.5) == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("targets", [[0.3, 0.31, 0.32, 0.9, 0.0, 0.0, 0.95, 1.0]])
def test_spread_labels_never_overlap_and_keep_the_order_of_their_points(targets):
    heights = spread(targets, gap=0.05)
    ranked = sorted(range(len(targets)), key=lambda i: (targets[i], i))
    ordered = [heights[i] for i in ranked]
    assert all(b - a >= 0.05 - 1e-12 for a, b in zip(ordered, ordered[1:], strict=False))
    assert all(0.0 <= h <= 1.0 for h in heights)


def test_points_are_labelled_by_defense_and_by_arch_only_when_archs_differ(tmp_path):
    for name, defense, arch in (("a", "pgd-at", "cnn"), ("b", "trades", "cnn")):
        add_record(make_run(tmp_path / "one", name, defense=defense, arch=arch), robust=30)
    for name, defense, arch in (("c", "pgd-at", "cnn"), ("d", "pgd-at", "resnet18")):
        add_record(make_run(tmp_path / "two", name, defense=defense, arch=arch), robust=30)
    (one,) = report.leaderboard(report.load_records([tmp_path / "one"])).values()
    (two,) = report.leaderboard(report.load_records([tmp_path / "two"])).values()
    assert sorted(group_labels(one)) == ["pgd-at", "trades"]
    assert sorted(group_labels(two)) == ["pgd-at / cnn", "pgd-at / resnet18"]


# --- training curves ----------------------------------------------------------------------


def write_best(run, epoch):
    """A safetensors file with no tensors and robench's metadata (the format's header)."""
    header = json.dumps({"__metadata__": {"epoch": str(epoch), "selected_on": "validation"}})
    (run / "best.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode())


def write_metrics(run, rows):
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def epoch_row(epoch, **more):
    return {"epoch": epoch, "train_loss": 2.0 / epoch, "train_acc": 0.1 * epoch,
            "val_acc": 0.2 * epoch, "val_robust_acc": 0.05 * epoch, "val_fgsm_acc": 0.1 * epoch,
            **more}


def test_the_best_epoch_is_read_from_best_safetensors_own_metadata(tmp_path):
    write_best(tmp_path, 7)
    assert best_epoch(tmp_path) == 7
    (tmp_path / "best.safetensors").write_bytes(b"\x00\x01")
    assert best_epoch(tmp_path) is None


def test_training_curves_are_drawn_per_run_that_has_metrics(tmp_path):
    with_metrics = make_run(tmp_path / "runs", "fast-at-run", defense="fast-at")
    write_metrics(with_metrics, [epoch_row(1), epoch_row(2), epoch_row(3, val_robust_acc=0.0,
                                                                        catastrophic_overfitting=True)])
    write_best(with_metrics, 2)
    add_record(with_metrics, robust=30)
    add_record(make_run(tmp_path / "runs", "no-metrics"), robust=20)
    paths = training_curves(report.load_records([tmp_path / "runs"]), tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in paths] == [
        "curves/fast-at-run.png"]
    assert paths[0].read_bytes().startswith(PNG)


def test_a_cut_short_metrics_line_ends_the_curve_instead_of_failing(tmp_path):
    run = make_run(tmp_path / "runs", "r")
    (run / "metrics.jsonl").write_text(json.dumps(epoch_row(1)) + "\n{\"epoch\": 2, \"tra")
    add_record(run, robust=30)
    (path,) = training_curves(report.load_records([tmp_path / "runs"]), tmp_path / "out")
    assert path.read_bytes().startswith(PNG)


def test_png_reports_include_the_curves_beside_the_leaderboard_plots(tmp_path):
    run = make_run(tmp_path / "runs", "r")
    write_metrics(run, [epoch_row(1), epoch_row(2)])
    add_record(run, robust=30)
    written = report.write_report(report.load_records([tmp_path / "runs"]), tmp_path / "out",
                                  ["png"])
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in written)
    assert names == ["curves/r.png", "digits-Linf-0.2-clean-vs-robust.png",
                     "digits-Linf-0.2-cost-vs-robust.png"]


# --- seeds ----------------------------------------------------------------------------------


def test_three_seeds_show_mean_std_each_seed_and_the_spread(tmp_path):
    for seed, (robust, aa) in enumerate([(40, 41), (46, 46), (49, 50)]):
        run = make_run(tmp_path, f"s{seed}", seed=seed, defense="pgd-at")
        add_record(run, robust=robust, attacks=("pgd",))
        add_record(run, robust=aa, attacks=("autoattack",))
    (table,) = report.leaderboard(report.load_records([tmp_path])).values()
    agg = report.aggregate_seeds(table)
    row = agg.iloc[0]
    assert (row["n_seeds"], row["seeds"]) == (3, "0,1,2")
    assert row["robust_by_seed"] == [0.40, 0.46, 0.49]  # per-point worst: pgd on each seed
    assert (row["robust_min"], row["robust_max"]) == (0.40, 0.49)
    assert row["autoattack_mean"] == pytest.approx((0.41 + 0.46 + 0.50) / 3)
    (md,) = report.write_report(report.load_records([tmp_path]), tmp_path / "out", ["md"])
    text = md.read_text()
    assert "| 40.0 / 46.0 / 49.0 | 9.0 |" in text
    assert text.index("Runs that differ only in the seed") < text.index("Best robust accuracy")


def add_corruption_record(run, mean_acc):
    """A corruptions record with two corruptions at one severity, mean `mean_acc`."""
    path = add_record(run, robust=50, clean=90)
    data = json.loads(path.read_text())
    data.update(norm="corruptions", eps=0.0, eps_text="s1", attacks=["corruptions"],
                per_attack=[], robust_acc=mean_acc, autoattack_acc=None, points=None,
                key=data["key"].replace("pgd", "corruptions"),
                corruptions={"source": "generated", "corruptions": ["fog", "snow"],
                             "severities": [1], "accuracy": {"fog": [mean_acc],
                                                             "snow": [mean_acc]},
                             "mean_acc": mean_acc})
    path.write_text(json.dumps(data))


def test_corruption_leaderboards_summarise_seeds_too(tmp_path):
    for seed, acc in enumerate([0.80, 0.86, 0.83]):
        add_corruption_record(make_run(tmp_path, f"s{seed}", seed=seed), acc)
    (md,) = report.write_report(report.load_records([tmp_path]), tmp_path / "out", ["md"])
    section = md.read_text().split("common corruptions")[1]
    assert "Runs that differ only in the seed" in section
    assert "| 83.0% ± 3.0 | 80.0 / 86.0 / 83.0 | 6.0 |" in section


def test_models_at_zero_robust_accuracy_plot_with_their_intervals(tmp_path):
    """Wilson's lower end at 0 of n is a rounding error from 0: no negative error bar."""
    for name in ("a", "b", "c"):
        run = make_run(tmp_path, name, defense="standard")
        for eps in (0.1, 0.2):
            add_record(run, robust=0, clean=100, eps=eps)
    written = report.write_report(report.load_records([tmp_path]), tmp_path / "out", ["png"])
    assert len(written) == 5 and all(p.read_bytes().startswith(PNG) for p in written)
