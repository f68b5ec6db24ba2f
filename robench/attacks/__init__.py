"""Attacks: importing this package registers every attack."""

from robench.attacks import autoattack, gradient, noise  # noqa: F401  (registers)
from robench.attacks.base import (
    Attack,
    ThreatModel,
    attack_mode,
    check_valid,
    create_attack,
    perturbation_norms,
)

__all__ = ["Attack", "ThreatModel", "attack_mode", "check_valid", "create_attack",
           "perturbation_norms"]
