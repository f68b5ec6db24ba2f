"""Leaderboards from result records: the records are the only source of every row.

A report never re-runs anything and never reads logs: it gathers the JSON records that
`robench eval` wrote (runs/<run-id>/evals/<key>.json), refuses the ones that do not fit the
schema (saying which and why, instead of stopping or half-reading them), keeps the newest of
repeated evaluations, and ranks one row per model for each threat model (dataset, norm, eps).
Each row's robust accuracy is the per-point worst case over every record of the model on the
same points, or the lowest where points differ (robench.worst_case), and the table names the
attacks it comes from; `autoattack` is AutoAttack's standard version alone.

Files are written through robench.atomic, so an interrupted report leaves the old file whole.
This module must not import torch (robench.runs does), so a report starts in a second.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robench.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from robench.errors import UserError
from robench.records import (
    CORRUPTIONS,
    EVALS,
    READABLE_VERSIONS,
    Record,
    readable_versions,
    validate,
)
from robench.worst_case import autoattack_accuracy, worst_case

FORMATS = ("md", "csv", "html", "json", "png")
COLUMNS = ["rank", "defense", "arch", "clean", "robust", "ci_low", "ci_high", "attacks", "n",
           "flags", "precision", "autoattack", "train_seconds", "seed", "run",
           "overlaps_leader", "config"]
# What pandas.read_csv needs to give a leaderboard CSV back exactly (see read_csv below).
CSV_DTYPES = {"rank": "int64", "defense": "str", "arch": "str", "clean": "float64",
              "robust": "float64", "ci_low": "float64", "ci_high": "float64", "attacks": "str",
              "n": "int64", "flags": "str", "precision": "str", "autoattack": "float64",
              "train_seconds": "float64", "seed": "Int64",
              "run": "str", "overlaps_leader": "bool", "config": "str"}
OVERLAP = "≈"
LEGEND = (f"robust: the per-point worst case over every record of the model on the same "
          f"points (attacks joined by '&'), or the lowest where points differ; AutoAttack: "
          f"its standard version alone; search: the precision attacks searched in (verdicts "
          f"are fp32). {OVERLAP} marks a model whose 95 % Wilson interval overlaps the "
          f"leader's: at this number of points it is not clearly worse than rank 1.")
RUN_CONFIG, RUN_ENV, FINAL_WEIGHTS = "config.yaml", "env.json", "model.safetensors"  # robench.runs
# pandas 3 reads floats back exactly by default (and deprecates the option); pandas 2 must ask
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: many runs, one report


@dataclass
class LoadedRecords:
    records: list[tuple[Record, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # with the reason
    replaced: list[tuple[Path, Path]] = field(default_factory=list)  # (older dropped, kept)

    def summary(self) -> str:
        """The one line every report starts with, so nothing is dropped silently."""
        read = len(self.records) + len(self.replaced)
        return (f"{read} records read, {len(self.skipped)} skipped, {len(self.replaced)} "
                f"replaced by a newer duplicate; {len(self.records)} used.")

    def warnings(self) -> list[str]:
        """One line per skipped or replaced file, naming it (for stderr and the report)."""
        return ([f"skipped {p}: {why}" for p, why in self.skipped]
                + [f"replaced {old} by the newer {new}" for old, new in self.replaced])


# ---------------------------------------------------------------------------------------
# Loading


def _record_files(paths: Sequence[str | Path]) -> list[Path]:
    """Record files named directly, or every *.json in an `evals` folder below a directory.

    Only `evals` folders are searched so a run's env.json (or a report's own model_info
    JSON) is never taken for a broken record; a directory with no `evals` folder and no
    config.yaml (an external model's --out folder) gives its own *.json files.
    """
    found: dict[Path, None] = {}
    for item in (Path(p).resolve() for p in paths):  # resolved once, not per file
        if item.is_dir():
            files = [*item.glob("*.json")] if item.name == EVALS else [*item.rglob("*.json")]
            files = [f for f in files if f.parent.name == EVALS] or (
                [] if (item / RUN_CONFIG).exists() else [*item.glob("*.json")])
        elif item.is_file():
            files = [item]
        else:
            raise UserError(f"{str(item)!r} does not exist; give record files, run "
                            f"directories or a directory of runs.")
        for f in sorted(files):
            if not f.name.startswith("."):  # atomic temporaries and attack state files
                found.setdefault(f, None)
    return list(found)


def _read(path: Path) -> Record:
    """A valid record, or ValueError saying in a few words why this file is not one."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON, truncated or corrupt ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ValueError("not a result record (no schema_version)")
    if data["schema_version"] not in READABLE_VERSIONS:
        readable = readable_versions()
        raise ValueError(f"schema version {data['schema_version']}, this robench reads "
                         f"{readable}")
    try:
        return validate(data, source=path.name)
    except (UserError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"does not fit the record schema ({exc})") from None


def _model_id(r: Record) -> tuple:
    """Which model was evaluated: a run (and its checkpoint), or an external file's weights."""
    m = r.model
    if m.kind == "run":
        return ("run", m.run_id, m.checkpoint or FINAL_WEIGHTS)
    return ("external", m.file, m.factory, m.weights_sha256)


def _protocol_id(r: Record) -> tuple:
    s = r.selection
    attacks = json.dumps([[a.name, a.params] for a in r.per_attack], sort_keys=True,
                         default=str)
    return (r.dataset, r.norm, float(r.eps), tuple(r.attacks), attacks,
            (s.n_examples, s.method, s.seed, s.split))


def _created(item: tuple[Record, Path]) -> tuple[float, str]:
    text = item[0].created
    for parse in (lambda t: datetime.strptime(t, "%Y-%m-%dT%H:%M:%S%z"), datetime.fromisoformat):
        try:
            return parse(text).timestamp(), str(item[1])
        except ValueError:
            pass
    return -math.inf, str(item[1])


def load_records(paths: Sequence[str | Path]) -> LoadedRecords:
    """Every valid record under `paths`; bad files are listed in `skipped`, not fatal."""
    shown = ", ".join(map(str, paths)) or "(no paths given)"
    files = _record_files(paths)
    loaded, newest = LoadedRecords(), {}
    for path in files:
        try:
            item = (_read(path), path)
        except ValueError as exc:
            loaded.skipped.append((path, str(exc)))
            continue
        key = (_model_id(item[0]), _protocol_id(item[0]))
        if key in newest:  # the same evaluation repeated: keep the newest, say so
            old, item = sorted([newest[key], item], key=_created)
            loaded.replaced.append((old[1], item[1]))
        newest[key] = item
    loaded.records = list(newest.values())
    if not loaded.records:
        why = f" ({len(files)} files skipped, e.g. {files[0]}: {loaded.skipped[0][1]})" \
            if files else ""
        raise UserError(f"no result records found in {shown}{why}; nothing to report; "
                        f"run robench eval first.")
    return loaded


# ---------------------------------------------------------------------------------------
# Tables


def _model_names(items: list[tuple[Record, Path]]) -> dict[tuple, str]:
    """Run ids (with @best for the best checkpoint), external-<name>; clashes get a hash."""
    base = {}
    for r, _ in items:
        mid = _model_id(r)
        if r.model.kind == "run":
            ckpt = Path(mid[2]).stem
            base[mid] = r.model.run_id + ("" if mid[2] == FINAL_WEIGHTS else f"@{ckpt}")
        else:
            base[mid] = f"external-{r.model.arch or Path(r.model.file or 'model').stem}"
    counts = Counter(base.values())
    return {mid: name if counts[name] == 1 else f"{name}-{_digest(mid)}"
            for mid, name in base.items()}


def _digest(obj: Any, n: int = 8) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _run_meta(path: Path, r: Record, cache: dict) -> tuple[float, Any, str | None]:
    """(train_seconds, seed, hash of config.yaml without runtime.seed) of a record's run."""
    run_dir = path.parent.parent if path.parent.name == EVALS else None
    if r.model.kind != "run" or run_dir is None:
        return math.nan, pd.NA, None
    if run_dir not in cache:
        try:
            summary = json.loads((run_dir / RUN_ENV).read_text()).get("summary") or {}
            seconds = float(summary.get("train_seconds", math.nan))
        except (OSError, ValueError, TypeError, AttributeError):
            seconds = math.nan
        try:
            cfg = yaml.load((run_dir / RUN_CONFIG).read_text(), Loader=_Loader)
            seed = cfg.get("runtime", {}).pop("seed", pd.NA)
            seed, config = (int(seed) if seed is not pd.NA else seed), _digest(cfg, 10)
        except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
            seed, config = pd.NA, None
        cache[run_dir] = (seconds, seed, config)
    return cache[run_dir]


def leaderboard(loaded: LoadedRecords) -> dict[tuple[str, str, float], pd.DataFrame]:
    """One ranked table per (dataset, norm, eps), one row per model (columns: COLUMNS).

    `config` (a hash of the run's config.yaml without runtime.seed) is what aggregate_seeds
    groups on; frame.attrs holds dataset, norm, eps and eps_text for headings.
    """
    groups: dict[tuple, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for r, path in loaded.records:
        if r.norm != CORRUPTIONS:  # their own tables: robench.report_corruptions
            groups[(r.dataset, r.norm, float(r.eps))][_model_id(r)].append((r, path))
    names, cache, tables = _model_names(loaded.records), {}, {}
    for key in sorted(groups):
        rows = []
        for mid, items in groups[key].items():
            est = worst_case(items)
            r, path = est.records[0]
            seconds, seed, config = _run_meta(path, r, cache)
            aa = autoattack_accuracy(items)
            rows.append({
                "rank": 0, "defense": r.model.defense or "", "arch": r.architecture
                or r.model.arch or "", "clean": est.clean, "robust": est.robust,
                "ci_low": est.ci[0], "ci_high": est.ci[1], "attacks": est.attacks,
                "n": est.n, "flags": "; ".join(est.flags), "precision": est.precision,
                "autoattack": math.nan if aa is None else aa, "train_seconds": seconds,
                "seed": seed, "run": names[mid], "overlaps_leader": False,
                "config": config or f"model:{names[mid]}"})
        tables[key] = _rank(pd.DataFrame(rows, columns=COLUMNS).astype(CSV_DTYPES))
        tables[key].attrs.update(dataset=key[0], norm=key[1], eps=key[2],
                                 eps_text=r.eps_text)  # as written by the user, e.g. 8/255
    return tables


def _rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by robust then clean accuracy; flag rows not clearly worse than the leader."""
    frame = frame.sort_values(["robust", "clean", "run"], ascending=[False, False, True],
                              kind="mergesort", ignore_index=True)
    frame["rank"] = range(1, len(frame) + 1)
    lo, hi = frame.loc[0, "ci_low"], frame.loc[0, "ci_high"]
    frame["overlaps_leader"] = (frame["ci_low"] <= hi) & (frame["ci_high"] >= lo)
    return frame


def aggregate_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """Runs that differ only in their seed, as mean and sample std (ddof=1; NaN for one)."""
    grouped = table.groupby(["defense", "arch", "config"], sort=False)
    out = grouped.agg(clean_mean=("clean", "mean"), clean_std=("clean", "std"),
                      robust_mean=("robust", "mean"), robust_std=("robust", "std"),
                      n_seeds=("run", "size"),
                      seeds=("seed", lambda s: ",".join(map(str, sorted(s.dropna())))))
    return out.reset_index().sort_values(["robust_mean", "clean_mean"], ascending=False,
                                         kind="mergesort", ignore_index=True)


def pivot(table: pd.DataFrame) -> pd.DataFrame:
    """Robust accuracy, defense x architecture, of the best run in each cell."""
    return table.pivot_table(index="defense", columns="arch", values="robust", aggfunc="max")


def read_csv(path: str | Path) -> pd.DataFrame:
    """A leaderboard CSV back as the frame written (dtypes CSV_DTYPES, empty flags stay "")."""
    return pd.read_csv(path, dtype=CSV_DTYPES, keep_default_na=False,
                       na_values={"train_seconds": [""], "seed": [""], "autoattack": [""]},
                       **_EXACT_FLOATS)


# ---------------------------------------------------------------------------------------
# Rendering: one display form (strings) shared by Markdown, HTML and the terminal


def _pct(x: float) -> str:
    return "–" if pd.isna(x) else f"{100 * x:.1f}%"


def heading(key: tuple[str, str, float], table: pd.DataFrame) -> str:
    eps_text = table.attrs.get("eps_text", f"{key[2]:g}")
    return f"{key[0]} — {key[1]} eps {eps_text}"


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as people read it: percentages, the interval, the overlap marker."""
    marked = table["overlaps_leader"] & (table["rank"] > 1)
    return pd.DataFrame({
        "rank": table["rank"].astype(str), "run": table["run"], "defense": table["defense"],
        "arch": table["arch"], "clean": table["clean"].map(_pct),
        "robust": [_pct(x) + (f" {OVERLAP}" if m else "")
                   for x, m in zip(table["robust"], marked, strict=True)],
        "95% CI": [f"[{100 * lo:.1f}, {100 * hi:.1f}]"
                   for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)],
        "AutoAttack": table["autoattack"].map(_pct),
        "attacks": table["attacks"], "n": table["n"].astype(str),
        "search": table["precision"],
        "seed": ["–" if pd.isna(s) else str(s) for s in table["seed"]],
        "train s": ["–" if pd.isna(s) else f"{s:.1f}" for s in table["train_seconds"]],
        "flags": table["flags"].replace("", "–")})


def _display_seeds(agg: pd.DataFrame) -> pd.DataFrame:
    def mean_std(mean, std):
        return [_pct(m) + ("" if pd.isna(s) else f" ± {100 * s:.1f}")
                for m, s in zip(mean, std, strict=True)]
    return pd.DataFrame({
        "defense": agg["defense"], "arch": agg["arch"], "config": agg["config"],
        "seeds": agg["seeds"], "n_seeds": agg["n_seeds"].astype(str),
        "clean (mean ± std)": mean_std(agg["clean_mean"], agg["clean_std"]),
        "robust (mean ± std)": mean_std(agg["robust_mean"], agg["robust_std"])})


def _display_pivot(piv: pd.DataFrame) -> pd.DataFrame:
    out = piv.map(_pct).reset_index()
    out.columns = ["defense \\ arch", *map(str, piv.columns)]
    return out


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
    from robench import report_corruptions as rc

    out = []
    for key, table in tables.items():
        parts = [("", display(table)),
                 ("Best robust accuracy by defense and architecture",
                  _display_pivot(pivot(table)))]
        agg = aggregate_seeds(table)
        if (agg["n_seeds"] > 1).any():
            parts.append(("Runs that differ only in the seed", _display_seeds(agg)))
        out.append((heading(key, table), parts))
    out += [(rc.heading(key), [("", rc.display(table))])
            for key, table in (corruption_tables or {}).items()]
    return out


def _legend(title: str) -> str:
    from robench import report_corruptions as rc

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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text.replace("/", "_")).strip("-") or "x"


