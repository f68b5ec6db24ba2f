"""A user's own model: a Python factory plus a state dict, evaluated like any robench run.

`--model path/to/file.py:factory` imports the file and calls `factory()` for an nn.Module;
`--weights` loads a state dict from safetensors, or from a `.pt` file with
`torch.load(weights_only=True)`, which refuses pickles that carry code. A model that expects
normalised input gets robench's Normalize layer in front (`--mean/--std`), so attacks still
work on [0, 1] images.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import pickle
import re
import site
import sys
import sysconfig
import types
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import robench
from robench.errors import UserError
from robench.models.layers import Classifier, Normalize


@dataclass
class ExternalModel:
    model: nn.Module
    name: str
    file: str
    factory: str
    weights: str | None
    weights_sha256: str | None
    source_sha256: str | None = None  # the file, the factory and the local code they use


def parse_spec(spec: str) -> tuple[Path, str]:
    path, sep, factory = spec.rpartition(":")
    if not sep or not path or not factory.isidentifier():
        raise UserError(f"--model {spec!r} must be of the form path/to/file.py:factory, "
                        f"e.g. models/mine.py:build.")
    file = Path(path)
    if not file.is_file():
        raise UserError(f"model file {path!r} does not exist.")
    return file, factory


def _import(file: Path):
    name = "robench_user_" + re.sub(r"\W", "_", file.stem)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise UserError(f"model file {str(file)!r} cannot be imported as Python.")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any failure is theirs to see, in one line
        raise UserError(f"importing model file {str(file)!r} failed: "
                        f"{type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(file.parent.resolve()))
    return module


def _library_roots() -> list[Path]:
    """Where the interpreter's own and installed packages live, and robench itself: code
    whose version, not its files, says what it is (robench's and torch's are in the key)."""
    paths = sysconfig.get_paths()
    roots = [paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    roots += [*site.getsitepackages(), site.getusersitepackages(), sys.prefix,
              sys.base_prefix, sys.exec_prefix, str(Path(robench.__file__).resolve().parent)]
    return [Path(r).resolve() for r in dict.fromkeys(roots) if r]


def _users_file(module, libraries: list[Path]) -> Path | None:
    """The module's source file when it is the user's code (not a library's), else None."""
    path = getattr(module, "__file__", None)
    if not path or not Path(path).is_file():
        return None
    path = Path(path).resolve()
    return None if any(path.is_relative_to(r) for r in libraries) else path


def _users_modules(module, imported: list[types.ModuleType]) -> dict[str, Path]:
    """Module name -> file for the user's code the model comes from: the modules the model
    file and its factory imported (`imported`, the new entries of sys.modules), and those its
    globals lead to (imported modules, the modules classes and functions were defined in),
    transitively. Wherever a helper lies (beside the file or in a folder on sys.path), an edit
    of it changes the model as much as an edit of the file itself."""
    libraries = _library_roots()
    found: dict[str, Path] = {}
    todo = list(imported)
    seen: set[int] = {id(module)}
    for value in vars(module).values():
        todo.append(value if isinstance(value, types.ModuleType)
                    else sys.modules.get(getattr(value, "__module__", None) or ""))
    while todo:
        mod = todo.pop()
        if mod is None or id(mod) in seen:
            continue
        seen.add(id(mod))
        path = _users_file(mod, libraries)
        if path is None:
            continue
        found[mod.__name__] = path
        for value in vars(mod).values():
            todo.append(value if isinstance(value, types.ModuleType)
                        else sys.modules.get(getattr(value, "__module__", None) or ""))
    return found


def _factory_source(module, factory: str) -> str:
    """The factory's own source text (it may come from another module); its repr when Python
    cannot show it (a builtin, a callable object)."""
    fn = getattr(module, factory, None)
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return repr(fn)


def source_digest(module, file: Path, factory: str,
                  imported: list[types.ModuleType] = ()) -> str:
    """sha256 over the factory's name and source, the model file's bytes and those of every
    module of the user's that its code comes from (`_users_modules`), by module name, so the
    same code in another folder hashes the same."""
    digest = hashlib.sha256(factory.encode() + b"\0")
    digest.update(_factory_source(module, factory).encode() + b"\0")
    digest.update(file.resolve().read_bytes())
    for name, path in sorted(_users_modules(module, list(imported)).items()):
        if path != file.resolve():
            digest.update(f"\0{name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _torch_version() -> tuple[int, int]:
    major, minor = re.match(r"(\d+)\.(\d+)", torch.__version__).groups()
    return int(major), int(minor)


def load_state_dict(path: Path, nested: tuple[str, ...] = ("state_dict",)
                    ) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; a checkpoint that keeps them under one of `nested`
    (a training script's {'state_dict': ...}) is opened."""
    if not path.is_file():
        raise UserError(f"weights file {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise UserError(f"weights file {str(path)!r} is not a valid safetensors file "
                            f"({exc}).") from None
    if _torch_version() < (2, 6):
        raise UserError(f"weights file {str(path)!r} is a pickle, and this torch "
                        f"{torch.__version__} can run code while loading one even with "
                        f"weights_only=True (CVE-2025-32434); upgrade to torch >= 2.6 or give "
                        f"the weights as .safetensors.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"weights file {str(path)!r} was refused: it is not a plain state dict "
                        f"loadable with weights_only=True ({first[:160]}).") from None
    for key in nested:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise UserError(f"weights file {str(path)!r} does not hold a state dict of tensors.")
    return state


def load_external_model(spec: str, *, weights: str | Path | None,
                        mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
                        name: str | None = None) -> ExternalModel:
    file, factory_name = parse_spec(spec)
    before = set(sys.modules)  # what the file and its factory import is the model's code too
    module = _import(file)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UserError(f"model file {str(file)!r} has no callable {factory_name!r}.")
    try:
        net = factory()
    except Exception as exc:
        raise UserError(f"{spec} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise UserError(f"{spec} returned a {type(net).__name__}, not a torch.nn.Module.")
    imported = [sys.modules[n] for n in sorted(set(sys.modules) - before)]
    digest = None
    if weights is not None:
        path = Path(weights)
        state = load_state_dict(path)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())[:300]
            raise UserError(f"weights {str(path)!r} do not fit the model from {spec}: "
                            f"{detail}") from None
        digest = sha256(path)
    if (mean is None) != (std is None):
        raise UserError("--mean and --std go together; give both or neither.")
    model: nn.Module = net
    if mean is not None:
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise UserError(f"--mean {list(mean)} and --std {list(std)} need one value per "
                            f"channel each, with std > 0.")
        model = Classifier(Normalize(mean, std), net)
    return ExternalModel(model=model.eval(), name=name or f"{file.stem}-{factory_name}",
                         file=str(file), factory=factory_name,
                         weights=None if weights is None else str(weights),
                         weights_sha256=digest,
                         source_sha256=source_digest(module, file, factory_name, imported))


@torch.no_grad()
def check_output_shape(model: nn.Module, x: torch.Tensor, num_classes: int, spec: str) -> None:
    """A model must map a batch of images to one logit per class."""
    from robench.runtime import evaluating

    try:
        with evaluating(model):
            out = model(x)
    except Exception as exc:
        raise UserError(f"the model from {spec} fails on a batch of shape {tuple(x.shape)}: "
                        f"{type(exc).__name__}: {exc}") from None
    want = (x.shape[0], num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"the model from {spec} returns {got} for {x.shape[0]} images; "
                        f"expected logits of shape {want}.")
