"""The report's pictures: clean vs robust, cost vs robust, robust accuracy vs eps, corruption
heat maps. Every point carries its 95 % interval, and labels name the method (one per
defense, not per run) in a column where they cannot cover each other (robench.report.labels).

Drawn on matplotlib's Figure (no pyplot: no global state; PNGs render with Agg).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from robench.atomic import atomic_write_png
from robench.records import CORRUPTIONS, Record, wilson_interval
from robench.report import corruptions
from robench.report.display import heading, slug, table_name
from robench.report.labels import group_labels, label_column, method_label
from robench.report.loading import LoadedRecords, model_id, model_names


def _colours(labels: list[str]) -> dict[str, str]:
    """A colour per label, in order of first appearance (tab10, then tab20 beyond ten)."""
    from matplotlib import colormaps

    names = list(dict.fromkeys(labels))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(k % cmap.N) for k, name in enumerate(names)}


def _bars(value: float, low: float, high: float) -> list[list[float]]:
    """matplotlib's [[below], [above]] for an interval around a value; an interval's end a
    rounding error past the value (0 of n correct) is taken as the value itself."""
    return [[max(value - low, 0.0)], [max(high - value, 0.0)]]


def _interval(ok: float, n: int) -> tuple[float, float]:
    lo, hi = wilson_interval(round(ok * n), n)
    return lo, hi


def _scatter(ax, xs, table: pd.DataFrame, labels: list[str], colours: dict,
             x_interval: bool) -> dict[str, tuple[float, float]]:
    """One point per run with its 95 % intervals; returns each label's mean point."""
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for x, row, label in zip(xs, table.itertuples(index=False), labels, strict=True):
        y = 100 * row.robust
        yerr = _bars(y, 100 * row.ci_low, 100 * row.ci_high)
        xerr = None
        if x_interval:
            lo, hi = _interval(row.clean, int(row.n))
            xerr = _bars(x, 100 * lo, 100 * hi)
        ax.errorbar(x, y, yerr=yerr, xerr=xerr, fmt="o", markersize=4, color=colours[label],
                    ecolor=colours[label], elinewidth=0.8, capsize=2, alpha=0.85)
        groups[label].append((x, y))
    return {label: (sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts))
            for label, pts in groups.items()}


def _interval_note(table: pd.DataFrame) -> str:
    seeds = table["seed"].notna() & table.duplicated(["defense", "arch", "config"], keep=False)
    note = "bars: 95 % Wilson intervals"
    return note + ("; one point per seed, one label per method" if seeds.any() else "")


def plots(loaded: LoadedRecords, tables: dict, out: Path) -> list[Path]:
    """Clean-vs-robust scatter per table; robust-vs-eps per model with several eps."""
    from matplotlib.figure import Figure

    written = []
    for key, table in tables.items():
        labels = group_labels(table)
        colours = _colours(labels)
        fig = Figure(figsize=(8, 5))
        ax = fig.add_subplot()
        fig.subplots_adjust(right=0.74)
        means = _scatter(ax, list(100 * table["clean"]), table, labels, colours, True)
        ax.set(xlabel="clean accuracy (%)", ylabel="robust accuracy (%)",
               title=heading(key, table))
        ax.margins(x=0.08, y=0.08)
        ax.text(0, -0.13, _interval_note(table), transform=ax.transAxes, fontsize=7,
                color="grey")
        label_column(ax, means, colours)
        written.append(atomic_write_png(out / f"{table_name(key, table)}-clean-vs-robust.png", fig))
        costed = table[table["train_seconds"].notna()]
        if len(costed):
            written.append(_cost_plot(key, costed, out))
    written += _eps_curves(loaded, out)
    return written


