"""The per-dataset defaults: the recipe a user gets with no flags."""

from __future__ import annotations

from typing import Any

# Per-dataset defaults: the recipe a user gets with no flags. CIFAR-like values follow the
# usual CIFAR-10 recipe (SGD 0.1, momentum 0.9, wd 5e-4, bs 128, LR x0.1 at 100 and 105 of 110).
_CIFAR_LIKE = {
    "model": {"arch": "preactresnet18"},
    "optim": {"epochs": 110, "batch_size": 128, "lr": 0.1, "schedule": "multistep",
              "milestones": [100, 105]},
}
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {
        "model": {"arch": "cnn"},
        "optim": {"epochs": 30, "batch_size": 64, "lr": 0.05, "schedule": "cosine"},
    },
    "mnist": {
        "model": {"arch": "cnn"},
        "optim": {"epochs": 20, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
    },
    "fashion-mnist": {
        "model": {"arch": "cnn"},
        "optim": {"epochs": 30, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
    },
    "cifar10": _CIFAR_LIKE,
    "cifar100": _CIFAR_LIKE,
    "svhn": {
        "model": {"arch": "preactresnet18"},
        "optim": {"epochs": 50, "batch_size": 128, "lr": 0.01, "schedule": "multistep",
                  "milestones": [25, 40]},
    },
    "tinyimagenet": _CIFAR_LIKE,
    "imagefolder": _CIFAR_LIKE,
}


def dataset_defaults(dataset: str) -> dict[str, Any]:
    key = "imagefolder" if dataset.startswith("imagefolder:") else dataset
    return DATASET_DEFAULTS.get(key, {})
