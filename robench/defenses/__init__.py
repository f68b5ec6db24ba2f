"""Defenses: importing this package registers every defense."""

from robench.defenses import (  # noqa: F401  (importing a defense registers it)
    advbn,
    fast_at,
    gaussian,
    gwi,
    kap,
    local_balls,
    pgd_at,
    rcm,
    standard,
    trades,
)
from robench.defenses.base import (
    Defense,
    StepContext,
    StepOutput,
    configure_model,
    resolve_defense,
)

__all__ = ["Defense", "StepContext", "StepOutput", "configure_model", "resolve_defense"]
