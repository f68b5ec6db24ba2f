"""What a record measured, by content: the model's evaluated state, the data, the versions.

A stored record is shown instead of evaluating again when its key matches, so the key must
change whenever the numbers could: another parameter or buffer (a model file without
--weights whose initialisation changed), other images (whatever folder they lie in), another
image size or normalisation, another robench, torch or AutoAttack. Each is hashed from what is
actually evaluated, not from names or paths that describe it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from importlib import metadata
from itertools import chain

import torch
from torch import nn

import robench
from robench.models.layers import Normalize
from robench.records import DataIdentity, ModelSource


def _update(digest, tensor: torch.Tensor) -> None:
    """dtype, shape and bytes of one tensor (bfloat16 too: hashed as its raw bytes)."""
    t = tensor.detach().to("cpu").contiguous()
    digest.update(f"{t.dtype}\0{tuple(t.shape)}\0".encode())
    if t.numel():
        digest.update(t.reshape(-1).view(torch.uint8).numpy().data)


def tensors_digest(*tensors: torch.Tensor) -> str:
    """sha256 over the tensors in order, each its dtype, shape and bytes."""
    digest = hashlib.sha256()
    for t in tensors:
        _update(digest, t)
    return digest.hexdigest()


def state_digest(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (non-persistent ones too), sorted by name:
    what is evaluated, whether it came from --weights, a seed or a run's checkpoint."""
    digest = hashlib.sha256()
    named = dict(chain(model.named_parameters(), model.named_buffers()))
    for name in sorted(named):
        digest.update(name.encode() + b"\0")
        _update(digest, named[name])
    return digest.hexdigest()


def evaluated_source(target) -> ModelSource:
    """The target's ModelSource with the hash of the state its model holds now."""
    return dataclasses.replace(target.source, state_sha256=state_digest(target.model))


def normalisation(model: nn.Module) -> tuple[list[float], list[float]]:
    """mean and std of the Normalize layer robench puts in front of a model (a run's, or
    --mean/--std); empty lists when there is none."""
    layer = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    if layer is None:
        return [], []
    return ([round(v, 8) for v in layer.mean.flatten().tolist()],
            [round(v, 8) for v in layer.std.flatten().tolist()])


def data_identity(target) -> DataIdentity:
    """The test split by content (the same images at another path are the same data), its
    image size, and the normalisation in front of the model."""
    mean, std = normalisation(target.model)
    return DataIdentity(fingerprint=target.test_fingerprint, image_size=target.info.image_size,
                        mean=mean, std=std)


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """robench, torch and AutoAttack (PyPI's pyautoattack): each may change a number. Read
    at each call, not at import: the versions of the code that runs."""
    return {"robench": robench.__version__, "torch": torch.__version__,
            "pyautoattack": _package_version("pyautoattack")}