def table_name(key: tuple[str, str, float], table: pd.DataFrame) -> str:
    """`<dataset>-<norm>-<eps slug>`, e.g. cifar10-Linf-8_255: names the CSV and plots."""
    return "-".join(_slug(t) for t in (key[0], key[1], table.attrs.get("eps_text", f"{key[2]:g}")))


def _model_infos(key, table, folder: Path):
    """RobustBench-style model_info per run (accuracies as fractions, like the records).

    RobustBench keeps one eps per threat model; write_report puts each eps in its own
    folder, eps-<slug>, when a (dataset, norm) has several, so none overwrites another.
    """
    dataset, norm, eps = key
    for row in table.itertuples(index=False):
        yield folder / f"{_slug(row.run)}.json", {
            "name": row.run, "defense": row.defense, "architecture": row.arch,
            "dataset": dataset, "threat_model": norm, "eps": float(eps),
            "eps_text": table.attrs.get("eps_text", f"{eps:g}"),
            "clean_acc": float(row.clean), "robust_acc": float(row.robust),
            "autoattack_acc": None if pd.isna(row.autoattack) else float(row.autoattack),
            "attacks": row.attacks, "n_examples": int(row.n),
            "additional_data": False, "seed": None if pd.isna(row.seed) else int(row.seed),
            "train_seconds": None if pd.isna(row.train_seconds) else float(row.train_seconds)}


