"""`robench train --tensorboard`: each epoch's metrics.jsonl line as TensorBoard scalars.

The event files go to `<run>/tensorboard/`, written by torch.utils.tensorboard as each epoch
ends, so a user watches a run live with `tensorboard --logdir runs/`. They are a view of
metrics.jsonl, not a second record: each writer starts by purging what an earlier one wrote
(purge_step 1) and writes every epoch metrics.jsonl holds, so a resumed run has each epoch
once; and `--tensorboard` on a run that is already complete writes them from
its metrics.jsonl. Writing them changes nothing a run computes, so it is not part of the
config or its hash.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from robench.errors import UserError

FOLDER = "tensorboard"
# (TensorBoard tag, metrics.jsonl key)
SCALARS = (
    ("train/loss", "train_loss"),
    ("train/accuracy", "train_acc"),
    ("val/clean_accuracy", "val_acc"),
    ("val/pgd_accuracy", "val_robust_acc"),
    ("val/fgsm_accuracy", "val_fgsm_acc"),
    ("optim/lr", "lr"),
    ("cost/images_per_s", "images_per_s"),
)
INSTALL = "pip install 'robench[tensorboard]'"


def require_tensorboard() -> None:
    """Before anything is written: the package torch.utils.tensorboard needs."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError(f"--tensorboard needs the tensorboard package; {INSTALL}.") from None


class TensorBoardScalars:
    """An epoch callback of robench.training.engine.fit writing one step per epoch."""

    def __init__(self, run_dir: Path):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / FOLDER),
                                    purge_step=1)

    def __call__(self, row: dict[str, Any]) -> None:
        for tag, key in SCALARS:
            value = row.get(key)
            if value is not None:
                self.writer.add_scalar(tag, float(value), global_step=int(row["epoch"]))
        if row.get("catastrophic_overfitting"):
            self.writer.add_text("warnings", f"catastrophic overfitting at epoch "
                                 f"{row['epoch']}", global_step=int(row["epoch"]))
        self.writer.flush()

    def write_all(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self(row)

    def close(self) -> None:
        self.writer.close()
