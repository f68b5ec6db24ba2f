"""The run directory: the unit of reproducibility.

```
runs/<run-id>/
  config.yaml        fully resolved config
  env.json           versions, git commit, device, host, times, status
  model.safetensors  final weights (written last: its presence plus status "complete" is done)
  state.pt           resumable state after the last finished epoch (weights_only loadable)
  metrics.jsonl      one line per epoch
```
Every file is written atomically (robench.atomic), so an interruption leaves either the old
or the new file, never half of one; a run counts as complete only when env.json says so,
which is the last thing written.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from robench.atomic import atomic_path, atomic_write_json, atomic_write_text
from robench.errors import UserError

CONFIG = "config.yaml"
ENV = "env.json"
MODEL = "model.safetensors"
BEST = "best.safetensors"  # chosen on the validation split, never on the test split
STATE = "state.pt"
METRICS = "metrics.jsonl"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "x"


def run_id_of(cfg) -> str:
    """The id of the run a resolved TrainConfig trains (what `robench train` names it)."""
    return run_id(cfg.data.dataset, cfg.model.arch, cfg.defense, cfg.runtime.seed, cfg.hash())


def run_id(dataset: str, arch: str, defense: str, seed: int, config_hash: str) -> str:
    """Readable id: `<dataset>-<arch>-<defense>-<seed>-<hash>`.

    An image folder is named after its last path component.
    """
    if dataset.startswith("imagefolder:"):
        dataset = "imagefolder-" + Path(dataset.split(":", 1)[1]).name
    return "-".join([_slug(dataset), _slug(arch), _slug(defense), f"s{seed}", config_hash])


def ensure_writable_dir(path: Path) -> None:
    """Fail early, before any work, when runs cannot be written under `path`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"output directory {str(path)!r} is not writable ({reason}); "
                        f"pass --out with a directory you can write to.") from None


def read_env(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / ENV).read_text())
    except (OSError, ValueError):
        return {}


def write_env(run_dir: Path, env: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / ENV, env)


def is_complete(run_dir: Path) -> bool:
    run_dir = Path(run_dir)
    return read_env(run_dir).get("status") == "complete" and (run_dir / MODEL).is_file()


def require_run(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise UserError(f"{str(run_dir)!r} is not a robench run directory (no {CONFIG}); "
                        f"give a path such as runs/<run-id>.")
    return run_dir


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None
                 ) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata=metadata)


def load_weights(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    model.load_state_dict(load_file(str(path)))
    return model


def save_state(state: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line cut short by an interruption
                break
    return rows


def write_metrics(run_dir: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(Path(run_dir) / METRICS,
                      "".join(json.dumps(r) + "\n" for r in rows))


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    """Append one epoch's line (the whole file is rewritten so it is never half a line)."""
    write_metrics(run_dir, [*read_metrics(run_dir), row])
