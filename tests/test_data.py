"""Dataset loading: split sizes and disjointness, options, image folders and their cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

import robench.data.cache as image_cache
from robench.data import DatasetSplits, Split, load_dataset, to_float
from robench.errors import UserError
from robench.registry import DATASETS

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

# Three colour classes and one grey class for the tiny image folders below.
COLOURS = {"apple": (200, 20, 20), "grass": (20, 200, 20), "sky": (20, 20, 200)}
GREY = 90


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own empty image cache, so none reads another's."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ROBENCH_CACHE", str(cache))
    return cache


def image_hashes(split: Split) -> list[str]:
    return [hashlib.sha256(img.numpy().tobytes()).hexdigest() for img in split.x]


def write_image(path: Path, colour, size=(8, 8), mode="RGB", marker: int | None = None) -> None:
    """A constant image; `marker` sets the bottom-right pixel so images of a class differ."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fill = (*colour, 128) if mode == "RGBA" else colour if mode == "L" else tuple(colour)
    image = Image.new(mode, size[::-1], fill)
    if marker is not None:
        image.putpixel((size[1] - 1, size[0] - 1), marker if mode == "L" else (marker,) * 3)
    image.save(path)


def make_folder(root: Path, n_train=10, n_test=3, test_name="test", grey_class=True) -> Path:
    """train/ and test/ with one constant colour per class, plus a grey class if asked."""
    for split, count in (("train", n_train), (test_name, n_test)):
        for cls, colour in COLOURS.items():
            for i in range(count):
                write_image(root / split / cls / f"{i:03d}.png", colour, marker=i)
        if grey_class:
            for i in range(count):
                write_image(root / split / "stone" / f"{i:03d}.png", GREY, mode="L", marker=i)
    return root


def class_of_pixel(pixel: tuple[int, ...]) -> str:
    if pixel == (GREY, GREY, GREY):
        return "stone"
    return next(cls for cls, colour in COLOURS.items() if colour == pixel)


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


# --- image folders ---------------------------------------------------------------------------


def test_imagefolder_loads_classes_labels_and_channels(tmp_path):
    root = make_folder(tmp_path / "imgs")
    ds = load_dataset(f"imagefolder:{root}", val_size=4)
    assert ds.info.name == f"imagefolder:{root.resolve()}"
    assert ds.info.classes == ("apple", "grass", "sky", "stone")
    assert (ds.info.channels, ds.info.image_size, ds.info.augment) == (3, 8, "crop+flip")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (36, 4, 12)
    assert ds.train.x.dtype == torch.uint8
    for split in (ds.train, ds.val, ds.test):
        for image, label in zip(split.x, split.y, strict=True):
            pixel = tuple(image[:, 0, 0].tolist())
            assert class_of_pixel(pixel) == ds.info.classes[label]
            assert (image[:, :4, :4] == image[:, :1, :1]).all()  # grey is expanded to RGB


def test_imagefolder_mean_and_std_match_the_training_images(tmp_path):
    ds = load_dataset(f"imagefolder:{make_folder(tmp_path / 'imgs')}")
    x = to_float(ds.train.x)
    assert ds.info.mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-5)
    assert ds.info.std == pytest.approx(x.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-5)


def test_a_channel_that_never_varies_gets_std_one(tmp_path):
    root = tmp_path / "rg"
    for split in ("train", "test"):
        write_image(root / split / "red" / "0.png", (255, 0, 0))
        write_image(root / split / "green" / "0.png", (0, 255, 0))
    assert load_dataset(f"imagefolder:{root}", val_size=0).info.std[2] == 1.0


def test_all_grey_imagefolder_has_one_channel(tmp_path):
    root = tmp_path / "grey"
    for split in ("train", "test"):
        for cls, value in (("dark", 10), ("light", 240)):
            for i in range(3):
                write_image(root / split / cls / f"{i}.png", value, mode="L")
    ds = load_dataset(f"imagefolder:{root}", val_size=0)
    assert ds.info.channels == 1 and ds.train.x.shape == (6, 1, 8, 8)
    assert torch.equal(ds.train.x[:, 0, 0, 0].long(), torch.tensor([10] * 3 + [240] * 3))


