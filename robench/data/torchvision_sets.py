"""The datasets read through torchvision: MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from robench.data.splits import RawDataset, Split
from robench.errors import UserError
from robench.registry import DATASETS

_MNIST_FILES = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte"
)


@dataclass(frozen=True)
class _TorchvisionSource:
    """A torchvision dataset: its class, where its files go (for the offline message)."""

    class_name: str
    description: str
    augment: str
    where: str  # "{root}" is replaced by the data directory
    classes: tuple[str, ...] | None = None  # when torchvision's object carries none


_TORCHVISION = {
    "mnist": _TorchvisionSource(
        "MNIST",
        "MNIST handwritten digits, 1x28x28, 60k train / 10k test (torchvision)",
        "none",
        f"put the gunzipped {_MNIST_FILES} from https://ossci-datasets.s3.amazonaws.com/mnist/ "
        "in {root}/MNIST/raw/",
    ),
    "fashion-mnist": _TorchvisionSource(
        "FashionMNIST",
        "Fashion-MNIST clothing, 1x28x28, 60k train / 10k test (torchvision)",
        "none",
        f"put the gunzipped {_MNIST_FILES} from "
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ in {root}/FashionMNIST/raw/",
    ),
    "cifar10": _TorchvisionSource(
        "CIFAR10",
        "CIFAR-10, 3x32x32, 10 classes, 50k train / 10k test (torchvision)",
        "crop+flip",
        "put the extracted 'cifar-10-batches-py/' folder from "
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz in {root}/",
    ),
    "cifar100": _TorchvisionSource(
        "CIFAR100",
        "CIFAR-100, 3x32x32, 100 classes, 50k train / 10k test (torchvision)",
        "crop+flip",
        "put the extracted 'cifar-100-python/' folder from "
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz in {root}/",
    ),
    "svhn": _TorchvisionSource(
        "SVHN",
        "SVHN house numbers, 3x32x32, 73k train / 26k test (torchvision); crops, no flips",
        "crop",
        "put train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/ "
        "in {root}/",
        classes=tuple(str(c) for c in range(10)),
    ),
}


def _torchvision_split(name: str, root: Path, train: bool, download: bool) -> tuple[Split, list]:
    """One official split as uint8 NCHW tensors read from torchvision's raw arrays."""
    import torchvision.datasets

    source = _TORCHVISION[name]
    cls = getattr(torchvision.datasets, source.class_name)
    split_arg = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
    try:
        ds = cls(root=str(root), download=download, **split_arg)
    except (RuntimeError, OSError) as err:
        raise UserError(_missing_message(name, root, download, err)) from None
    x = torch.as_tensor(ds.data)
    if x.ndim == 3:  # MNIST-like: N x H x W
        x = x.unsqueeze(1)
    elif name != "svhn":  # CIFAR: N x H x W x C; SVHN is already N x C x H x W
        x = x.permute(0, 3, 1, 2)
    labels = ds.labels if name == "svhn" else ds.targets
    y = torch.as_tensor(labels, dtype=torch.long)
    classes = source.classes or tuple(ds.classes)
    return Split(x.contiguous(), y), list(classes)


def _missing_message(name: str, root: Path, download: bool, err: Exception) -> str:
    where = _TORCHVISION[name].where.format(root=root.as_posix().rstrip("/"))
    if download:
        return f"downloading {name} into {root.as_posix()}/ failed ({err}); instead {where}."
    return (
        f"{name} is not in {root.as_posix()}/ (or its files are incomplete): {where}, or pass "
        "--download where the network is reachable."
    )


def _load_torchvision(name: str) -> Callable[[Path, bool], RawDataset]:
    def load(root: Path, download: bool) -> RawDataset:
        train, classes = _torchvision_split(name, root, True, download)
        test, _ = _torchvision_split(name, root, False, download)
        return RawDataset(train, test, tuple(classes), name, "official test set")

    load.__doc__ = f"{name} from torchvision's files under the data directory."
    return load


def _register_torchvision() -> None:
    for name, source in _TORCHVISION.items():
        loader = _load_torchvision(name)
        DATASETS.add(name, loader, source.description, val_size=1000, augment=source.augment)


_register_torchvision()
