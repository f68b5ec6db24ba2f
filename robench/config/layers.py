"""Config layers as nested dicts: merging, `--set key=value`, and YAML files."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml

from robench.atomic import atomic_write_text
from robench.config.schema import TrainConfig
from robench.errors import UserError


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        d = d.setdefault(part, {})
        if not isinstance(d, dict):
            raise UserError(f"config key {dotted!r} goes inside a value that is not a section.")
    d[parts[-1]] = value


def parse_set(items: list[str], defense_names: typing.Iterable[str] = ()) -> dict[str, Any]:
    """`--set key=value` items as a nested dict; values are read as YAML scalars.

    `<defense>.<param>=v` is shorthand for `defenses.<defense>.<param>=v`.
    """
    defense_names = set(defense_names)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r} is not of the form key=value, e.g. optim.lr=0.05.")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if key.split(".")[0] in defense_names:
            key = "defenses." + key
        set_dotted(out, key, value)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"config file {str(path)!r} is not valid YAML{where}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {str(path)!r} must hold a mapping of keys, "
                        f"not a {type(data).__name__}.")
    return data


def dump_yaml(cfg: TrainConfig, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# ----------------------------------------------------------------------------------------
# Typed construction: unknown keys and wrong types are rejected with the key named
