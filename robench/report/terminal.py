"""Leaderboards on a terminal, as rich tables."""

from __future__ import annotations

import pandas as pd
from rich.table import Table

from robench.report import corruptions as rc
from robench.report.display import display, heading
from robench.report.tables import LEGEND


def render_terminal(tables: dict[tuple[str, str, float], pd.DataFrame], console,
                    corruption_tables: dict | None = None) -> None:
    """Each leaderboard as a rich table, with the overlap legend once at the end."""
    for key, table in (corruption_tables or {}).items():
        shown = rc.display(table, per_corruption=False)
        rich_table = Table(title=rc.heading(key), caption="per-corruption accuracy: in the "
                           "Markdown and CSV report (--out)")
        for col in shown.columns:
            rich_table.add_column(col, justify="left" if col in ("run", "defense", "arch")
                                  else "right")
        for row in shown.itertuples(index=False):
            rich_table.add_row(*map(str, row))
        console.print(rich_table)
    for key, table in tables.items():
        shown = display(table)
        rich_table = Table(title=heading(key, table))
        for col in shown.columns:
            rich_table.add_column(col, justify="left" if col in (
                "run", "defense", "arch", "attacks", "flags") else "right")
        for row in shown.itertuples(index=False):
            rich_table.add_row(*map(str, row))
        console.print(rich_table)
    if tables:
        console.print(LEGEND, markup=False)
