"""`robench list`: what the registries hold, as tables or JSON."""

from __future__ import annotations

import difflib
import json
import sys
from typing import Any

import typer
from rich.table import Table

from robench.cli.output import stdout, user_errors
from robench.errors import UserError

LIST_HELP = """List what robench knows: datasets, archs, defenses, attacks, recipes.

A pattern filters names shell-style.

Examples:

  robench list

  robench list archs

  robench list archs 'vgg*'

  robench list defenses --json
"""


@user_errors
def list_(
    ctx: typer.Context,
    kind: str = typer.Argument(None, help="datasets, archs, defenses, attacks or recipes "
                               "\\[default: all]."),
    pattern: str = typer.Argument(None, help="Shell-style filter on names, e.g. 'vgg*'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    from robench.registry import REGISTRIES, load_all

    load_all()
    if kind is None:
        kinds = list(REGISTRIES)
    else:
        kind = {k[:-1]: k for k in REGISTRIES}.get(kind, kind)  # accept the singular
        if kind not in REGISTRIES:
            close = difflib.get_close_matches(kind, list(REGISTRIES), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"unknown kind {kind!r}; {hint}known kinds: {', '.join(REGISTRIES)}.")
        kinds = [kind]
    if as_json:
        data = {k: [{"name": e.name, "description": e.description, **_jsonable(e.meta)}
                    for e in REGISTRIES[k].entries(pattern)] for k in kinds}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    for k in kinds:
        entries = REGISTRIES[k].entries(pattern)
        table = Table(title=f"{k} ({len(entries)})", title_justify="left")
        table.add_column("name", style="bold cyan", no_wrap=True)
        meta_keys = sorted({m for e in entries for m in e.meta})
        for m in meta_keys:
            table.add_column(m.replace("_", " "))
        table.add_column("description")
        for e in entries:
            table.add_row(e.name, *[_cell(e.meta.get(m)) for m in meta_keys], e.description)
        stdout.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
            for k, v in meta.items()}
