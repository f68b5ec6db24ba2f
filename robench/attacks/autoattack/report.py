"""What one AutoAttack call found, and the package's own checks as short flags."""

from __future__ import annotations

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
        if "square" not in self.broken:
            return False
        before = self.attacks[:self.attacks.index("square")]
        white_box_before = any(a in self.broken or a in self.resumed for a in before)
        return white_box_before and self.broken["square"] > SQUARE_ALPHA * self.n_points

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["robust"] = int(self.robust.sum())
        d.update(robust_accuracy=self.robust_accuracy, randomized=self.randomized,
                 square_broke_points=self.square_broke_points)
        return d
