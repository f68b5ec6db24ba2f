"""AutoAttack (Croce & Hein, ICML 2020) through the authors' own code, the `pyautoattack` package.

A robustness number is only comparable with the literature when it comes from the official
AutoAttack, so nothing here re-implements an attack. The modules, in the order they build on
each other: `report` (what a call found: per-component robust accuracy, the package's checks
as flags), `isolation` (the package's logging, printing and global side effects kept inside a
call), `resume` (exact per-component flags and resumable state files, through the package's
own state object: what it works around is said there), `attacks` (the registered entries).
"""

from robench.attacks.autoattack.attacks import (
    APGDCE,
    APGDDLR,
    APGDT,
    COMPONENTS,
    DEFAULT_BATCH_SIZE,
    EOT_COMPONENTS,
    FABT,
    VERSIONS,
    APGDParams,
    AutoAttack,
    AutoAttackParams,
    Square,
)
from robench.attacks.autoattack.isolation import LOGGER_NAME
from robench.attacks.autoattack.report import (
    CHECK_FLAGS,
    RANDOMIZED_WARNING,
    SQUARE_ALPHA,
    AutoAttackReport,
    Findings,
    check_flag,
)

__all__ = ["APGDCE", "APGDDLR", "APGDT", "CHECK_FLAGS", "COMPONENTS", "DEFAULT_BATCH_SIZE",
           "EOT_COMPONENTS", "FABT", "LOGGER_NAME", "RANDOMIZED_WARNING", "SQUARE_ALPHA",
           "VERSIONS", "APGDParams", "AutoAttack", "AutoAttackParams", "AutoAttackReport",
           "Findings", "Square", "check_flag"]
