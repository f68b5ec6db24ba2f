"""`robench report`: leaderboards from result records, printed and written."""

from __future__ import annotations

from pathlib import Path

import typer

from robench.cli.output import stderr, stdout, user_errors

# robench.api and the packages below it are imported inside the command, so that
# `robench --help` and a mistyped flag answer without loading torch.


FORMATS_HELP = "Comma-separated: md, csv, html, json (RobustBench model_info), png."

REPORT_HELP = """Leaderboards from result records: one table per dataset and threat model.

Reads runs/*/evals/*.json (or the record files and run directories given), ranks models by
robust accuracy (AutoAttack when recorded, else the strongest attack set, named), marks rows
whose 95 % interval overlaps the leader's, and writes the formats asked for.

Examples:

  robench report runs/ --out leaderboard/

  robench report runs/ --out leaderboard/ --format md,csv,html,json,png
"""


@user_errors
def report_(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(None, help="Runs directories, run directories or "
                                       "record files. \\[default: runs]"),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write the report files; "
                             "without it, tables are only printed."),
    formats: str = typer.Option("md,csv", "--format", "-f", help=FORMATS_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the tables."),
) -> None:
    from robench import report

    loaded = report.load_records(paths or [Path("runs")])
    for line in loaded.warnings():
        stderr.print(f"warning: {line}", highlight=False, soft_wrap=True)
    if loaded.skipped or loaded.replaced or loaded.disagreeing:
        stderr.print(loaded.summary(), highlight=False, soft_wrap=True)
    if not quiet:
        print_leaderboards(loaded)
    if out is not None:
        written = report.write_report(loaded, out, [f.strip() for f in formats.split(",")
                                                    if f.strip()])
        stderr.print(f"wrote {len(written)} file(s) to {out}", highlight=False)


def print_leaderboards(loaded) -> None:
    """Every table of a report on stdout: the corruption tables, then the Lp ones."""
    from robench import report

    report.render_terminal(report.leaderboard(loaded), stdout, report.corruption_tables(loaded))
