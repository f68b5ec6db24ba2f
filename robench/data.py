"""Datasets as in-memory tensors, split into train / val / test once at load time.

Every dataset is held whole in memory as uint8 (or, for digits, float32) N x C x H x W
tensors: the training loop moves a split to the device once and slices batches from it, so
nothing here runs per image at training time. `to_float` turns a batch into [0, 1] floats
on the device, which keeps the host copy four times smaller than float storage.

The validation split is always held out of the training images with a seeded, class
stratified sample (`split_seed`), never taken from the test set: checkpoints are selected on
it, and selecting on the test set would overstate accuracy. The test split is the official
test set where one exists (fixed, independent of `split_seed`), so results stay comparable.
`train_subset` takes a further stratified sample from the same seeded generator, after val,
so changing it never changes the val split.

Mean and std are computed from the training split (after holding out val, before
`train_subset`) for every dataset alike, instead of copying published constants: the published
CIFAR-10 std differs between sources (0.2023 vs 0.2470), the computed value is right for image
folders too, and subsets do not change a model's normalisation.

Default val sizes: digits 144 (of 1,437 after its fixed 360-image test split), the torchvision
datasets 1,000, image folders and Tiny ImageNet a tenth of the training images, at most 1,000.

Image folders (`imagefolder:<path>`, `tinyimagenet`) are decoded once, on every core, into a
safetensors cache in $ROBENCH_CACHE or ~/.cache/robench, keyed on the folder's absolute path
and each file's name, label, size and mtime, so any change to the folder decodes it again.
All images must have one size (the error names the first that differs: guessing a resize
would silently change the data); a folder of grey images keeps one channel, anything else
becomes RGB with alpha dropped.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from robench.errors import UserError
from robench.registry import DATASETS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
IMAGEFOLDER_PREFIX = "imagefolder:"

_DIGITS_TEST_SEED = 1797  # fixed so the digits test split never moves with split_seed
_DIGITS_TEST_SIZE = 360
_DEFAULT_DATA_DIR = "./data"
_TENTH = "10%, at most 1000"  # the val_size default of folders of any size
_CACHE_VERSION = 1  # bump when the cache file layout changes, so old caches are not read
_DECODE_CHUNK = 512  # images per decode task: large enough to amortise the thread hand-off
_STATS_CHUNK = 4096  # images per chunk when computing mean/std or resizing, to bound memory


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    augment: str


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class DatasetSplits:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    description: str


@dataclass
class _Raw:
    """What a loader hands to `load_dataset`: the training pool and the test split."""

    train: Split
    test: Split
    classes: tuple[str, ...]
    name: str
    test_source: str  # how the test split was chosen, for the description line


def to_float(x: torch.Tensor) -> torch.Tensor:
    """A batch in [0, 1] as float: uint8 is divided by 255 where it lies (e.g. on the GPU)."""
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    if x.is_floating_point():
        return x.float()
    raise TypeError(f"images must be uint8 or float, got {x.dtype}")


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    image_size: int | None = None,
    train_subset: int | None = None,
    val_size: int | None = None,
    split_seed: int = 0,
) -> DatasetSplits:
    """Load `name` and split it; see the module docstring for how the splits are chosen.

    `data_dir` (default ./data) is where torchvision datasets and tiny-imagenet-200/ live;
    an `imagefolder:<path>` path is taken as given (relative to the working directory).
    """
    if image_size is not None:  # checked first: a typo should not wait for a decode
        _check_positive("image_size", image_size, "a positive number of pixels")
    loader, meta, root = _resolve(name, data_dir)
    raw = loader(root, download)
    if image_size is not None:
        raw.train = Split(_resize(raw.train.x, image_size), raw.train.y)
        raw.test = Split(_resize(raw.test.x, image_size), raw.test.y)
    side = _square_side(raw)

    generator = torch.Generator().manual_seed(split_seed)
    n_val = _val_count(raw, meta.get("val_size"), val_size)
    val_idx, train_idx = _split_indices(raw.train.y, n_val, generator)
    train = _take(raw.train, train_idx)
    val = _take(raw.train, val_idx)
    mean, std = _channel_stats(train.x)
    pool_size = len(train)
    if train_subset is not None:
        _check_subset(raw.name, train_subset, pool_size, n_val)
        train = _take(train, _split_indices(train.y, train_subset, generator)[0])

    info = DatasetInfo(
        name=raw.name,
        channels=raw.train.x.shape[1],
        image_size=side,
        num_classes=len(raw.classes),
        mean=mean,
        std=std,
        classes=raw.classes,
        augment=meta["augment"],
    )
    desc = _describe(info, train, val, raw, pool_size, split_seed)
    return DatasetSplits(info, train, val, raw.test, desc)


# --- name lookup and split arithmetic --------------------------------------------------------


def _resolve(name: str, data_dir: str | Path | None) -> tuple[Callable, dict, Path]:
    """The loader, its meta and the root it reads from, for a dataset name."""
    if name.startswith(IMAGEFOLDER_PREFIX):
        path = name[len(IMAGEFOLDER_PREFIX) :]
        if not path:
            raise UserError(
                f"dataset {name!r} names no folder; write imagefolder:<path>, e.g. "
                "imagefolder:data/my-images with train/ and test/ class folders inside."
            )
        entry = DATASETS.entry("imagefolder")
        return entry.obj, entry.meta, Path(path)
    entry = DATASETS.entry(name)
    if entry.meta.get("takes_path"):
        raise UserError(
            f"dataset {name!r} needs a folder: write {name}:<path>, e.g. {name}:data/my-images."
        )
    return entry.obj, entry.meta, Path(data_dir if data_dir is not None else _DEFAULT_DATA_DIR)


def _check_positive(what: str, value: int, valid: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{what} must be {valid}, got {value!r}.")


def _val_count(raw: _Raw, default: int | str, requested: int | None) -> int:
    """The requested val size, else the dataset's default (a number, or a tenth up to 1000)."""
    pool = len(raw.train)
    n = requested
    if n is None:
        n = default if isinstance(default, int) else min(1000, pool // 10)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < pool:
        raise UserError(
            f"val_size {n!r} is not valid for {raw.name}, which has {pool} training "
            f"images: pass a number from 0 to {pool - 1}."
        )
    return n


def _check_subset(name: str, n: int, pool: int, n_val: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= pool:
        raise UserError(
            f"train_subset {n!r} is not valid for {name}, which has {pool} training images after "
            f"holding out {n_val} for validation: pass a number from 1 to {pool}."
        )


def _stratified_order(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random order of indices in which every prefix holds the classes in proportion.

    Each image gets its fractional position within its own (shuffled) class; sorting by
    that interleaves the classes, so taking the first n gives a stratified random sample.
    Sorts run on float64 keys: torch's CPU sort of many equal integers is ~50x slower.
    """
    n = len(y)
    perm = torch.randperm(n, generator=generator)
    yp = y[perm]
    by_class = torch.argsort(yp.double() * n + torch.arange(n, dtype=torch.float64))
    counts = torch.bincount(yp)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.float64)
    rank[by_class] = (torch.arange(n) - starts[yp[by_class]]).double()
    position = (2 * rank + 1) / (2 * counts[yp].double())  # equal fractions, equal floats
    return perm[torch.argsort(position, stable=True)]  # ties stay in the shuffled order


def _split_indices(
    y: torch.Tensor, n_first: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified random n_first indices and the rest, each in ascending order."""
    chosen = torch.zeros(len(y), dtype=torch.bool)
    chosen[_stratified_order(y, generator)[:n_first]] = True
    return chosen.nonzero().squeeze(1), (~chosen).nonzero().squeeze(1)


def _take(split: Split, idx: torch.Tensor) -> Split:
    return Split(split.x[idx], split.y[idx])


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units.

    uint8 images go through a 256-bin histogram per channel: exact, and several times faster
    than float sums over 150M values. A channel that never varies gets std 1, so a Normalize
    layer stays finite on it.
    """
    if x.dtype == torch.uint8:
        mean, mean_sq = _uint8_moments(x)
    else:
        mean, mean_sq = _float_moments(x)
    std = (mean_sq - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())


def _uint8_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    hist = torch.stack(
        [torch.bincount(x[:, c].reshape(-1), minlength=256) for c in range(x.shape[1])]
    ).double()
    levels = torch.arange(256, dtype=torch.float64) / 255
    count = hist.sum(1).clamp_min(1)
    return hist @ levels / count, hist @ levels.square() / count


def _float_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, len(x), _STATS_CHUNK):
        chunk = x[start : start + _STATS_CHUNK].double()
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    count = max(1, x.numel() // x.shape[1])
    return total / count, total_sq / count


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to size x size, antialiased when shrinking; keeps the storage dtype."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    shrink = size < max(x.shape[-2:])
    out = torch.empty((*x.shape[:2], size, size), dtype=x.dtype)
    for start in range(0, len(x), _STATS_CHUNK):
        chunk = to_float(x[start : start + _STATS_CHUNK])
        chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=shrink)
        out[start : start + len(chunk)] = _from_float(chunk.clamp_(0, 1), x.dtype)
    return out


def _from_float(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.uint8:
        return x.mul(255).round_().to(torch.uint8)
    return x.to(dtype)


def _square_side(raw: _Raw) -> int:
    height, width = raw.train.x.shape[-2:]
    if height != width:
        raise UserError(
            f"the images of {raw.name} are {height}x{width}, not square; pass --image-size N "
            "to resize them to N x N."
        )
    return int(height)


def _describe(info: DatasetInfo, train: Split, val: Split, raw: _Raw, pool: int, seed: int) -> str:
    subset = f" (seeded subset of {pool})" if len(train) != pool else ""
    return (
        f"{info.name}: {len(train)} train{subset}, {len(val)} val (stratified random sample of "
        f"the training images, split_seed {seed}), {len(raw.test)} test ({raw.test_source}); "
        f"{info.channels}x{info.image_size}x{info.image_size}, {info.num_classes} classes"
    )


# --- digits ----------------------------------------------------------------------------------


@DATASETS.register(
    "digits",
    "scikit-learn's 1,797 8x8 grey handwritten digits; ships with the package (the default)",
    val_size=144,
    augment="none",
)
def _load_digits(root: Path, download: bool) -> _Raw:
    """Digits has no official test set, so a fixed stratified 360 images play that role."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.long)
    generator = torch.Generator().manual_seed(_DIGITS_TEST_SEED)
    test_idx, train_idx = _split_indices(y, _DIGITS_TEST_SIZE, generator)
    return _Raw(
        train=_take(Split(x, y), train_idx),
        test=_take(Split(x, y), test_idx),
        classes=tuple(str(c) for c in range(10)),
        name="digits",
        test_source=f"fixed stratified sample of {_DIGITS_TEST_SIZE}, independent of split_seed",
    )


# --- torchvision datasets --------------------------------------------------------------------

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


def _load_torchvision(name: str) -> Callable[[Path, bool], _Raw]:
    def load(root: Path, download: bool) -> _Raw:
        train, classes = _torchvision_split(name, root, True, download)
        test, _ = _torchvision_split(name, root, False, download)
        return _Raw(train, test, tuple(classes), name, "official test set")

    load.__doc__ = f"{name} from torchvision's files under the data directory."
    return load


def _register_torchvision() -> None:
    for name, source in _TORCHVISION.items():
        loader = _load_torchvision(name)
        DATASETS.add(name, loader, source.description, val_size=1000, augment=source.augment)


_register_torchvision()


# --- image folders ---------------------------------------------------------------------------


@dataclass
class _Manifest:
    """The files of an image folder and their labels, before any decoding."""

    root: Path
    classes: tuple[str, ...]
    train_files: list[str]
    train_labels: list[int]
    test_files: list[str]
    test_labels: list[int]
    test_source: str


def _image_files(folder: Path) -> list[str]:
    """The images directly in `folder`, sorted by name; other files are ignored.

    Plain strings, not Paths: for 100k files, Path objects alone cost a second per load.
    """
    with os.scandir(folder) as entries:
        files = [
            e.path
            for e in entries
            if e.is_file()
            and not e.name.startswith(".")
            and e.name.lower().endswith(IMAGE_SUFFIXES)
        ]
    if not files:
        raise UserError(
            f"class folder {folder} has no images; put files ending in "
            f"{', '.join(IMAGE_SUFFIXES)} in it or remove it."
        )
    return sorted(files)


def _class_folders(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise UserError(
            f"{folder} is an image folder with no classes: it needs one subfolder per class "
            "holding that class's images."
        )
    return names


def _list_split(folder: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    files: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        found = _image_files(folder / cls)
        files += found
        labels += [label] * len(found)
    return files, labels


def _imagefolder_manifest(root: Path) -> _Manifest:
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise UserError(
            f"image folder {root} does not exist; imagefolder:<path> needs a folder holding "
            "train/ and test/ (or val/) folders of class folders."
        )
    if not (root / "train").is_dir():
        raise UserError(
            f"image folder {root} has no train/ subfolder; it needs train/<class>/<images> "
            "and test/<class>/<images> (or val/ instead of test/)."
        )
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if test_dir is None:
        raise UserError(
            f"image folder {root} has neither a test/ nor a val/ subfolder; put the test "
            f"images in {root / 'test'}/<class>/."
        )
    classes = _class_folders(root / "train")
    test_classes = _class_folders(test_dir)
    if test_classes != classes:
        raise UserError(
            f"the classes in {test_dir} ({_diff(test_classes, classes)}) do not match those "
            f"in {root / 'train'}; both need the same class folders."
        )
    train_files, train_labels = _list_split(root / "train", classes)
    test_files, test_labels = _list_split(test_dir, classes)
    return _Manifest(
        root,
        tuple(classes),
        train_files,
        train_labels,
        test_files,
        test_labels,
        f"{test_dir.name}/ folder",
    )


def _diff(got: Sequence[str], want: Sequence[str]) -> str:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    parts = [
        f"missing {', '.join(missing)}" if missing else "",
        f"extra {', '.join(extra)}" if extra else "",
    ]
    return "; ".join(p for p in parts if p)


@DATASETS.register(
    "imagefolder",
    "your own images: imagefolder:<path> with train/ and test/ (or val/) folders of class folders",
    val_size=_TENTH,
    augment="crop+flip",
    takes_path=True,
)
def _load_imagefolder(root: Path, download: bool) -> _Raw:
    """Decoded once into a cache file (see `_decode_cached`), so later loads are fast."""
    manifest = _imagefolder_manifest(root)
    return _raw_from_manifest(manifest, f"{IMAGEFOLDER_PREFIX}{manifest.root}")


@DATASETS.register(
    "tinyimagenet",
    "Tiny ImageNet, 3x64x64, 200 classes, 100k train / 10k test (the official val set)",
    val_size=_TENTH,
    augment="crop+flip",
)
def _load_tinyimagenet(data_dir: Path, download: bool) -> _Raw:
    """Classes are the sorted wnids, as an ImageFolder over train/ would number them."""
    root = (data_dir / "tiny-imagenet-200").expanduser().resolve()
    needed = ("wnids.txt", "train", "val/images", "val/val_annotations.txt")
    missing = [n for n in needed if not (root / n).exists()]
    if missing:
        raise UserError(
            f"tinyimagenet is not in {data_dir.as_posix()}/ (missing {', '.join(missing)} in "
            f"{root}): unzip http://cs231n.stanford.edu/tiny-imagenet-200.zip there so that "
            "tiny-imagenet-200/ holds wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG "
            "and val/val_annotations.txt."
        )
    classes = sorted((root / "wnids.txt").read_text().split())
    train_files: list[str] = []
    train_labels: list[int] = []
    for label, wnid in enumerate(classes):
        found = _image_files(root / "train" / wnid / "images")
        train_files += found
        train_labels += [label] * len(found)
    test_files, test_labels = _tinyimagenet_val(root, classes)
    manifest = _Manifest(
        root,
        tuple(classes),
        train_files,
        train_labels,
        test_files,
        test_labels,
        "official val set",
    )
    return _raw_from_manifest(manifest, "tinyimagenet")


def _tinyimagenet_val(root: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    index = {wnid: i for i, wnid in enumerate(classes)}
    annotations = root / "val" / "val_annotations.txt"
    rows = []
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise UserError(
                f"line {number} of {annotations} does not name a file and a wnid from "
                f"wnids.txt: {line!r}."
            )
        rows.append((fields[0], index[fields[1]]))
    rows.sort()
    images = root / "val" / "images"
    return [os.path.join(images, f) for f, _ in rows], [label for _, label in rows]


def _raw_from_manifest(manifest: _Manifest, name: str) -> _Raw:
    train_x, test_x = _decode_cached(manifest)
    return _Raw(
        train=Split(train_x, torch.tensor(manifest.train_labels, dtype=torch.long)),
        test=Split(test_x, torch.tensor(manifest.test_labels, dtype=torch.long)),
        classes=manifest.classes,
        name=name,
        test_source=manifest.test_source,
    )


# --- decoding and the cache ------------------------------------------------------------------


def cache_dir() -> Path:
    """$ROBENCH_CACHE, else ~/.cache/robench: decoded image folders are kept there."""
    env = os.environ.get("ROBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "robench"


def _cache_key(manifest: _Manifest) -> str:
    """Changes whenever the folder, a file, a file's label, size or mtime changes."""
    digest = hashlib.sha256(f"robench-images-v{_CACHE_VERSION}\0{manifest.root}\n".encode())
    digest.update("\0".join(manifest.classes).encode() + b"\n")
    for tag, files, labels in (
        ("train", manifest.train_files, manifest.train_labels),
        ("test", manifest.test_files, manifest.test_labels),
    ):
        for path, label in zip(files, labels, strict=True):
            try:
                st = os.stat(path)
            except OSError as err:
                raise UserError(f"cannot read image {path}: {err.strerror}.") from None
            digest.update(f"{tag}\0{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _decode_cached(manifest: _Manifest) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test images as uint8 tensors, decoded once and then read from the cache."""
    from safetensors.torch import load_file

    path = cache_dir() / f"{_cache_key(manifest)}.safetensors"
    if path.exists():
        try:
            cached = load_file(path)
            train, test = cached["train"], cached["test"]
            if (len(train), len(test)) != (len(manifest.train_files), len(manifest.test_files)):
                raise ValueError("it holds a different number of images")
            return train, test
        except Exception as err:  # a damaged cache is rebuilt, not fatal
            warnings.warn(f"ignoring unreadable cache {path} ({err}); decoding again", stacklevel=2)
    images = _decode_all(manifest.train_files + manifest.test_files)
    train, test = images[: len(manifest.train_files)], images[len(manifest.train_files) :]
    _write_cache(path, {"train": train.contiguous(), "test": test.contiguous()})
    return train, test


def _write_cache(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Written to a temporary file and renamed, so an interrupted write leaves no cache."""
    from safetensors.torch import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file(tensors, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as err:
        warnings.warn(f"could not write the image cache {path} ({err})", stacklevel=3)


def _worker_count() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, cpus or 1))


def _decode_all(files: list[str]) -> torch.Tensor:
    """All files as one N x C x H x W uint8 tensor, decoded in parallel chunks.

    torchvision's decoders release the GIL, so threads use every core without the cost of
    shipping tensors between processes. Every image is decoded as RGB (grey, palette, alpha
    and CMYK handled by torchvision; alpha is dropped); a folder whose images are all grey
    is stored with one channel. All images must have the same size.
    """
    chunks = [files[i : i + _DECODE_CHUNK] for i in range(0, len(files), _DECODE_CHUNK)]
    pool = ThreadPoolExecutor(_worker_count())
    try:
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its decoders (for torchcodec) with a warning per
            # call; they still work, and 60,000 copies of one warning would swamp any log.
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            stacks = list(pool.map(_decode_chunk, chunks))
    finally:  # after a bad file, do not decode the rest of the folder first
        pool.shutdown(cancel_futures=True)
    first = tuple(stacks[0].shape[-2:])
    for chunk, stack in zip(chunks, stacks, strict=True):
        if tuple(stack.shape[-2:]) != first:
            _raise_size(chunk[0], tuple(stack.shape[-2:]), chunks[0][0], first)
    images = torch.cat(stacks) if len(stacks) > 1 else stacks[0]
    if torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2]):
        images = images[:, :1].contiguous()
    return images


def _decode_chunk(files: list[str]) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image, read_file
    from torchvision.transforms.v2.functional import to_dtype

    images = []
    for path in files:
        try:
            image = decode_image(read_file(path), mode=ImageReadMode.RGB)
        except RuntimeError as err:
            reason = " ".join(str(err).split())
            raise UserError(f"could not decode image {path} ({reason}).") from None
        if image.dtype != torch.uint8:  # e.g. 16-bit PNG
            image = to_dtype(image, torch.uint8, scale=True)
        if images and image.shape != images[0].shape:
            _raise_size(path, tuple(image.shape[-2:]), files[0], tuple(images[0].shape[-2:]))
        images.append(image)
    return torch.stack(images)


def _raise_size(path: str, size: tuple, first_path: str, first: tuple) -> None:
    raise UserError(
        f"image {path} is {size[0]}x{size[1]} but {first_path} is {first[0]}x{first[1]}; all "
        "images of an image folder must have the same size (resize them first)."
    )
