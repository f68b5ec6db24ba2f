"""What an evaluation is run on: a model taking [0, 1] images, the test split, and where its
records go. Where the model came from (a robench run, a user's file) is robench.targets' job,
so `attack` and `eval` need not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from robench.data import DatasetInfo, Split
from robench.evaluation.identity import tensors_digest
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
    # (the split hashed, its fingerprint): a large test split is hashed once, not per record
    _fingerprint: tuple[Split, str] | None = field(default=None, repr=False, compare=False)

    @property
    def test_fingerprint(self) -> str:
        """sha256 over the test split's images and labels (dtype, shape, bytes): the data by
        content, so the same images at another path are the same data. Hashed again when
        `test` is replaced by another split."""
        if self._fingerprint is None or self._fingerprint[0] is not self.test:
            self._fingerprint = (self.test, tensors_digest(self.test.x, self.test.y))
        return self._fingerprint[1]

    @property
    def adv_dir(self) -> Path:
        """Adversarial examples from `robench attack` go beside the records."""
        return self.evals_dir.parent / "adv"
