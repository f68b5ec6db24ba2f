"""Where each job of a sweep stands, as the launchers and the jobs themselves write it.

One small JSON file per run in `<out>/.sweep/`: the launcher writes `pending` with the
scheduler's job id and log paths when it submits, the job writes `running`, `requeued`,
`done` or `failed` (with the reason) as it goes. `robench sweep --status` reads these beside
the run directories and the scheduler's own view.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robench.atomic import atomic_write_json
from robench.records import timestamp

FOLDER = ".sweep"


def path_of(out: str | Path, name: str) -> Path:
    return Path(out) / FOLDER / f"{name}.json"


def read(out: str | Path, name: str) -> dict[str, Any]:
    try:
        return json.loads(path_of(out, name).read_text())
    except (OSError, ValueError):
        return {}


def mark(out: str | Path, name: str, state: str, **fields: Any) -> None:
    """Record `state` (and any other fields) for run `name`, keeping what was there."""
    path = path_of(out, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {**read(out, name), **fields, "state": state, "updated": timestamp()}
    atomic_write_json(path, entry)
