"""Named training recipes: published settings one flag away (`robench train --recipe NAME`).

Each recipe is a YAML file beside this module holding a `description` line and any config
sections. A recipe sits below the user's own layers: flags, `--set` and `--config` override
it, and it overrides the per-dataset defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from robench.registry import RECIPES

HERE = Path(__file__).resolve().parent


def _register_all() -> None:
    for path in sorted(HERE.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        description = data.pop("description")
        RECIPES.add(path.stem, path, description, source=data.pop("source", ""))


def recipe_layer(name: str) -> dict[str, Any]:
    """The config layer of recipe `name` (unknown names: the registry's did-you-mean error)."""
    data = yaml.safe_load(RECIPES.get(name).read_text())
    data.pop("description", None)
    data.pop("source", None)
    return data


_register_all()
