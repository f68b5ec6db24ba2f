"""Keeping pyautoattack quiet and its side effects contained, while keeping what it says.

The package logs through the 'auto-attack' logger (an unconfigured logger sends its warnings to
stderr), its checks may call `warnings.warn`, it prints, reseeds the global generator and
leaves module-level counters behind; robench keeps stdout for results and a caller's random
streams as they were.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyautoattack
import torch
from pyautoattack import checks as package_checks

LOGGER_NAME = "auto-attack"
PACKAGE_DIR = Path(pyautoattack.__file__).resolve().parent


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Capture:
    """The 'auto-attack' logger into a list, warnings recorded, stdout captured; all undone after.

    The logger's own handlers are set aside too: whatever a user attached would otherwise write
    into robench's output. Warnings that do not come from pyautoattack are raised again after.
    Logger, warning filters and stdout are process-wide, as is the package's own module state:
    one AutoAttack call at a time per process.
    """

    def __init__(self) -> None:
        self.handler = ListHandler()
        self.caught: list[warnings.WarningMessage] = []
        self.stdout = io.StringIO()
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> Capture:
        logger = logging.getLogger(LOGGER_NAME)
        handlers, level = logger.handlers[:], logger.level
        propagate, disabled = logger.propagate, logger.disabled

        def restore() -> None:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled

        stack = contextlib.ExitStack()
        stack.callback(restore)
        logger.handlers[:] = [self.handler]
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.disabled = False
        self.caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        stack.enter_context(contextlib.redirect_stdout(self.stdout))
        self._stack = stack
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._stack is not None
        self._stack.close()
        for w in self.caught:
            if not from_package(w.filename):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def warnings(self) -> list[str]:
        found = [r.getMessage() for r in self.handler.records if r.levelno >= logging.WARNING]
        found += [str(w.message) for w in self.caught if from_package(w.filename)]
        return list(dict.fromkeys(found))

    def log(self) -> list[str]:
        lines = [f"{r.levelname}: {r.getMessage()}" for r in self.handler.records]
        lines += [f"STDOUT: {s}" for s in self.stdout.getvalue().splitlines() if s.strip()]
        lines += [f"WARNING: {w.message}" for w in self.caught if from_package(w.filename)]
        return lines


def from_package(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def rng_kept(device: torch.device) -> Iterator[None]:
    """The caller's random streams as they were, and the package's side effects undone.

    Every component reseeds the global torch generator; check_dynamic replaces the trace
    function (a debugger's or coverage's) with None and counts into module-level totals that
    are never reset, so after one model that trips it every later model would be flagged.
    """
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    trace = sys.gettrace()
    for key in package_checks.funcs:
        package_checks.funcs[key] = 0
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        sys.settrace(trace)


# ---------------------------------------------------------------------------------------------
# Per-component flags and resuming, through the package's state object
