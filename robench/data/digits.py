"""scikit-learn's 8x8 digits: small enough to ship with the package, so the default dataset."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from robench.data.sampling import split_indices, take
from robench.data.splits import RawDataset, Split
from robench.registry import DATASETS

_DATA_FILE = ("datasets", "data", "digits.csv.gz")  # in scikit-learn's package folder
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
    images, target = digits_arrays()
    x = torch.tensor(images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(target, dtype=torch.long)
    generator = torch.Generator().manual_seed(_DIGITS_TEST_SEED)
    test_idx, train_idx = split_indices(y, _DIGITS_TEST_SIZE, generator)
    return RawDataset(
        train=take(Split(x, y), train_idx),
        test=take(Split(x, y), test_idx),
        classes=tuple(str(c) for c in range(10)),
        name="digits",
        test_source=f"fixed stratified sample of {_DIGITS_TEST_SIZE}, independent of split_seed",
    )


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images N x 8 x 8 in 0..16, labels): scikit-learn's file read as load_digits reads it.

    Importing scikit-learn takes seconds, and every robench process on digits paid them (a
    sweep starts four per run); the file is found without importing the package. Where the
    file is not where it is expected, load_digits is used.
    """
    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root).joinpath(*_DATA_FILE)
        if path.is_file():
            with gzip.open(path, "rt") as f:
                data = np.loadtxt(f, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target
