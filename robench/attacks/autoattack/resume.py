"""Per-component robust flags, and resuming an interrupted call, through the package's state.

What this works around, in pyautoattack 0.2.0: the package keeps per-component robust accuracy
in a local dict, yet its evaluation state object receives the per-point robust flags after
every batch and is told when each component has finished (`add_run_attack`), so a recording
subclass of that state class, put in place for the duration of a call, reads the exact flags
there: no log line is parsed. The package can also write a state file but not read one back:
the attack set is stored as a Python repr string, so every existing file is refused as "made
for a different set of attacks"; the finished-attack list comes back as a list without `.add`;
a restored run raises UnboundLocalError (`y_adv`) as soon as it breaks a point; a file written
before the clean pass does not load. The same subclass repairs the loading (sets back to sets)
and hands the saved flags to the package at the moment it sets its own clean flags, so the
package's own loop skips the finished components and the points already broken. Only the
loading is touched; the attacks, their order and the cascade are the package's. A sidecar
file holds what the package's state lacks (the attack's description, per-component counts).
"""

from __future__ import annotations

import ast
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from pyautoattack import autoattack as package
from pyautoattack.state import EvaluationState

from robench.atomic import atomic_write_json
from robench.attacks.autoattack.isolation import Capture
from robench.attacks.autoattack.report import AutoAttackReport
from robench.errors import UserError


class Recorder:
    """Robust counts after each component, as the package's state object is handed the flags."""

    def __init__(self, n: int, attacks: list[str]):
        self.n = n
        self.attacks = attacks
        self.state: EvaluationState | None = None
        self.counts: dict[str, int] = {}  # robust points after each finished component
        self.broken: dict[str, int] = {}
        self.resumed: list[str] = []
        self.lost = 0
        self._count: int | None = None  # robust points when the current component began
        self.on_finished: Callable[[Recorder], None] | None = None

    def restore(self, saved: dict[str, Any] | None) -> None:
        if saved:
            self.counts.update({k: int(v) for k, v in saved.get("counts", {}).items()})
            self.broken.update({k: int(v) for k, v in saved.get("broken", {}).items()})

    def resuming(self, finished: set[str], clean_accuracy: float) -> None:
        """Count from where the last finished component left off, not from the restored flags:
        points broken by a component interrupted half-way then still count as its own."""
        self.resumed = [a for a in self.attacks if a in finished]
        if not self.resumed:
            self._count = round(clean_accuracy * self.n) if clean_accuracy == clean_accuracy \
                else None
        else:
            self._count = self.counts.get(self.resumed[-1])

    def flags_set(self, flags: torch.Tensor) -> None:
        if self._count is None:
            self._count = int(flags.sum())

    def finished(self, attack: str, flags: torch.Tensor) -> None:
        count = int(flags.sum())
        self.broken[attack] = (self._count if self._count is not None else count) - count
        self.counts[attack] = count
        self._count = count
        if self.on_finished is not None:
            self.on_finished(self)

    def report(self, version: str, batch_size: int, capture: Capture) -> AutoAttackReport:
        state = self.state
        if state is None or state.robust_flags is None:
            raise RuntimeError("pyautoattack finished without setting its robust flags")
        robust = state.robust_flags.detach().cpu().clone()
        left = int(robust.sum())
        skipped = [a for a in self.attacks if a not in self.counts and a not in self.resumed]
        for a in skipped:  # the package stops once no point is left: nothing more to break
            self.counts[a], self.broken[a] = left, 0
        known = [a for a in self.attacks if a in self.counts]  # a resumed one may be unknown
        return AutoAttackReport(
            version=version, attacks=list(self.attacks), n_points=self.n,
            batch_size=batch_size, clean_accuracy=float(state.clean_accuracy),
            per_attack={a: self.counts[a] / self.n for a in known},
            broken={a: self.broken[a] for a in known if a in self.broken}, robust=robust,
            warnings=capture.warnings(), log=capture.log(), resumed=list(self.resumed),
            skipped=skipped, lost_examples=self.lost)


def as_set(value: Any) -> set[str]:
    """pyautoattack 0.2.0 writes a set as its repr string ("{'apgd-ce', 'square'}")."""
    if isinstance(value, str):
        value = ast.literal_eval(value) if value.strip() not in ("", "set()") else set()
    return {str(v) for v in value}


