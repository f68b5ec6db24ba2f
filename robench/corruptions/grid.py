"""A picture of what the corruption benchmark measures: one image under every setting.

Rows are corruptions, columns the clean image and severities 1..5, made by the functions and
parameters `robench eval --attack corruptions` uses (random corruptions draw their own noise
for a lone image, so the pixels differ, not the kind or strength of the corruption).
"""

from __future__ import annotations

from pathlib import Path

import torch

from robench.atomic import atomic_write_png
from robench.corruptions.suite import corrupt
from robench.data import to_float


def corruption_grid(image: torch.Tensor, names: list[str], severities: list[int],
                    seed: int = 0) -> torch.Tensor:
    """(len(names), 1 + len(severities), C, H, W): the clean image, then each severity."""
    x = to_float(image.unsqueeze(0))
    rows = []
    for name in names:
        row = [x[0]] + [corrupt(x, name, s, seed=seed)[0] for s in severities]
        rows.append(torch.stack(row))
    return torch.stack(rows)


def save_grid(grid: torch.Tensor, names: list[str], severities: list[int], path: Path,
              title: str) -> Path:
    """The grid as a labelled PNG, written atomically."""
    from matplotlib.figure import Figure

    n_rows, n_cols = grid.shape[:2]
    fig = Figure(figsize=(1.1 * n_cols + 1.4, 1.1 * n_rows + 0.6))
    for r in range(n_rows):
        for c in range(n_cols):
            ax = fig.add_subplot(n_rows, n_cols, r * n_cols + c + 1)
            img = grid[r, c].permute(1, 2, 0).clamp(0, 1).numpy()
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title("clean" if c == 0 else f"severity {severities[c - 1]}",
                             fontsize=7)
            if c == 0:
                ax.set_ylabel(names[r], fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_png(path, fig)
