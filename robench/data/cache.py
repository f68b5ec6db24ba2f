"""The decoded-image cache: image folders are decoded once and then read from one file.

The cache lives in $ROBENCH_CACHE or ~/.cache/robench as one safetensors file per folder,
keyed on the folder's absolute path and each file's name, label, size and mtime, so any
change to the folder decodes it again. Beside the images it keeps the folder's content
fingerprint (`manifest.fingerprint`), which names the dataset: reading every file's bytes
again would cost a cached load as much as a decode. A damaged cache is decoded again, and a
cache that cannot be written is a warning, never an error: the decoded images are usable
either way.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

from robench.atomic import atomic_path
from robench.data.decode import decode_all
from robench.data.manifest import Manifest, fingerprint
from robench.errors import UserError

# bump when the cache file layout changes, so old caches are not read (2: the fingerprint)
_CACHE_VERSION = 2


def cache_dir() -> Path:
    """$ROBENCH_CACHE, else ~/.cache/robench: decoded image folders are kept there."""
    env = os.environ.get("ROBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "robench"


def _cache_key(manifest: Manifest) -> str:
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


def decode_cached(manifest: Manifest) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Train and test images as uint8 tensors and the folder's content fingerprint, decoded
    and hashed once and then read from the cache."""
    from safetensors import safe_open

    path = cache_dir() / f"{_cache_key(manifest)}.safetensors"
    if path.exists():
        try:
            with safe_open(str(path), framework="pt") as cached:
                train, test = cached.get_tensor("train"), cached.get_tensor("test")
                found = (cached.metadata() or {}).get("fingerprint")
            if (len(train), len(test)) != (len(manifest.train_files), len(manifest.test_files)):
                raise ValueError("it holds a different number of images")
            if not found:
                raise ValueError("it holds no fingerprint")
            return train, test, found
        except Exception as err:  # a damaged cache is rebuilt, not fatal
            warnings.warn(f"ignoring unreadable cache {path} ({err}); decoding again", stacklevel=2)
    images = decode_all(manifest.train_files + manifest.test_files)
    train, test = images[: len(manifest.train_files)], images[len(manifest.train_files) :]
    found = fingerprint(manifest)
    _write_cache(path, {"train": train.contiguous(), "test": test.contiguous()},
                 {"fingerprint": found})
    return train, test, found


def _write_cache(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Written through `atomic_path`, so an interrupted write leaves no cache behind.

    `atomic_path` also gives the file ordinary permissions, not a temp file's private 0600,
    so a cache shared by a team stays readable by it. A failed write is a warning: the images
    are decoded already, and only the next load is slower.
    """
    from safetensors.torch import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=metadata)
    except OSError as err:
        warnings.warn(f"could not write the image cache {path} ({err})", stacklevel=3)
