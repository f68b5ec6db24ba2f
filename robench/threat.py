"""Threat models as users write them: eps strings like "8/255", and per-dataset defaults.

eps is parsed strictly (a number or a fraction of two numbers, nothing evaluated), and the
text the user wrote is kept next to the float so records and file names show "8/255".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from robench.errors import UserError

_NUMBER = r"\s*(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)\s*"
_EPS = re.compile(rf"^{_NUMBER}(?:/{_NUMBER})?$")

# The field's standard budgets (methods.md, "Conventions"); digits is robench's sanity scale.
DEFAULT_EPS: dict[str, dict[str, str]] = {
    "digits": {"Linf": "0.2", "L2": "1.0"},
    "mnist": {"Linf": "0.3", "L2": "2.0"},
    "fashion-mnist": {"Linf": "0.1", "L2": "1.5"},
    "cifar10": {"Linf": "8/255", "L2": "0.5"},
    "cifar100": {"Linf": "8/255", "L2": "0.5"},
    "svhn": {"Linf": "8/255", "L2": "0.5"},
    "tinyimagenet": {"Linf": "4/255", "L2": "0.5"},
    "imagefolder": {"Linf": "8/255", "L2": "0.5"},
}


@dataclass(frozen=True)
class Eps:
    value: float
    text: str

    @property
    def slug(self) -> str:
        """A file-name-safe form: 8/255 -> 8_255."""
        return self.text.replace("/", "_").replace(" ", "")


def parse_eps(text: str | float) -> Eps:
    """"8/255", "0.031" or a float; positive and at most 1 (pixels live in [0, 1])."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, shown = float(text), repr(float(text))
    else:
        match = _EPS.match(str(text))
        if not match:
            raise UserError(f"eps {text!r} is not a number or a fraction such as 8/255.")
        num, den = match.group(1), match.group(2)
        if den is not None and float(den) == 0:
            raise UserError(f"eps {text!r} divides by zero.")
        value = float(num) / float(den) if den is not None else float(num)
        shown = str(text).replace(" ", "")
    if not (math.isfinite(value) and 0 < value <= 1):
        raise UserError(f"eps {text!r} must be greater than 0 and at most 1 "
                        f"(pixel values are in [0, 1]).")
    return Eps(value=value, text=shown)


def parse_eps_list(items: list[str]) -> list[Eps]:
    """Several eps from repeated flags and/or comma-separated lists, in order, without repeats."""
    out: list[Eps] = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                eps = parse_eps(part.strip())
                if all(e.value != eps.value for e in out):
                    out.append(eps)
    if not out:
        raise UserError("--eps was given without a value; write e.g. --eps 8/255.")
    return out


def default_eps(dataset: str, norm: str) -> Eps:
    key = "imagefolder" if dataset.startswith("imagefolder:") else dataset
    table = DEFAULT_EPS.get(key)
    if table is None or norm not in table:
        raise UserError(f"there is no default {norm} eps for dataset {dataset!r}; "
                        f"pass --eps, e.g. --eps 8/255.")
    return parse_eps(table[norm])