def test_imagefolder_alpha_is_dropped_and_jpeg_read(tmp_path):
    root = tmp_path / "mixed"
    for split in ("train", "test"):
        write_image(root / split / "a" / "0.png", (10, 20, 30), mode="RGBA")
        write_image(root / split / "b" / "0.JPG", (200, 200, 200))
    ds = load_dataset(f"imagefolder:{root}", val_size=0)
    assert ds.info.channels == 3
    assert ds.train.x[0, :, 0, 0].tolist() == [10, 20, 30]
    assert (ds.train.x[1].int() - 200).abs().max() <= 2  # JPEG is lossy


def test_imagefolder_uses_val_folder_when_there_is_no_test_folder(tmp_path):
    root = make_folder(tmp_path / "imgs", n_test=2, test_name="val")
    ds = load_dataset(f"imagefolder:{root}", val_size=0)
    assert len(ds.test) == 8 and "val/" in ds.description


def test_imagefolder_default_val_is_a_tenth_of_train(tmp_path):
    ds = load_dataset(f"imagefolder:{make_folder(tmp_path / 'imgs')}")
    assert len(ds.val) == 4 and len(ds.train) == 36


def test_imagefolder_val_is_seeded_and_stratified(tmp_path):
    root = make_folder(tmp_path / "imgs", n_train=20)
    name = f"imagefolder:{root}"
    a, b = load_dataset(name, val_size=8), load_dataset(name, val_size=8)
    assert torch.equal(torch.bincount(a.val.y), torch.tensor([2, 2, 2, 2]))
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.train.y, b.train.y)
    vals = {frozenset(image_hashes(load_dataset(name, val_size=8, split_seed=seed).val))
            for seed in range(4)}  # fmt: skip
    assert len(vals) > 1  # other seeds choose other images


def test_imagefolder_is_decoded_once_and_then_read_from_the_cache(
    tmp_path, monkeypatch, private_cache
):
    root = make_folder(tmp_path / "imgs")
    first = load_dataset(f"imagefolder:{root}")
    cached = list(private_cache.glob("*.safetensors"))
    assert len(cached) == 1 and not list(private_cache.glob("*.tmp"))

    def no_decoding(files):
        raise AssertionError("decoded again although the cache was valid")

    monkeypatch.setattr(image_cache, "decode_all", no_decoding)
    second = load_dataset(f"imagefolder:{root}")
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test.y, second.test.y)


def test_changing_a_file_invalidates_the_cache(tmp_path, private_cache):
    root = make_folder(tmp_path / "imgs")
    load_dataset(f"imagefolder:{root}")
    changed = root / "train" / "apple" / "000.png"
    size = changed.stat().st_size
    write_image(changed, (1, 2, 3), marker=0)
    os.utime(changed, ns=(1, 1))
    assert changed.stat().st_size == size  # only the modification time tells them apart
    ds = load_dataset(f"imagefolder:{root}", val_size=0)
    assert len(list(private_cache.glob("*.safetensors"))) == 2
    assert ds.train.x[0, :, 0, 0].tolist() == [1, 2, 3]


def test_a_damaged_cache_is_rebuilt(tmp_path, private_cache):
    root = make_folder(tmp_path / "imgs")
    load_dataset(f"imagefolder:{root}")
    (cache_file,) = private_cache.glob("*.safetensors")
    cache_file.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unreadable cache"):
        ds = load_dataset(f"imagefolder:{root}")
    assert len(ds.train) + len(ds.val) == 40


