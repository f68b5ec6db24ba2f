"""RobustBench's model zoo: `--model robustbench:<name>`, evaluated with robench's protocol.

The architecture comes from the `robustbench` package (an optional extra); the checkpoint from
`--weights` or RobustBench's own cache layout, `<model_dir>/<dataset>/<threat>/<name>.pt`, and
is always read with `torch.load(weights_only=True)` (robench.targets.external.load_state_dict).
RobustBench itself unpickles the files it downloads with no such guard, so a checkpoint
swapped on disk could run code; here it is refused. Nothing is downloaded unless `--download`
is given. The published clean and robust accuracy are not part of the package: they are read,
when present, from a RobustBench checkout's `model_info/<dataset>/<threat>/<name>.json`.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robench.errors import UserError
from robench.records import Published
from robench.targets.external import load_state_dict, sha256

PREFIX = "robustbench:"
DATASETS = ("cifar10", "cifar100", "imagenet")
THREATS = ("Linf", "L2", "corruptions")
DEFAULT_MODEL_DIR = "models"  # RobustBench's load_model default, ./models
DEFAULT_MODEL_INFO = "model_info"  # where a RobustBench checkout keeps the published numbers
INSTALL = "pip install 'robench[robustbench]'"
# Buffers some zoo architectures build from constants and some of their checkpoints lack
# (RobustBench loads those non-strictly for the same reason); nothing that is learnt.
_CONSTANT_BUFFERS = ("mean", "std", "mu", "sigma")


@dataclass
class ZooModel:
    model: nn.Module
    name: str
    dataset: str
    threat: str
    checkpoint: str
    weights_sha256: str
    published: Published | None


def is_zoo_spec(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(PREFIX)


def zoo_name(spec: str) -> str:
    name = spec[len(PREFIX):].strip()
    if not name:
        raise UserError(f"--model {spec!r} names no zoo model; write robustbench:<name>, e.g. "
                        f"robustbench:Standard (robench list zoo --dataset cifar10).")
    return name


@contextmanager
def _autoattack_alias():
    """robustbench 1.1 imports `autoattack`, the AutoAttack authors' package under its git
    name; PyPI has the same code as `pyautoattack` (robench's dependency). For the import
    only, that name points at pyautoattack when no `autoattack` is installed. The package's
    own deprecation warnings (pkg_resources, torch.jit) are not the user's and are hidden."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category=category)
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        added = []
        if importlib.util.find_spec("autoattack") is None:
            import pyautoattack
            import pyautoattack.state

            for name, module in (("autoattack", pyautoattack),
                                 ("autoattack.state", pyautoattack.state)):
                if name not in sys.modules:
                    sys.modules[name] = module
                    added.append(name)
        try:
            yield
        finally:
            for name in added:
                sys.modules.pop(name, None)


def model_zoo() -> dict[str, dict[str, dict[str, Any]]]:
    """{dataset: {threat: {name: entry}}} from the robustbench package, or one sentence."""
    try:
        with _autoattack_alias():
            from robustbench.model_zoo import model_dicts
    except ModuleNotFoundError as exc:
        if exc.name == "pkg_resources":
            raise UserError("robustbench imports pkg_resources, which setuptools 81 and later "
                            "no longer ship; pip install 'setuptools<81' (the robench"
                            "[robustbench] extra pins it).") from None
        if exc.name and exc.name.split(".")[0] == "robustbench":
            raise UserError(f"robustbench:<name> needs the robustbench package; {INSTALL}."
                            ) from None
        raise UserError(f"the robustbench package cannot be imported: {exc}; {INSTALL}."
                        ) from None
    return {ds.value: {tm.value: dict(models) for tm, models in threats.items()}
            for ds, threats in model_dicts.items()}


def zoo_entry(zoo: dict, name: str, dataset: str, threat: str) -> dict[str, Any]:
    if dataset not in zoo:
        raise UserError(f"RobustBench has no dataset {dataset!r}; its datasets are "
                        f"{', '.join(sorted(zoo))}.")
    if threat not in zoo[dataset]:
        raise UserError(f"RobustBench has no {threat!r} models for {dataset}; its threat "
                        f"models there are {', '.join(sorted(zoo[dataset]))}.")
    models = zoo[dataset][threat]
    if name not in models:
        close = difflib.get_close_matches(name, list(models), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"RobustBench has no {dataset} {threat} model {name!r}; {hint}"
                        f"robench list zoo --dataset {dataset} --threat {threat} lists its "
                        f"{len(models)}.")
    entry = models[name]
    if isinstance(entry.get("gdrive_id"), list):
        raise UserError(f"robustbench:{name} is an ensemble of {len(entry['gdrive_id'])} "
                        f"checkpoints; robench loads zoo models with a single checkpoint.")
    if entry.get("gdrive_id") is None:
        raise UserError(f"robustbench:{name} has no checkpoint of its own in the zoo (it comes "
                        f"from timm or torchvision); evaluate it with --model file.py:factory.")
    return entry


def checkpoint_path(name: str, dataset: str, threat: str, weights: str | Path | None,
                    model_dir: str | Path | None) -> Path:
    if weights is not None:
        return Path(weights)
    return Path(model_dir or DEFAULT_MODEL_DIR) / dataset / threat / f"{name}.pt"


def download(entry: dict[str, Any], path: Path, name: str) -> None:
    """RobustBench's own downloader (Google Drive), into its layout; a failure is a sentence."""
    from robench.atomic import atomic_path

    with _autoattack_alias():
        from robustbench.utils import download_gdrive_new
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            download_gdrive_new(entry["gdrive_id"], tmp)
    except Exception as exc:  # requests, gdown: any failure means the file is not there
        raise UserError(f"downloading robustbench:{name} to {str(path)!r} failed "
                        f"({type(exc).__name__}: {str(exc).strip()[:160]}); put the file "
                        f"there yourself or pass --weights FILE.") from None


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], name: str
                   ) -> dict[str, torch.Tensor]:
    """The checkpoint's keys renamed to the model's: DataParallel's 'module.' and a wrapper's
    'model.' are taken off or put on, the way the zoo's files were saved. Only learnt tensors
    may be missing from none of them; unexpected keys are never dropped."""
    want = set(model.state_dict())
    stripped = _strip(_strip(state, "module."), "model.")
    candidates = [state, _strip(state, "module."), stripped,
                  {f"model.{k}": v for k, v in stripped.items()}]
    best = None
    for candidate in candidates:
        keys = set(candidate)
        missing = want - keys
        if keys <= want and all(k.rsplit(".", 1)[-1] in _CONSTANT_BUFFERS for k in missing):
            return candidate
        score = len(keys & want)
        if best is None or score > best[0]:
            best = (score, sorted(want - keys), sorted(keys - want))
    _, missing, unexpected = best
    raise UserError(f"the checkpoint does not fit robustbench:{name}'s architecture: "
                    f"{len(missing)} missing keys (e.g. {missing[:2]}) and {len(unexpected)} "
                    f"unexpected (e.g. {unexpected[:2]}); is it the file of this model?")


