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

LIST_HELP = """List what robench knows: datasets, archs, defenses, attacks, recipes; and
RobustBench's model zoo (`zoo`, with the robustbench package installed).

A pattern filters names shell-style.

Examples:

  robench list

  robench list archs

  robench list archs 'vgg*'

  robench list defenses --json

  robench list zoo '*R18*' --dataset cifar10 --threat Linf
"""


@user_errors
def list_(
    ctx: typer.Context,
    kind: str = typer.Argument(None, help="datasets, archs, defenses, attacks or recipes "
                               "\\[default: all]."),
    pattern: str = typer.Argument(None, help="Shell-style filter on names, e.g. 'vgg*'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    dataset: str = typer.Option("cifar10", "--dataset", help="zoo: cifar10, cifar100 or "
                                "imagenet."),
    threat: str = typer.Option("Linf", "--threat", help="zoo: Linf, L2 or corruptions."),
    model_dir: str = typer.Option("models", "--model-dir", help="zoo: where RobustBench's "
                                  "checkpoints are looked for."),
) -> None:
    from robench.registry import REGISTRIES, load_all

    if kind == "zoo":
        _list_zoo(pattern, dataset, threat, model_dir, as_json)
        return
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


def _list_zoo(pattern: str | None, dataset: str, threat: str, model_dir: str,
              as_json: bool) -> None:
    """RobustBench's models for one dataset and threat model, and which checkpoints are here."""
    import fnmatch

    from robench.targets.zoo import checkpoint_path, model_zoo

    zoo = model_zoo()
    if dataset not in zoo:
        raise UserError(f"RobustBench has no dataset {dataset!r}; its datasets are "
                        f"{', '.join(sorted(zoo))}.")
    if threat not in zoo[dataset]:
        raise UserError(f"RobustBench has no {threat!r} models for {dataset}; its threat "
                        f"models there are {', '.join(sorted(zoo[dataset]))}.")
    rows = []
    for name, entry in zoo[dataset][threat].items():
        if pattern and not fnmatch.fnmatchcase(name, pattern):
            continue
        gid = entry.get("gdrive_id")
        kind = ("ensemble" if isinstance(gid, list) else "timm/torchvision" if gid is None
                else "")
        here = checkpoint_path(name, dataset, threat, None, model_dir).is_file()
        rows.append({"name": name, "checkpoint_here": here, "unsupported": kind})
    if as_json:
        sys.stdout.write(json.dumps({"zoo": rows}, indent=2) + "\n")
        return
    table = Table(title=f"RobustBench {dataset} {threat} ({len(rows)})", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column(f"in {model_dir}/")
    table.add_column("not loadable by robench")
    for row in rows:
        table.add_row(row["name"], _cell(row["checkpoint_here"]), row["unsupported"])
    stdout.print(table)
