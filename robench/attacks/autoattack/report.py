"""What one AutoAttack call found, and the package's own checks as short flags."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

RANDOMIZED_WARNING = "it seems to be a randomized defense"
# AutoAttack's own threshold for its Square check (`checks.check_square_sr`): Square must
# lower robust accuracy by more than this fraction of the points to signal masking.
SQUARE_ALPHA = 0.002

# The package's own checks, by a phrase of the sentence each writes, as the short flag a
# leaderboard cell can hold. The sentences (which point to the `flags_doc.md` of the AutoAttack
# repository) go to the record's notes verbatim. Square's check is the same finding as
# robench's own `square-beat-white-box`, so it takes that name.
CHECK_FLAGS = (
    (RANDOMIZED_WARNING, "autoattack:randomized"),
    ("output is a probability distribution", "autoattack:probability-output"),
    ("points with zero gradient", "autoattack:zero-gradients"),
    ("Square Attack has decreased the robust accuracy", "square-beat-white-box"),
    ("dynamic defense", "autoattack:dynamic"),
    ("not possible to use the", "autoattack:too-few-classes"),
    ("more target classes", "autoattack:too-many-targets"),
)


def check_flag(warning: str) -> str:
    """The short flag of one of the package's warnings (`autoattack:warning` if unknown)."""
    return next((flag for phrase, flag in CHECK_FLAGS if phrase in warning),
                "autoattack:warning")


def square_broke(attacks: list[str], broken: dict[str, int], resumed: list[str],
                 n_points: int) -> bool:
    """Black-box Square broke more points than AutoAttack's own threshold (0.2 % of the
    points) after white-box components had run: its check, counted exactly."""
    if "square" not in broken:
        return False
    before = attacks[:attacks.index("square")]
    white_box_before = any(a in broken or a in resumed for a in before)
    return white_box_before and broken["square"] > SQUARE_ALPHA * n_points


_ZERO_GRADIENT = re.compile(r"there are (\d+) points with zero gradient")
_SQUARE = CHECK_FLAGS[3][0]


@dataclass
class Findings:
    """What AutoAttack's calls on several blocks of points found, summed: what flags read.

    The package words two of its checks with numbers of one call: the points with zero
    gradient (summed here into one sentence) and Square's drop in robust accuracy (left out
    per call and decided once, exactly, over every point: `square_broke_points`).
    """

    attacks: list[str]
    n_points: int = 0
    broken: dict[str, int] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # the package's sentences without numbers
    zero_gradient_points: int = 0

    @classmethod
    def of_report(cls, report: AutoAttackReport) -> Findings:
        checks, zero = [], 0
        for warning in report.warnings:
            match = _ZERO_GRADIENT.search(warning)
            if match:
                zero += int(match[1])
            elif _SQUARE not in warning:
                checks.append(warning)
        return cls(attacks=list(report.attacks), n_points=report.n_points,
                   broken=dict(report.broken), resumed=list(report.resumed),
                   checks=list(dict.fromkeys(checks)), zero_gradient_points=zero)

    def plus(self, other: Findings) -> Findings:
        names = dict.fromkeys([*self.broken, *other.broken])
        return Findings(
            attacks=self.attacks, n_points=self.n_points + other.n_points,
            broken={k: self.broken.get(k, 0) + other.broken.get(k, 0) for k in names},
            resumed=list(dict.fromkeys([*self.resumed, *other.resumed])),
            checks=list(dict.fromkeys([*self.checks, *other.checks])),
            zero_gradient_points=self.zero_gradient_points + other.zero_gradient_points)

    @property
    def square_broke_points(self) -> bool:
        return square_broke(self.attacks, self.broken, self.resumed, self.n_points)

    @property
    def warnings(self) -> list[str]:
        """The package's checks as sentences over every point (robench words the counts)."""
        out = list(self.checks)
        if self.zero_gradient_points:
            out.append(f"there are {self.zero_gradient_points} points with zero gradient! This "
                       f"might lead to unreliable evaluation with gradient-based attacks "
                       f"(counted by robench over the package's calls).")
        if self.square_broke_points:
            out.append(f"{_SQUARE} by {self.broken['square']} of {self.n_points} points, more "
                       f"than AutoAttack's threshold of {SQUARE_ALPHA:.1%} (counted by "
                       f"robench over the package's calls).")
        return out

    @property
    def randomized(self) -> bool:
        return any(RANDOMIZED_WARNING in w for w in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Findings:
        return cls(**data)



@dataclass
class AutoAttackReport:
    """What one call found besides the adversarial examples, for the evaluation record.

    `robust` is authoritative for which points survived: after a resumed run, points broken
    before the interruption come back as their clean images (pyautoattack keeps their flags, not
    their examples; `lost_examples` counts them), so re-classifying the returned batch would
    count them as robust.
    """

    version: str
    attacks: list[str]  # in the order the package runs them
    n_points: int
    batch_size: int
    clean_accuracy: float
    # Robust accuracy after each component, cumulative. A component finished by an earlier run
    # is missing when that run left no sidecar (a state file from pyautoattack alone).
    per_attack: dict[str, float]
    broken: dict[str, int]  # points each component broke
    robust: torch.Tensor  # bool per point: correct and unbroken by every component
    warnings: list[str] = field(default_factory=list)  # the package's own checks, verbatim
    log: list[str] = field(default_factory=list)  # everything the package logged or printed
    resumed: list[str] = field(default_factory=list)  # components finished by an earlier run
    skipped: list[str] = field(default_factory=list)  # not run: no robust point was left
    lost_examples: int = 0

    @property
    def robust_accuracy(self) -> float:
        """An exact count over n (a float32 mean would print 0.65 as 0.6499999761581421)."""
        return int(self.robust.sum()) / self.n_points if self.n_points else 0.0

    @property
    def randomized(self) -> bool:
        """AutoAttack's own check saw two forward passes differ: use version 'rand'."""
        return any(RANDOMIZED_WARNING in w for w in self.warnings)

    @property
    def square_broke_points(self) -> bool:
        """Black-box Square broke more points than AutoAttack's own threshold (0.2 % of the
        points) after white-box components had run: its check, counted exactly."""
        return square_broke(self.attacks, self.broken, self.resumed, self.n_points)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["robust"] = int(self.robust.sum())
        d.update(robust_accuracy=self.robust_accuracy, randomized=self.randomized,
                 square_broke_points=self.square_broke_points)
        return d
