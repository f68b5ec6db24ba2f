"""Training curves: per run, what metrics.jsonl says happened epoch by epoch.

Train loss and accuracy, and validation clean, PGD and FGSM accuracy, with the epoch
best.safetensors was taken from and any epoch flagged as catastrophic overfitting marked: the
picture that shows whether a checkpoint was chosen well and whether a fast method collapsed.
Read from the run directory beside each record; like the rest of robench.report, no torch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from robench.atomic import atomic_write_png
from robench.records import EVALS
from robench.report.display import slug
from robench.report.loading import LoadedRecords

METRICS, BEST = "metrics.jsonl", "best.safetensors"  # robench.runs
FOLDER = "curves"
ACCURACIES = (("train_acc", "train", "tab:blue", "-"), ("val_acc", "val clean", "tab:green", "-"),
              ("val_robust_acc", "val PGD", "tab:red", "-"),
              ("val_fgsm_acc", "val FGSM", "tab:orange", "--"))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The epoch lines of a run; a line cut short by an interruption ends the list."""
    path = run_dir / METRICS
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    break
    return rows


def best_epoch(run_dir: Path) -> int | None:
    """The epoch best.safetensors holds, from the file's own metadata (its JSON header)."""
    try:
        with open(run_dir / BEST, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        return int(header["__metadata__"]["epoch"])
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def run_dirs(loaded: LoadedRecords) -> dict[str, Path]:
    """{run id: its directory} for every record of a robench run."""
    found: dict[str, Path] = {}
    for r, path in loaded.records:
        if r.model.kind == "run" and path.parent.name == EVALS:
            found.setdefault(r.model.run_id, path.parent.parent)
    return dict(sorted(found.items()))


def training_curves(loaded: LoadedRecords, out: Path) -> list[Path]:
    """curves/<run>.png for each run with a metrics.jsonl."""
    written = []
    for run_id, run_dir in run_dirs(loaded).items():
        rows = read_metrics(run_dir)
        if rows:
            written.append(_draw(run_id, rows, best_epoch(run_dir),
                                 out / FOLDER / f"{slug(run_id)}.png"))
    return written


def _draw(run_id: str, rows: list[dict[str, Any]], best: int | None, path: Path) -> Path:
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(9, 3.6))
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r.get("train_loss") for r in rows], color="tab:blue", marker=".")
    loss_ax.set(xlabel="epoch", ylabel="train loss", title="training loss")
    for key, label, colour, style in ACCURACIES:
        points = [(e, 100 * r[key]) for e, r in zip(epochs, rows, strict=True)
                  if r.get(key) is not None]
        if points:
            acc_ax.plot(*zip(*points, strict=True), color=colour, linestyle=style, marker=".",
                        label=label)
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100), title="accuracy")
    collapsed = [r["epoch"] for r in rows if r.get("catastrophic_overfitting")]
    for ax in (loss_ax, acc_ax):
        if best is not None:
            ax.axvline(best, color="black", linestyle=":", linewidth=1,
                       label=f"best.safetensors (epoch {best})")
        for i, epoch in enumerate(collapsed):
            ax.axvline(epoch, color="tab:red", alpha=0.35, linewidth=4,
                       label="catastrophic overfitting" if i == 0 else None)
    acc_ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(run_id, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_png(path, fig)
