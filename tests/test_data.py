"""Dataset loading: digits, the options every dataset takes, torchvision's datasets."""

from __future__ import annotations

import subprocess
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from image_folders import image_hashes

from robench.data import DatasetSplits, Split, load_dataset, to_float
from robench.errors import UserError
from robench.registry import DATASETS

pytestmark = pytest.mark.usefixtures("private_cache")

# --- digits ----------------------------------------------------------------------------------


def test_digits_shapes_dtype_and_range():
    ds = load_dataset("digits")
    assert isinstance(ds, DatasetSplits)
    info = ds.info
    assert (info.name, info.channels, info.image_size, info.num_classes) == ("digits", 1, 8, 10)
    assert info.classes == tuple(str(i) for i in range(10))
    for split in (ds.train, ds.val, ds.test):
        assert split.x.shape[1:] == (1, 8, 8)
        assert split.y.dtype == torch.int64
        x = to_float(split.x)
        assert x.min() >= 0 and x.max() <= 1
    assert to_float(ds.train.x).max() == 1.0  # values were divided by 16, not 255


def test_digits_split_sizes_add_up_and_splits_are_disjoint():
    ds = load_dataset("digits")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1797 - 360 - 144, 144, 360)
    train, val, test = (set(image_hashes(s)) for s in (ds.train, ds.val, ds.test))
    assert len(train) + len(val) + len(test) == 1797
    assert not (train & val) and not (train & test) and not (val & test)


def test_digits_test_split_is_fixed_but_val_moves_with_split_seed():
    a, b = load_dataset("digits", split_seed=0), load_dataset("digits", split_seed=1)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)
    assert set(image_hashes(a.val)) != set(image_hashes(b.val))


def test_same_split_seed_gives_identical_splits():
    a, b = load_dataset("digits", split_seed=7), load_dataset("digits", split_seed=7)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(a, name).x, getattr(b, name).x)
        assert torch.equal(getattr(a, name).y, getattr(b, name).y)
    assert a.info == b.info and a.description == b.description


def test_val_split_is_stratified_by_class():
    counts = torch.bincount(load_dataset("digits").val.y, minlength=10)
    assert counts.min() >= 14 and counts.max() <= 15  # 144 / 10 classes


def test_mean_and_std_come_from_the_training_split():
    ds = load_dataset("digits")
    x = to_float(ds.train.x)
    assert ds.info.mean[0] == pytest.approx(x.mean().item(), abs=1e-5)
    assert ds.info.std[0] == pytest.approx(x.std(unbiased=False).item(), abs=1e-5)


def test_description_is_one_line_with_the_sizes():
    text = load_dataset("digits", train_subset=100).description
    assert "\n" not in text
    for part in ("100 train", "144 val", "360 test", "split_seed 0"):
        assert part in text


# --- common options --------------------------------------------------------------------------


def test_image_size_resizes_every_split():
    ds = load_dataset("digits", image_size=32)
    assert ds.info.image_size == 32
    for split in (ds.train, ds.val, ds.test):
        assert split.x.shape[1:] == (1, 32, 32)
        assert split.x.min() >= 0 and split.x.max() <= 1


def test_train_subset_gives_that_many_training_images_and_keeps_val():
    full, sub = load_dataset("digits"), load_dataset("digits", train_subset=50)
    assert len(sub.train) == 50
    assert set(image_hashes(sub.train)) <= set(image_hashes(full.train))
    assert torch.equal(sub.val.x, full.val.x)


@pytest.mark.parametrize("bad", [0, -3, 1294])
def test_bad_train_subset_is_a_user_error_naming_the_size(bad):
    with pytest.raises(UserError, match=rf"train_subset {bad}.*1293 training images"):
        load_dataset("digits", train_subset=bad)


def test_val_size_zero_gives_an_empty_val_split():
    ds = load_dataset("digits", val_size=0)
    assert len(ds.val) == 0 and ds.val.x.shape[1:] == (1, 8, 8)
    assert len(ds.train) == 1797 - 360


@pytest.mark.parametrize("bad", [-1, 1437, 5000])
def test_bad_val_size_is_a_user_error(bad):
    with pytest.raises(UserError, match=rf"val_size {bad}.*1437 training images"):
        load_dataset("digits", val_size=bad)


@pytest.mark.parametrize("bad", [0, -8])
def test_bad_image_size_is_a_user_error(bad):
    with pytest.raises(UserError, match=rf"image_size.*{bad}"):
        load_dataset("digits", image_size=bad)


def test_unknown_dataset_name_suggests_the_closest():
    with pytest.raises(UserError, match="did you mean 'digits'"):
        load_dataset("digitz")


