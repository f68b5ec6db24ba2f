"""Leaderboards from result records: the records are the only source of every row.

A report never re-runs anything and never reads logs: it gathers the JSON records that
`robench eval` wrote (runs/<run-id>/evals/<key>.json), refuses the ones that do not fit the
schema (saying which and why, instead of stopping or half-reading them), keeps the newest of
repeated evaluations, and ranks one row per model for each threat model (dataset, norm, eps).
Each row's robust accuracy is the per-point worst case over every record of the model on the
same points, or the lowest where points differ (robench.report.worst_case), and the table names the
attacks it comes from; `autoattack` is AutoAttack's standard version alone.

Files are written through robench.atomic, so an interrupted report leaves the old file whole.
This package must not import torch (robench.runs does), so a report starts in a second.

The modules, lowest first: `worst_case` (combining records of one model), `loading` (which
records), `tables` (the Lp leaderboards), `display` (their text form), `corruptions` (the
common-corruption leaderboard), `plots`, `formats` (the files), `terminal`.
"""

from robench.report.corruptions import corruption_tables
from robench.report.display import display, heading, table_name
from robench.report.formats import FORMATS, write_report
from robench.report.loading import LoadedRecords, load_records
from robench.report.tables import (
    COLUMNS,
    CSV_DTYPES,
    LEGEND,
    OVERLAP,
    aggregate_seeds,
    leaderboard,
    pivot,
    read_csv,
)
from robench.report.terminal import render_terminal

__all__ = ["COLUMNS", "CSV_DTYPES", "FORMATS", "LEGEND", "OVERLAP", "LoadedRecords",
           "aggregate_seeds", "corruption_tables", "display", "heading", "leaderboard",
           "load_records", "pivot", "read_csv", "render_terminal", "table_name",
           "write_report"]
