"""Typed dataclasses from plain dicts, with one clear sentence for a wrong key or type."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from dataclasses import fields
from typing import Any

from robench.errors import UserError


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return True, args[0]
    return False, tp


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    return str(tp)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise UserError(f"config key {key!r} needs {_type_name(inner)}, got nothing.")
    tp = inner
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config key {key!r} is a section and needs a mapping, "
                            f"got {value!r}.")
        return build(tp, value, prefix=key + ".")
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and key.split(".")[-1] == "eps":
            from robench.threat import parse_eps  # eps may be written as a fraction: 8/255

            return parse_eps(value).value
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (list, tuple)):
            return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
    else:  # pragma: no cover - a field type this module does not know is a bug
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    raise UserError(f"config key {key!r} needs {_type_name(tp)}, got {value!r}.")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field types of a dataclass (resolving them is most of the cost of reading a record)."""
    return typing.get_type_hints(cls)


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from a nested dict, checking every key and type."""
    hints = _hints(cls)
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {prefix}{close[0]!r}? " if close else ""
            raise UserError(f"unknown config key {prefix + str(key)!r}; {hint}"
                            f"known keys here: {', '.join(prefix + k for k in known)}.")
    kwargs = {name: _coerce(prefix + name, data[name], hints[name])
              for name in known if name in data}
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------
# Semantic checks (types are already right here)
