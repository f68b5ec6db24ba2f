"""Name -> implementation tables for datasets, archs, defenses and attacks.

Entries are registered by decorator next to their implementation, so importing a module is
what makes its entries known; `load_all()` imports every module that registers something.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from robench.errors import UserError


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    description: str
    meta: dict[str, Any] = field(default_factory=dict)


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class Registry:
    """A table of named entries of one kind ("dataset", "arch", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str, **meta: Any) -> Callable[[Any], Any]:
        """Decorator: register `obj` under `name` with a one-line description."""

        def decorator(obj: Any) -> Any:
            self.add(name, obj, description, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: Any, description: str, **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if not description or "\n" in description:
            raise ValueError(f"{self.kind} {name!r} needs a one-line description")
        self._entries[name] = Entry(name, obj, description, dict(meta))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names in natural order, optionally filtered by a shell-style pattern."""
        names = sorted(self._entries, key=_natural_key)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def entries(self, pattern: str | None = None) -> list[Entry]:
        return [self._entries[n] for n in self.names(pattern)]

    def entry(self, name: str) -> Entry:
        """The entry for `name`; an unknown name is a user error naming the closest match."""
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(self.unknown_message(name)) from None

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        listing = ", ".join(known) if known else "none registered"
        return f"unknown {self.kind} {name!r}; {hint}known {self.kind}s: {listing}."


DATASETS = Registry("dataset")
ARCHS = Registry("arch")
DEFENSES = Registry("defense")
ATTACKS = Registry("attack")
RECIPES = Registry("recipe")
CORRUPTIONS = Registry("corruption")

REGISTRIES: dict[str, Registry] = {
    "datasets": DATASETS,
    "archs": ARCHS,
    "defenses": DEFENSES,
    "attacks": ATTACKS,
    "recipes": RECIPES,
    "corruptions": CORRUPTIONS,
}

# Modules whose import fills the registries above.
_PROVIDERS = ("robench.data", "robench.models", "robench.defenses", "robench.attacks",
              "robench.recipes", "robench.corruptions")


def load_all() -> None:
    """Import every module that registers entries, so the registries are complete."""
    for module in _PROVIDERS:
        importlib.import_module(module)