def _eps_curves(loaded: LoadedRecords, out: Path) -> list[Path]:
    """Robust accuracy against eps, one line per model (and attack set), with intervals."""
    from matplotlib.figure import Figure

    curves: dict[tuple, dict[tuple, dict[float, Record]]] = defaultdict(lambda: defaultdict(dict))
    names = model_names(loaded.records)
    for r, _ in loaded.records:
        if r.norm == CORRUPTIONS:
            continue
        line = curves[(r.dataset, r.norm)][(names[model_id(r)], "+".join(r.attacks))]
        e = float(r.eps)
        if e not in line or r.robust_acc < line[e].robust_acc:
            line[e] = r
    written = []
    for (dataset, norm), lines in sorted(curves.items()):
        lines = {k: v for k, v in sorted(lines.items()) if len(v) > 1}
        if not lines:
            continue
        labelled = _line_labels(lines)
        colours = _colours(list(labelled.values()))
        fig = Figure(figsize=(8, 5))
        ax = fig.add_subplot()
        fig.subplots_adjust(right=0.74)
        ends: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for k, points in lines.items():
            eps = sorted(points)
            ys = [100 * points[e].robust_acc for e in eps]
            bars = [_bars(y, 100 * points[e].robust_ci95[0], 100 * points[e].robust_ci95[1])
                    for e, y in zip(eps, ys, strict=True)]
            lo, hi = [b[0][0] for b in bars], [b[1][0] for b in bars]
            c = colours[labelled[k]]
            ax.errorbar(eps, ys, yerr=[lo, hi], marker="o", markersize=3, color=c, ecolor=c,
                        elinewidth=0.8, capsize=2, alpha=0.85)
            ends[labelled[k]].append((eps[-1], ys[-1]))
        ax.set(xlabel=f"eps ({norm})", ylabel="robust accuracy (%)",
               title=f"{dataset} — {norm}: robust accuracy vs eps")
        ax.text(0, -0.13, "bars: 95 % Wilson intervals; labels at each line's largest eps",
                transform=ax.transAxes, fontsize=7, color="grey")
        label_column(ax, {k: (sum(p[0] for p in v) / len(v), sum(p[1] for p in v) / len(v))
                          for k, v in ends.items()}, colours)
        written.append(atomic_write_png(out / f"{slug(dataset)}-{slug(norm)}-robust-vs-eps.png",
                                        fig))
    return written


def heat_maps(tables: dict[tuple[str, str], pd.DataFrame], out: Path) -> list[Path]:
    """Accuracy, corruption x severity, one panel per model (best first, at most 12)."""
    from matplotlib.figure import Figure

    written = []
    for key, table in tables.items():
        runs = list(table["run"])[:12]
        grids = table.attrs["grids"]
        cols = min(3, len(runs))
        rows = -(-len(runs) // cols)
        fig = Figure(figsize=(4.2 * cols, 4.6 * rows))
        for i, run in enumerate(runs):
            names, severities, accuracy = grids[run]
            ax = fig.add_subplot(rows, cols, i + 1)
            grid = [[100 * a for a in accuracy[n]] for n in names]
            image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(severities)), [str(s) for s in severities])
            ax.set_yticks(range(len(names)), names, fontsize=6)
            ax.set_xlabel("severity")
            ax.set_title(run, fontsize=7)
            for y, row in enumerate(grid):
                for x, value in enumerate(row):
                    ax.text(x, y, f"{value:.0f}", ha="center", va="center", fontsize=5,
                            color="white" if value < 60 else "black")
            fig.colorbar(image, ax=ax, fraction=0.046, label="accuracy (%)")
        fig.suptitle(corruptions.heading(key))
        fig.tight_layout()
        written.append(atomic_write_png(out / f"{corruptions.table_name(key)}-heatmap.png", fig))
    return written


def _line_labels(lines: dict[tuple[str, str], dict[float, Record]]) -> dict[tuple, str]:
    """Each line's label: the defense, with the architecture and the attacks where they vary."""
    firsts = {k: next(iter(v.values())) for k, v in lines.items()}
    several_archs = len({r.model.arch for r in firsts.values()}) > 1
    several_attacks = len({attacks for _, attacks in lines}) > 1
    out = {}
    for (run, attacks), r in firsts.items():
        name = method_label(r.model.defense or "", r.model.arch or "", run, several_archs)
        out[(run, attacks)] = name + (f" ({attacks})" if several_attacks else "")
    return out


def _cost_plot(key: tuple, table: pd.DataFrame, out: Path) -> Path:
    """Robust accuracy against the training time it cost (log scale: defenses differ by 10x)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    labels = group_labels(table)
    colours = _colours(labels)
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    fig.subplots_adjust(right=0.74)
    means = _scatter(ax, list(table["train_seconds"]), table, labels, colours, False)
    ax.set_xscale("log")
    # Seconds as plain numbers (not 3x10^0), labelled at 1, 2 and 5 of each decade.
    plain = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "125" else "")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set(xlabel="training time (s, log scale)", ylabel="robust accuracy (%)",
           title=f"{heading(key, table)}: cost vs robustness")
    ax.margins(y=0.08)
    ax.text(0, -0.13, _interval_note(table), transform=ax.transAxes, fontsize=7, color="grey")
    label_column(ax, means, colours)
    return atomic_write_png(out / f"{table_name(key, table)}-cost-vs-robust.png", fig)
