"""The report's files: Markdown, CSV, HTML, RobustBench-style model_info JSON and plots.

Files are written through robench.atomic, so an interrupted report leaves the old file whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from robench.atomic import atomic_write_json, atomic_write_text
from robench.errors import UserError
from robench.report import corruptions as rc
from robench.report.curves import training_curves
from robench.report.display import (
    display,
    display_notes,
    display_pivot,
    display_seeds,
    heading,
    slug,
    table_name,
)
from robench.report.loading import LoadedRecords
from robench.report.plots import heat_maps, plots
from robench.report.tables import LEGEND, aggregate_seeds, leaderboard, pivot, pivot_flags

FORMATS = ("md", "csv", "html", "json", "png")
SEEDS_TITLE = "Runs that differ only in the seed"
SEEDS_LEGEND = ("mean ± sample standard deviation over the seeds (ddof 1); robust per seed "
                "in the order of the seeds; spread: highest minus lowest seed, in points.")


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(cell, frame.columns)) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _sections(tables: dict, corruption_tables: dict | None = None
              ) -> list[tuple[str, list[tuple[str, pd.DataFrame]]]]:
    """Per table: its heading and (title, display frame) parts, shared by md and html."""
    out = []
    for key, table in tables.items():
        parts = [("", display(table))]
        agg = aggregate_seeds(table)
        if (agg["n_seeds"] > 1).any():
            parts.append((SEEDS_TITLE, display_seeds(agg)))
        parts.append(("Best robust accuracy by defense and architecture",
                      display_pivot(pivot(table), pivot_flags(table))))
        notes = display_notes(table)
        if len(notes):
            parts.append(("Notes of the records behind the rows", notes))
        out.append((heading(key, table), parts))
    for key, table in (corruption_tables or {}).items():
        parts = [("", rc.display(table))]
        agg = rc.aggregate_seeds(table)
        if (agg["n_seeds"] > 1).any():
            parts.append((SEEDS_TITLE, rc.display_seeds(agg)))
        out.append((rc.heading(key), parts))
    return out


def _legend(title: str) -> str:
    return rc.LEGEND if "common corruptions" in title else LEGEND


def _markdown(loaded: LoadedRecords, sections) -> str:
    lines = ["# robench leaderboard", "", loaded.summary(), ""]
    lines += [f"- {w}" for w in loaded.warnings()] + ([""] if loaded.warnings() else [])
    for title, parts in sections:
        lines += [f"## {title}", ""]
        for sub, frame in parts:
            lines += ([f"### {sub}", ""] if sub else []) + [_markdown_table(frame), ""]
            if not sub:
                lines += [_legend(title), ""]
            elif sub == SEEDS_TITLE:
                lines += [SEEDS_LEGEND, ""]
    return "\n".join(lines)


def _html(loaded: LoadedRecords, sections) -> str:
    """A static page (no JavaScript): escaped pandas tables under the same headings."""
    from html import escape

    body = [f"<h1>robench leaderboard</h1><p>{escape(loaded.summary())}</p>"]
    body += [f"<p>{escape(w)}</p>" for w in loaded.warnings()]
    for title, parts in sections:
        body.append(f"<h2>{escape(title)}</h2>")
        for sub, frame in parts:
            body.append(f"<h3>{escape(sub)}</h3>" if sub else "")
            body.append(frame.to_html(index=False, escape=True, border=0))
            body.append("" if sub else f"<p>{escape(_legend(title))}</p>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>robench leaderboard"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def _model_infos(key, table, folder: Path):
    """RobustBench-style model_info per run (accuracies as fractions, like the records).

    RobustBench keeps one eps per threat model; write_report puts each eps in its own
    folder, eps-<slug>, when a (dataset, norm) has several, so none overwrites another.
    """
    dataset, norm, eps = key
    for row in table.itertuples(index=False):
        yield folder / f"{slug(row.run)}.json", {
            "name": row.run, "defense": row.defense, "architecture": row.arch,
            "dataset": dataset, "threat_model": norm, "eps": float(eps),
            "eps_text": table.attrs.get("eps_text", f"{eps:g}"),
            "clean_acc": float(row.clean), "robust_acc": float(row.robust),
            "autoattack_acc": None if pd.isna(row.autoattack) else float(row.autoattack),
            "attacks": row.attacks, "n_examples": int(row.n),
            "flags": [f for f in row.flags.split("; ") if f],
            "additional_data": False, "seed": None if pd.isna(row.seed) else int(row.seed),
            "train_seconds": None if pd.isna(row.train_seconds) else float(row.train_seconds),
            "train_peak_memory_bytes": None if pd.isna(row.train_peak_memory)
            else int(row.train_peak_memory)}


def _write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj)
    return path


def write_report(loaded: LoadedRecords, out: Path,
                 formats: Sequence[str] = ("md", "csv")) -> list[Path]:
    """Write the report in each format under `out`; returns the paths written.

    md: report.md; csv: <dataset>-<norm>-<eps slug>.csv per table (read back with read_csv);
    html: report.html; json: model_info/<dataset>/<norm>/<run>.json; png: plots, and the
    training curves of each run in curves/<run>.png.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"unknown report format {unknown[0]!r}; choose from "
                        f"{', '.join(FORMATS)}.")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write the report to {str(out)!r} "
                        f"({exc.strerror or exc}).") from None
    tables, corruption_tables = leaderboard(loaded), rc.corruption_tables(loaded)
    sections = _sections(tables, corruption_tables) if {"md", "html"} & set(formats) else []
    eps_count = Counter(key[:2] for key in tables)
    written: list[Path] = []
    for fmt in dict.fromkeys(formats):
        if fmt == "md":
            atomic_write_text(out / "report.md", _markdown(loaded, sections))
            written.append(out / "report.md")
        elif fmt == "html":
            atomic_write_text(out / "report.html", _html(loaded, sections))
            written.append(out / "report.html")
        elif fmt == "csv":
            for key, table in tables.items():
                path = out / f"{table_name(key, table)}.csv"
                atomic_write_text(path, table.to_csv(index=False))
                written.append(path)
            for key, table in corruption_tables.items():
                path = out / f"{rc.table_name(key)}.csv"
                atomic_write_text(path, table.to_csv(index=False))
                written.append(path)
        elif fmt == "json":
            for key, table in tables.items():
                folder = out / "model_info" / slug(key[0]) / slug(key[1])
                if eps_count[key[:2]] > 1:
                    folder /= f"eps-{slug(table.attrs.get('eps_text', f'{key[2]:g}'))}"
                written += [_write_json(p, info) for p, info in _model_infos(key, table, folder)]
        elif fmt == "png":
            written += (plots(loaded, tables, out) + heat_maps(corruption_tables, out)
                        + training_curves(loaded, out))
    return written
