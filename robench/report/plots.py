"""The report's pictures: clean vs robust, cost vs robust, robust accuracy vs eps, corruption
heat maps.

Drawn on matplotlib's Figure (no pyplot: no global state; PNGs render with Agg).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from robench.atomic import atomic_write_png
from robench.records import CORRUPTIONS
from robench.report import corruptions
from robench.report.display import heading, slug, table_name
from robench.report.loading import LoadedRecords, model_id, model_names


def plots(loaded: LoadedRecords, tables: dict, out: Path) -> list[Path]:
    """Clean-vs-robust scatter per table; robust-vs-eps per run with several eps."""
    from matplotlib.figure import Figure

    written = []
    for key, table in tables.items():
        fig = Figure(figsize=(6, 4.5))
        ax = fig.add_subplot()
        ax.scatter(100 * table["clean"], 100 * table["robust"])
        for row in table.head(15).itertuples(index=False):
            ax.annotate(row.run, (100 * row.clean, 100 * row.robust), fontsize=6)
        ax.set(xlabel="clean accuracy (%)", ylabel="robust accuracy (%)",
               title=heading(key, table))
        written.append(atomic_write_png(out / f"{table_name(key, table)}-clean-vs-robust.png", fig))
        costed = table[table["train_seconds"].notna()]
        if len(costed):
            written.append(_cost_plot(key, costed, out))
    curves: dict[tuple, dict[tuple, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    names = model_names(loaded.records)
    for r, _ in loaded.records:
        if r.norm == CORRUPTIONS:
            continue
        line = curves[(r.dataset, r.norm)][(names[model_id(r)], "+".join(r.attacks))]
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


def _cost_plot(key: tuple, table: pd.DataFrame, out: Path) -> Path:
    """Robust accuracy against the training time it cost (log scale: defenses differ by 10x)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    ax.scatter(table["train_seconds"], 100 * table["robust"])
    for row in table.head(15).itertuples(index=False):
        ax.annotate(row.run, (row.train_seconds, 100 * row.robust), fontsize=6)
    ax.set_xscale("log")
    # Seconds as plain numbers (not 3x10^0), labelled at 1, 2 and 5 of each decade.
    plain = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "125" else "")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set(xlabel="training time (s, log scale)", ylabel="robust accuracy (%)",
           title=f"{heading(key, table)}: cost vs robustness")
    return atomic_write_png(out / f"{table_name(key, table)}-cost-vs-robust.png", fig)