def test_imagefolder_without_a_path_is_a_user_error():
    for name in ("imagefolder", "imagefolder:"):
        with pytest.raises(UserError, match="imagefolder:<path>"):
            load_dataset(name)


def test_every_dataset_is_registered_with_defaults():
    for name in ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn",
                 "tinyimagenet", "imagefolder"):  # fmt: skip
        entry = DATASETS.entry(name)
        assert entry.meta["augment"] in ("crop+flip", "crop", "none")
        assert "val_size" in entry.meta
    assert DATASETS.entry("svhn").meta["augment"] == "crop"  # flipped digits are other digits


def test_to_float_and_split_helpers():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert torch.equal(to_float(x), torch.tensor([[[[0.0, 1.0]]]]))
    f = torch.rand(2, 1, 2, 2)
    assert to_float(f) is f
    split = Split(f, torch.tensor([0, 1]))
    assert len(split) == 2 and split.to("cpu").x.device.type == "cpu"


# --- torchvision datasets --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, where",
    [
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("mnist", "MNIST/raw/"),
        ("fashion-mnist", "FashionMNIST/raw/"),
        ("svhn", "train_32x32.mat"),
    ],
)
def test_missing_torchvision_dataset_says_where_to_put_the_files(tmp_path, name, where):
    with pytest.raises(UserError) as caught:
        load_dataset(name, data_dir=tmp_path / "data", download=False)
    message = str(caught.value)
    assert where in message and str(tmp_path / "data") in message and "--download" in message
    assert "\n" not in message


def write_idx(path: Path, array: torch.Tensor) -> None:
    """The MNIST IDX format: magic (0, 0, uint8 type 8, ndim), big-endian sizes, bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.numpy().tobytes())


def test_mnist_is_read_from_torchvisions_raw_arrays(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    train_y = torch.arange(30, dtype=torch.uint8) % 10
    train_x = (train_y * 20).view(-1, 1, 1).expand(30, 28, 28).contiguous()
    write_idx(raw / "train-images-idx3-ubyte", train_x)
    write_idx(raw / "train-labels-idx1-ubyte", train_y)
    write_idx(raw / "t10k-images-idx3-ubyte", train_x[:10])
    write_idx(raw / "t10k-labels-idx1-ubyte", train_y[:10])
    ds = load_dataset("mnist", data_dir=tmp_path, val_size=10)
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.shape == (20, 1, 28, 28)
    assert (len(ds.val), len(ds.test), ds.info.augment) == (10, 10, "none")
    for split in (ds.train, ds.val, ds.test):
        assert torch.equal(split.x[:, 0, 0, 0].long(), split.y * 20)


class FakeTorchvisionDataset:
    """Stands in for torchvision's class: raw arrays in torchvision's own layouts."""

    classes = ["even", "odd"]

    def __init__(self, root, download, train=None, split=None):
        rng = np.random.default_rng(0 if (train or split == "train") else 1)
        self.hwc = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
        labels = np.arange(6) % 2
        self.data, self.targets, self.labels = self.hwc, labels.tolist(), labels


class FakeSVHN(FakeTorchvisionDataset):
    def __init__(self, root, download, split):
        super().__init__(root, download, split=split)
        self.data = self.hwc.transpose(0, 3, 1, 2)  # SVHN arrays are N x C x H x W


@pytest.mark.parametrize("name, cls, fake", [
    ("cifar10", "CIFAR10", FakeTorchvisionDataset), ("svhn", "SVHN", FakeSVHN),
])  # fmt: skip
def test_torchvision_arrays_become_uint8_nchw(monkeypatch, tmp_path, name, cls, fake):
    monkeypatch.setattr(torchvision.datasets, cls, fake)
    ds = load_dataset(name, data_dir=tmp_path, val_size=2)
    expected = torch.from_numpy(fake(tmp_path, False, split="test").hwc).permute(0, 3, 1, 2)
    assert ds.test.x.dtype == torch.uint8 and torch.equal(ds.test.x, expected)
    assert ds.test.y.tolist() == [0, 1, 0, 1, 0, 1] and ds.info.image_size == 32


def test_failed_download_is_a_user_error_saying_where_to_put_the_files(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(UserError, match=r"downloading cifar10 .*failed.*cifar-10-batches-py"):
        load_dataset("cifar10", data_dir=tmp_path, download=True)



def test_digits_are_read_without_importing_scikit_learn_and_equal_its_loader():
    import sys

    from sklearn.datasets import load_digits

    from robench.data.digits import digits_arrays

    images, target = digits_arrays()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(target, bunch.target)
    probe = ("import sys; from robench.data.digits import digits_arrays; digits_arrays(); "
             "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
