"""Threat models as users write them: eps strings like "8/255", and per-dataset defaults.

eps is parsed strictly (a number or a fraction of two numbers, nothing evaluated), and the
text the user wrote is kept next to the float so records and file names show "8/255". Its
upper bound is the largest distance two images of the input space can be apart: 1 in Linf
(pixels live in [0, 1]), sqrt(C*H*W) in L2 (28 for a 1x28x28 MNIST image, 55.4 for CIFAR).
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


def _value(text: str) -> float:
    match = _EPS.match(text)
    if not match:
        raise UserError(f"eps {text!r} is not a number or a fraction such as 8/255.")
    num, den = match.group(1), match.group(2)
    if den is not None and float(den) == 0:
        raise UserError(f"eps {text!r} divides by zero.")
    return float(num) / float(den) if den is not None else float(num)


def largest_norm(norm: str, shape: tuple[int, ...]) -> float:
    """The largest `norm` distance between two images of `shape` with pixels in [0, 1]."""
    return 1.0 if norm == "Linf" else math.sqrt(math.prod(shape))


def _space(norm: str, shape: tuple[int, ...] | None) -> str:
    if shape is None or norm == "Linf":
        return "pixel values are in [0, 1]"
    dims = "x".join(map(str, shape))
    return f"the largest {norm} distance between two {dims} images in [0, 1]"


def parse_eps(text: str | float, *, norm: str = "Linf",
              shape: tuple[int, ...] | None = None) -> Eps:
    """"8/255", "0.031" or a float; positive and at most the input space's largest norm
    (1 for Linf, or without a shape; sqrt(C*H*W) for L2 with the image shape given)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, shown = float(text), repr(float(text))
    else:
        value, shown = _value(str(text)), str(text).replace(" ", "")
    bound = largest_norm(norm, shape) if shape is not None else 1.0
    if not (math.isfinite(value) and 0 < value <= bound):
        raise UserError(f"eps {text!r} must be greater than 0 and at most {bound:g} "
                        f"({_space(norm, shape)}).")
    return Eps(value=value, text=shown)


def parse_eps_list(items: list[str], *, norm: str = "Linf",
                   shape: tuple[int, ...] | None = None) -> list[Eps]:
    """Several eps from repeated flags and/or comma-separated lists, in order, without repeats."""
    out: list[Eps] = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                eps = parse_eps(part.strip(), norm=norm, shape=shape)
                if all(e.value != eps.value for e in out):
                    out.append(eps)
    if not out:
        raise UserError("--eps was given without a value; write e.g. --eps 8/255.")
    return out


def default_eps(dataset: str, norm: str, shape: tuple[int, ...] | None = None) -> Eps:
    key = "imagefolder" if dataset.startswith("imagefolder:") else dataset
    table = DEFAULT_EPS.get(key)
    if table is None or norm not in table:
        raise UserError(f"there is no default {norm} eps for dataset {dataset!r}; "
                        f"pass --eps, e.g. --eps 8/255.")
    if shape is None:  # the table's budgets fit their datasets' images
        return Eps(value=_value(table[norm]), text=table[norm])
    return parse_eps(table[norm], norm=norm, shape=shape)