def published(name: str, dataset: str, threat: str, model_info: str | Path | None
              ) -> Published | None:
    """The published accuracies from a RobustBench checkout's model_info JSON, if present."""
    root = Path(model_info) if model_info is not None else Path(DEFAULT_MODEL_INFO)
    path = root / dataset / threat / f"{name}.json"
    if not path.is_file():
        if model_info is not None:
            raise UserError(f"--model-info {str(model_info)!r} has no {dataset}/{threat}/"
                            f"{name}.json; give the model_info folder of a RobustBench "
                            f"checkout.")
        return None
    try:
        info = json.loads(path.read_text())
        robust_key = "corruptions_acc" if threat == "corruptions" else "autoattack_acc"
        clean = float(info["clean_acc"]) / 100
        robust = info.get(robust_key)
        return Published(clean_acc=clean,
                         robust_acc=None if robust in (None, "") else float(robust) / 100,
                         metric=robust_key.removesuffix("_acc"), eps=str(info.get("eps", "")),
                         source=str(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{str(path)} is not a RobustBench model_info file ({exc}).") from None


def load_zoo_model(spec: str, *, dataset: str, threat: str, weights: str | Path | None = None,
                   model_dir: str | Path | None = None, download_missing: bool = False,
                   model_info: str | Path | None = None) -> ZooModel:
    name = zoo_name(spec)
    if dataset not in DATASETS:
        raise UserError(f"RobustBench's zoo has models for {', '.join(DATASETS)}, not "
                        f"{dataset!r}; give --zoo-dataset for data in an image folder.")
    if threat not in THREATS:
        raise UserError(f"--threat {threat!r} is not one of {', '.join(THREATS)}.")
    info = published(name, dataset, threat, model_info)
    entry = zoo_entry(model_zoo(), name, dataset, threat)
    path = checkpoint_path(name, dataset, threat, weights, model_dir)
    if not path.is_file():
        if weights is not None or not download_missing:
            raise UserError(f"no checkpoint for robustbench:{name} at {str(path)!r}; put "
                            f"RobustBench's file there, pass --weights FILE or --model-dir "
                            f"DIR, or add --download to fetch it.")
        download(entry, path, name)
    state = load_state_dict(path, nested=("state_dict", "last", "model"))
    net = entry["model"]()
    net.load_state_dict(fit_state_dict(net, state, name), strict=False)
    return ZooModel(model=net.eval(), name=name, dataset=dataset, threat=threat,
                    checkpoint=str(path), weights_sha256=sha256(path), published=info)