def test_the_image_cache_file_gets_ordinary_permissions(tmp_path, private_cache):
    """Not a temp file's private 0600: a cache shared by a team must be readable per the umask."""
    root = make_folder(tmp_path / "imgs")
    old_umask = os.umask(0o022)
    try:
        load_dataset(f"imagefolder:{root}")
    finally:
        os.umask(old_umask)
    (cache_file,) = private_cache.glob("*.safetensors")
    assert cache_file.stat().st_mode & 0o777 == 0o644


def test_imagefolder_resize_keeps_uint8(tmp_path):
    ds = load_dataset(f"imagefolder:{make_folder(tmp_path / 'imgs')}", image_size=4)
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.shape[1:] == (3, 4, 4)
    assert ds.info.image_size == 4


def test_non_square_images_need_image_size(tmp_path):
    root = tmp_path / "wide"
    for split in ("train", "test"):
        write_image(root / split / "a" / "0.png", (1, 2, 3), size=(4, 8))
    with pytest.raises(UserError, match="4x8, not square.*--image-size"):
        load_dataset(f"imagefolder:{root}", val_size=0)
    assert load_dataset(f"imagefolder:{root}", val_size=0, image_size=4).info.image_size == 4


def broken_layouts(root: Path) -> dict[str, tuple[Path, str]]:
    """Each broken layout: the folder to load, and text the error must contain."""
    layouts = {}
    layouts["missing"] = (root / "nowhere", "does not exist")
    (root / "notrain" / "test" / "a").mkdir(parents=True)
    layouts["no train/"] = (root / "notrain", "no train/ subfolder")
    write_image(root / "notest" / "train" / "a" / "0.png", (1, 1, 1))
    layouts["no test/ or val/"] = (root / "notest", "neither a test/ nor a val/")
    (root / "noclasses" / "train").mkdir(parents=True)
    (root / "noclasses" / "test").mkdir(parents=True)
    layouts["no classes"] = (root / "noclasses", "an image folder with no classes")
    make_folder(root / "emptyclass", grey_class=False)
    (root / "emptyclass" / "train" / "zebra").mkdir()
    (root / "emptyclass" / "test" / "zebra").mkdir()
    (root / "emptyclass" / "test" / "zebra" / "notes.txt").write_text("no image here")
    layouts["class without images"] = (root / "emptyclass", "zebra has no images")
    make_folder(root / "mismatch", grey_class=False)
    (root / "mismatch" / "test" / "sky").rename(root / "mismatch" / "test" / "cloud")
    layouts["test classes differ"] = (root / "mismatch", "missing sky; extra cloud")
    make_folder(root / "sizes", grey_class=False)
    write_image(root / "sizes" / "test" / "sky" / "odd.png", (1, 1, 1), size=(9, 9))
    layouts["mixed sizes"] = (root / "sizes", "odd.png is 9x9")
    make_folder(root / "corrupt", grey_class=False)
    (root / "corrupt" / "train" / "sky" / "bad.png").write_bytes(b"not a png")
    layouts["undecodable"] = (root / "corrupt", "could not decode image")
    return layouts


@pytest.mark.parametrize(
    "case",
    [
        "missing", "no train/", "no test/ or val/", "no classes", "class without images",
        "test classes differ", "mixed sizes", "undecodable",
    ],
)  # fmt: skip
def test_broken_imagefolder_is_a_user_error_naming_the_path(tmp_path, case, private_cache):
    path, text = broken_layouts(tmp_path)[case]
    with pytest.raises(UserError) as caught:
        load_dataset(f"imagefolder:{path}")
    message = str(caught.value)
    assert text in message and str(path.resolve()) in message and "\n" not in message
    assert not list(private_cache.glob("*"))  # a failed decode leaves no cache behind


# --- tiny imagenet ---------------------------------------------------------------------------


