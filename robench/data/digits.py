"""scikit-learn's 8x8 digits: small enough to ship with the package, so the default dataset."""

from __future__ import annotations

from pathlib import Path

import torch

from robench.data.sampling import split_indices, take
from robench.data.splits import RawDataset, Split
from robench.registry import DATASETS

_DIGITS_TEST_SEED = 1797  # fixed so the digits test split never moves with split_seed
_DIGITS_TEST_SIZE = 360


@DATASETS.register(
    "digits",
    "scikit-learn's 1,797 8x8 grey handwritten digits; ships with the package (the default)",
    val_size=144,
    augment="none",
)
def _load_digits(root: Path, download: bool) -> RawDataset:
    """Digits has no official test set, so a fixed stratified 360 images play that role."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.long)
    generator = torch.Generator().manual_seed(_DIGITS_TEST_SEED)
    test_idx, train_idx = split_indices(y, _DIGITS_TEST_SIZE, generator)
    return RawDataset(
        train=take(Split(x, y), train_idx),
        test=take(Split(x, y), test_idx),
        classes=tuple(str(c) for c in range(10)),
        name="digits",
        test_source=f"fixed stratified sample of {_DIGITS_TEST_SIZE}, independent of split_seed",
    )
