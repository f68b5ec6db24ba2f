"""What an evaluation is run on: a model taking [0, 1] images, the test split, and where its
records go. Where the model came from (a robench run, a user's file) is robench.targets' job,
so `attack` and `eval` need not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from robench.data import DatasetInfo, Split
from robench.records import ModelSource, Published


@dataclass
class Target:
    model: torch.nn.Module
    info: DatasetInfo
    test: Split
    source: ModelSource
    evals_dir: Path  # where records go
    label: str  # the name shown in tables
    data_dir: str | None = None  # where pre-made corrupted test sets are looked for
    published: Published | None = None  # a zoo model's leaderboard numbers, for the record

    @property
    def adv_dir(self) -> Path:
        """Adversarial examples from `robench attack` go beside the records."""
        return self.evals_dir.parent / "adv"