def make_tinyimagenet(data_dir: Path) -> dict[str, tuple[int, int, int]]:
    """The original layout with 3 wnids, 4 train and 2 val images each, one colour per wnid."""
    root = data_dir / "tiny-imagenet-200"
    colours = {"n02": (200, 0, 0), "n01": (0, 200, 0), "n03": (0, 0, 200)}
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("n02\nn01\nn03\n")  # not sorted, like the real file
    lines = []
    for k, (wnid, colour) in enumerate(colours.items()):
        for i in range(4):
            write_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", colour)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(2):
            name = f"val_{k * 2 + i}.JPEG"
            write_image(root / "val" / "images" / name, colour)
            lines.append(f"{name}\t{wnid}\t0\t0\t7\t7")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "test" / "images").mkdir(parents=True)
    write_image(root / "test" / "images" / "test_0.JPEG", (9, 9, 9))
    return colours


def test_tinyimagenet_loads_the_official_val_set_as_test(tmp_path):
    colours = make_tinyimagenet(tmp_path)
    ds = load_dataset("tinyimagenet", data_dir=tmp_path, val_size=3)
    assert ds.info.classes == ("n01", "n02", "n03") and ds.info.num_classes == 3
    assert (len(ds.train), len(ds.val), len(ds.test)) == (9, 3, 6)
    assert ds.info.channels == 3 and ds.info.image_size == 8
    for split in (ds.train, ds.val, ds.test):
        for image, label in zip(split.x, split.y, strict=True):
            expected = torch.tensor(colours[ds.info.classes[label]])
            assert (image[:, 4, 4].int() - expected).abs().max() <= 3  # JPEG is lossy
    assert torch.equal(torch.bincount(ds.test.y), torch.tensor([2, 2, 2]))


def test_missing_tinyimagenet_names_the_folder_and_layout(tmp_path):
    with pytest.raises(UserError) as caught:
        load_dataset("tinyimagenet", data_dir=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "tiny-imagenet-200") in message
    assert "wnids.txt" in message and "val/val_annotations.txt" in message


# --- the real CIFAR-10 copy ------------------------------------------------------------------


def unpack_dir(fallback: Path) -> Path:
    """A folder in RAM (/dev/shm) where one has room, else `fallback`: creating 60,000 files
    takes under a second on tmpfs and, on some virtual disks, over half a minute."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2**30:
        return Path(tempfile.mkdtemp(prefix="robench-test-", dir=shm))
    return fallback


@pytest.fixture
def cifar10_jpeg(tmp_path):
    """The shared copy unpacked, and removed afterwards (pytest keeps its last temporary
    folders, and 60,000 stale files in each slow down every later run)."""
    archive = SHARED_DATA / "cifar10-jpeg.tar.gz"
    if not archive.exists():
        pytest.skip(f"the shared CIFAR-10 copy is not at {archive}")
    target = unpack_dir(tmp_path / "unpacked")
    try:
        if shutil.which("tar"):  # three times faster than tarfile
            target.mkdir(exist_ok=True)
            subprocess.run(["tar", "xzf", str(archive), "-C", str(target)], check=True)
        else:
            with tarfile.open(archive) as opened:
                opened.extractall(target, filter="data")
        yield target / "cifar10-jpeg"
    finally:
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def test_shared_cifar10_jpeg_copy_loads_as_an_image_folder(cifar10_jpeg, monkeypatch):
    name = f"imagefolder:{cifar10_jpeg}"
    ds = load_dataset(name)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (49000, 1000, 10000)
    assert ds.train.x.shape[1:] == (3, 32, 32) and ds.train.x.dtype == torch.uint8
    assert ds.info.classes == CIFAR10_CLASSES
    assert torch.equal(torch.bincount(ds.test.y), torch.full((10,), 1000))
    assert ds.info.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=0.005)

    monkeypatch.setattr(image_cache, "decode_all", None)  # the second load must not decode
    start = time.perf_counter()
    again = load_dataset(name)
    assert time.perf_counter() - start < 15
    assert torch.equal(again.val.x, ds.val.x)


def test_digits_are_read_without_importing_scikit_learn_and_equal_its_loader():
    import subprocess
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