def _write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj)
    return path


def _write_png(path: Path, fig) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _plots(loaded: LoadedRecords, tables: dict, out: Path) -> list[Path]:
    """Clean-vs-robust scatter per table; robust-vs-eps per run with several eps."""
    from matplotlib.figure import Figure  # no pyplot: no global state; png renders with Agg

    written = []
    for key, table in tables.items():
        fig = Figure(figsize=(6, 4.5))
        ax = fig.add_subplot()
        ax.scatter(100 * table["clean"], 100 * table["robust"])
        for row in table.head(15).itertuples(index=False):
            ax.annotate(row.run, (100 * row.clean, 100 * row.robust), fontsize=6)
        ax.set(xlabel="clean accuracy (%)", ylabel="robust accuracy (%)",
               title=heading(key, table))
        written.append(_write_png(out / f"{table_name(key, table)}-clean-vs-robust.png", fig))
    curves: dict[tuple, dict[tuple, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    names = _model_names(loaded.records)
    for r, _ in loaded.records:
        if r.norm == CORRUPTIONS:
            continue
        line = curves[(r.dataset, r.norm)][(names[_model_id(r)], "+".join(r.attacks))]
        line[float(r.eps)] = min(line.get(float(r.eps), 1.0), r.robust_acc)
    for (dataset, norm), lines in sorted(curves.items()):
        lines = {k: v for k, v in sorted(lines.items()) if len(v) > 1}
        if not lines:
            continue
        fig = Figure(figsize=(6, 4.5))
        ax = fig.add_subplot()
        for (run, attacks), points in lines.items():
            eps = sorted(points)
            ax.plot(eps, [100 * points[e] for e in eps], marker="o", label=f"{run} ({attacks})")
        ax.set(xlabel=f"eps ({norm})", ylabel="robust accuracy (%)",
               title=f"{dataset} — {norm}: robust accuracy vs eps")
        if len(lines) <= 12:
            ax.legend(fontsize=6)
        written.append(_write_png(out / f"{_slug(dataset)}-{_slug(norm)}-robust-vs-eps.png",
                                  fig))
    return written


def write_report(loaded: LoadedRecords, out: Path,
                 formats: Sequence[str] = ("md", "csv")) -> list[Path]:
    """Write the report in each format under `out`; returns the paths written.

    md: report.md; csv: <dataset>-<norm>-<eps slug>.csv per table (read back with read_csv);
    html: report.html; json: model_info/<dataset>/<norm>/<run>.json; png: plots.
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
    from robench import report_corruptions as rc

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
                folder = out / "model_info" / _slug(key[0]) / _slug(key[1])
                if eps_count[key[:2]] > 1:
                    folder /= f"eps-{_slug(table.attrs.get('eps_text', f'{key[2]:g}'))}"
                written += [_write_json(p, info) for p, info in _model_infos(key, table, folder)]
        elif fmt == "png":
            written += _plots(loaded, tables, out) + rc.heat_maps(corruption_tables, out)
    return written


def render_terminal(tables: dict[tuple[str, str, float], pd.DataFrame], console,
                    corruption_tables: dict | None = None) -> None:
    """Each leaderboard as a rich table, with the overlap legend once at the end."""
    from rich.table import Table

    from robench import report_corruptions as rc

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
