"""Defenses: importing this package registers every defense."""

from robench.defenses import fast_at, gaussian, pgd_at, standard, trades  # noqa: F401  (registers)
from robench.defenses.base import Defense, StepContext, StepOutput, resolve_defense

__all__ = ["Defense", "StepContext", "StepOutput", "resolve_defense"]
