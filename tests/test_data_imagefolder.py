"""Image folders: classes, channels, statistics, the decoded-image cache, broken layouts,
Tiny ImageNet's layout and the real CIFAR-10 copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import torch
from image_folders import class_of_pixel, image_hashes, make_folder, write_image

import robench.data.cache as image_cache
from robench.data import load_dataset, to_float
from robench.errors import UserError

pytestmark = pytest.mark.usefixtures("private_cache")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


# --- image folders ---------------------------------------------------------------------------


def test_imagefolder_loads_classes_labels_and_channels(tmp_path):
    root = make_folder(tmp_path / "imgs")
    ds = load_dataset(f"imagefolder:{root}", val_size=4)
    assert re.fullmatch(r"imagefolder:[0-9a-f]{12}", ds.info.name)  # its content, not its path
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


