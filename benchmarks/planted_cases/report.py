"""Planted cases of issue 29, items 1, 2 and 9 (the report): what `robench report` shows.

    PYTHONPATH=. python benchmarks/planted_cases/report.py

Each case writes hand-made records (tests/record_fakes.py) and reads them back through the
report's public functions, all of which also exist at commit 830c880, so the same file with an
older checkout first on PYTHONPATH gives the "before" column. Takes well under a second.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests"))

from record_fakes import add_record, make_run  # noqa: E402

from robench import records, report  # noqa: E402
from robench.report import corruptions as rc  # noqa: E402


def _row(root: pathlib.Path):
    (table,) = report.leaderboard(report.load_records([root])).values()
    return table.iloc[0]


def fp32_then_bf16(root: pathlib.Path) -> tuple[str, str, str]:
    run = make_run(root, "r")
    add_record(run, robust=None, robust_points=range(40), created="2026-03-01T10:00:00+0000")
    add_record(run, robust=None, robust_points=range(45), precision="bf16",
               created="2026-03-02T10:00:00+0000")
    row = _row(root)
    return ("fp32 record 40/100, later bf16 record 45/100",
            f"robust {row['robust']:.2f}, precision {row['precision']}, "
            f"records {row.get('records', 1)}",
            "robust 0.40, records 2")


def disagreeing_repeat(root: pathlib.Path) -> tuple[str, str, str]:
    run = make_run(root, "r")
    add_record(run, robust=None, robust_points=range(0, 40), created="2026-03-01T10:00:00+0000")
    add_record(run, robust=None, robust_points=range(5, 50), created="2026-03-02T10:00:00+0000")
    row = _row(root)
    return ("the same protocol twice, robust points 0-39 then 5-49",
            f"robust {row['robust']:.2f}, flags '{row['flags']}'",
            "robust 0.35, flagged")


def flag_outside_the_winner(root: pathlib.Path) -> tuple[str, str, str]:
    run = make_run(root, "r")
    add_record(run, robust=None, robust_points=range(40), flags=["randomised"])
    add_record(run, robust=None, robust_points=range(30), first=100)
    row = _row(root)
    return ("a flagged record beside a lower one on other points",
            f"robust {row['robust']:.2f}, flags '{row['flags']}'",
            "robust 0.30, flags 'randomised'")


def autoattack_version(root: pathlib.Path) -> tuple[str, str, str]:
    add_record(make_run(root, "r"), robust=40, attacks=("autoattack",), version="rand")
    row = _row(root)
    return ("AutoAttack's rand version", f"attacks '{row['attacks']}'",
            "attacks 'autoattack(rand)'")


def corruption_subset(root: pathlib.Path) -> tuple[str, str, str]:
    run = make_run(root, "r")
    for created, accuracy in (("2026-03-01T10:00:00+0000", {"fog": .5, "snow": .3, "frost": .4}),
                              ("2026-03-02T10:00:00+0000", {"fog": .5})):
        mean = sum(accuracy.values()) / len(accuracy)
        source = records.ModelSource(kind="run", run_id="r", checkpoint="model.safetensors",
                                     weights_sha256="ab" * 32, arch="cnn", defense="standard")
        records.write(records.Record(
            schema_version=records.SCHEMA_VERSION, robench_version="case",
            key=f"corruptions-{len(accuracy)}", created=created, model=source,
            dataset="cifar10", norm=records.CORRUPTIONS, eps=0.0, eps_text="s1",
            attacks=[records.CORRUPTIONS], selection=records.Selection(
                n_examples=100, method="first", seed=0, n_available=1000),
            clean_acc=0.9, robust_acc=mean, robust_ci95=[0.0, 1.0], clean_ci95=[0.0, 1.0],
            per_attack=[], flags=[], notes=[], seconds=1.0, device="cpu", precision="fp32",
            seed=0, corruptions=records.CorruptionResult(
                source="generated", corruptions=list(accuracy), severities=[1],
                accuracy={k: [v] for k, v in accuracy.items()}, mean_acc=mean)),
            run / "evals")
    tables = rc.corruption_tables(report.load_records([root]))
    shown = ", ".join(f"{t.loc[0, 'mean_corruption_acc']:.2f}" for t in tables.values())
    return ("a 3-corruption mean, then a 1-corruption one",
            f"{len(tables)} table(s), means {shown}", "2 tables, means 0.40 and 0.50")


def cases(workdir: pathlib.Path) -> list[tuple[str, str, str]]:
    out = []
    for case in (fp32_then_bf16, disagreeing_repeat, flag_outside_the_winner,
                 autoattack_version, corruption_subset):
        root = workdir / case.__name__
        root.mkdir(parents=True, exist_ok=True)
        try:
            out.append(case(root))
        except Exception as error:  # an older robench lacks what the case reads
            out.append((case.__name__, f"error: {type(error).__name__}: {error}", ""))
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for row in cases(pathlib.Path(tmp)):
            print(" | ".join(row))