@contextlib.contextmanager
def recording_state(recorder: Recorder, sidecar: Sidecar | None) -> Iterator[None]:
    """The package's evaluation state class, replaced by a recording one for this call."""

    class RecordingState(EvaluationState):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._restored: torch.Tensor | None = None
            self._restored_clean: float | None = None
            recorder.state = self

        @classmethod
        def from_disk(cls, path: Path) -> EvaluationState:
            state = super().from_disk(path)
            state._attacks_to_run = as_set(state._attacks_to_run)
            state._run_attacks = as_set(state._run_attacks)
            # The package would go on writing to the path recorded inside the file (it only
            # warns when that differs): a moved run directory would update the old copy.
            state.path = Path(path)
            # Left unset, the package takes its fresh-start branch (the only one that works in
            # 0.2.0); the saved flags are applied when it sets its clean flags, below.
            state._restored, state._robust_flags = state._robust_flags, None
            state._restored_clean = state._clean_accuracy
            recorder.resuming(state._run_attacks, state._clean_accuracy)
            return state

        @property
        def robust_flags(self) -> torch.Tensor | None:
            return self._robust_flags

        @robust_flags.setter
        def robust_flags(self, flags: torch.Tensor) -> None:
            if self._restored is not None:
                restored = self._restored.to(flags.device)
                recorder.lost = int((flags & ~restored).sum())
                # In place: the package goes on with this very tensor as its robust flags.
                flags &= restored
                self._restored = None
            self._robust_flags = flags
            recorder.flags_set(flags)
            self.to_disk(force=True)

        @property
        def clean_accuracy(self) -> float:
            return self._clean_accuracy

        @clean_accuracy.setter
        def clean_accuracy(self, value: float) -> None:
            if self._restored_clean is not None:  # the package would store the restored flags'
                value, self._restored_clean = self._restored_clean, None
            self._clean_accuracy = value
            self.to_disk(force=True)

        def add_run_attack(self, attack: str) -> None:
            self._run_attacks.add(attack)
            # Forced: the package saves at most once a minute, so a finished component could
            # otherwise be lost to an interruption and run again.
            self.to_disk(force=True)
            recorder.finished(attack, self._robust_flags)

    if sidecar is not None:
        recorder.on_finished = sidecar.save_progress
    saved = package.EvaluationState
    package.EvaluationState = RecordingState
    try:
        yield
    finally:
        package.EvaluationState = saved


class Sidecar:
    """What pyautoattack's state file lacks: the attack's description and per-component results.

    The package checks only the set of components; a state made at another eps, norm, seed or
    on other points would otherwise be resumed silently.
    """

    def __init__(self, state_path: Path, description: dict[str, Any], n: int):
        self.state_path = state_path
        self.path = state_path.with_name(state_path.name + ".robench.json")
        self.description = json.loads(json.dumps(description))
        self.n = n

    def prepare(self, attacks: list[str]) -> dict[str, Any] | None:
        """Check a state file to resume from; None when there is nothing to resume."""
        if not self.state_path.exists():
            self._write({})
            return None
        where = str(self.state_path)
        try:
            saved = json.loads(self.state_path.read_text())
            saved_attacks = as_set(saved["_attacks_to_run"])
            flags = saved["_robust_flags"]
        except (OSError, ValueError, KeyError, TypeError, SyntaxError) as exc:
            raise UserError(f"state file {where!r} is not a readable AutoAttack state "
                            f"({type(exc).__name__}); delete it to start over.") from None
        if saved_attacks != set(attacks):
            raise UserError(f"state file {where!r} was made for the attacks "
                            f"{sorted(saved_attacks)}, not {sorted(attacks)}; use another "
                            f"state file or delete it.")
        if flags is None:  # interrupted before the clean pass: nothing done, and unloadable
            self.state_path.unlink()
            self._write({})
            return None
        if len(flags) != self.n:
            raise UserError(f"state file {where!r} was made for {len(flags)} points, not "
                            f"{self.n}.")
        if not self.path.exists():
            return None  # written by pyautoattack alone: only the attack set can be checked
        try:
            meta = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{str(self.path)!r} is not readable ({type(exc).__name__}); "
                            f"delete it and {where!r} to start over.") from None
        old = meta.get("attack", {})
        for key in sorted(set(old) | set(self.description)):
            if old.get(key) != self.description.get(key):
                raise UserError(f"state file {where!r} was made with {key} "
                                f"{old.get(key)!r}, not {self.description.get(key)!r}.")
        return meta

    def save_progress(self, recorder: Recorder) -> None:
        self._write({"counts": recorder.counts, "broken": recorder.broken})

    def _write(self, progress: dict[str, Any]) -> None:
        atomic_write_json(self.path, {"attack": self.description, "n_points": self.n,
                                      **progress})
