"""Datasets as in-memory tensors, split into train / val / test once at load time.

`load_dataset` is the one door: it looks a name up in `DATASETS`, loads the training pool and
the test split, and holds out a seeded stratified val split (see `robench.data.load` for how
the splits are chosen). The modules, one job each:

- `splits`: what a loaded dataset is (`DatasetSplits`, `Split`, `DatasetInfo`, `to_float`);
- `load`: `load_dataset`, name lookup and split arithmetic;
- `sampling`, `stats`, `resize`: stratified samples, mean/std, resizing of whole splits;
- `digits`, `torchvision_sets`, `imagefolder`: the loaders, each registered where defined;
- `manifest`, `decode`, `cache`: listing, decoding and caching the images of a folder.

Importing this package registers every dataset: `robench.registry.load_all` relies on it.
"""

from __future__ import annotations

from robench.data import (  # noqa: F401  (importing a loader module registers its datasets)
    digits,
    imagefolder,
    torchvision_sets,
)
from robench.data.cache import cache_dir
from robench.data.imagefolder import IMAGEFOLDER_PREFIX
from robench.data.load import load_dataset
from robench.data.splits import DatasetInfo, DatasetSplits, Split, to_float

__all__ = [
    "IMAGEFOLDER_PREFIX",
    "DatasetInfo",
    "DatasetSplits",
    "Split",
    "cache_dir",
    "load_dataset",
    "to_float",
]
