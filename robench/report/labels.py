"""Where a plot's labels go so that none covers another.

Points of a leaderboard pile up (every undefended model at 0 % robust accuracy), so labels are
not put on the points: they stand in a column beside the axes, in the order of the points'
heights, spread at least a line apart, each joined to its point by a leader line. Which
labels there are is decided here too: one per defense (and architecture, when a table has
several), not one per run, so seeds of one method share a label.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

OTHER_MODELS = ("external", "robustbench")  # the `defense` of models robench did not train


def spread(targets: Sequence[float], gap: float, low: float = 0.0, high: float = 1.0
           ) -> list[float]:
    """Heights in [low, high] as near `targets` as a greedy pass allows, at least `gap`
    apart (less if they would not fit) and in the targets' order; ties keep input order."""
    n = len(targets)
    if n == 0:
        return []
    gap = min(gap, (high - low) / (n - 1)) if n > 1 else gap
    order = sorted(range(n), key=lambda i: (targets[i], i))
    pos = [min(max(targets[i], low), high) for i in order]
    for k in range(1, n):  # upwards: each at least a gap above the one below
        pos[k] = max(pos[k], pos[k - 1] + gap)
    if pos[-1] > high:  # pushed past the top: down again from there
        pos[-1] = high
        for k in range(n - 2, -1, -1):
            pos[k] = min(pos[k], pos[k + 1] - gap)
    out = [0.0] * n
    for k, i in enumerate(order):
        out[i] = pos[k]
    return out


def group_labels(table: pd.DataFrame) -> list[str]:
    """Each row's label: its defense, with the architecture when the table has several."""
    several = table["arch"].nunique() > 1
    return [method_label(d, a, r, several)
            for d, a, r in zip(table["defense"], table["arch"], table["run"], strict=True)]


def method_label(defense: str, arch: str, name: str, with_arch: bool) -> str:
    """A robench run by its defense; a user's or a zoo model (no robench defense) by name."""
    if not defense or defense in OTHER_MODELS:
        return name
    return f"{defense} / {arch}" if with_arch else defense


def label_column(ax, points: dict[str, tuple[float, float]], colours: dict[str, str],
                 fontsize: float = 7) -> None:
    """One label per key at the right of `ax`, joined to its point (data coordinates)."""
    if not points:
        return
    y0, y1 = ax.get_ylim()
    keys = list(points)
    heights = [(points[k][1] - y0) / (y1 - y0) for k in keys]
    line = fontsize * 1.5 / (ax.figure.get_figheight() * 72 * ax.get_position().height)
    for key, y in zip(keys, spread(heights, line), strict=True):
        ax.annotate(key, xy=points[key], xycoords="data", xytext=(1.03, y),
                    textcoords="axes fraction", fontsize=fontsize, va="center",
                    color=colours[key], annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "color": colours[key], "lw": 0.6,
                                "alpha": 0.7, "shrinkA": 0, "shrinkB": 2})
