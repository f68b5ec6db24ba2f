"""AutoAttack (Croce & Hein, ICML 2020) through the authors' own code, the `pyautoattack` package.

A robustness number is only comparable with the literature when it comes from the official
AutoAttack, so nothing here re-implements an attack: this module maps robench's threat model,
seed and parameters onto `pyautoattack.AutoAttack` and takes care of what the package leaves to
its caller:

- Silence. pyautoattack logs through the 'auto-attack' logger (an unconfigured logger sends its
  warnings to stderr) and its checks may call `warnings.warn`; robench keeps stdout for results.
  For the duration of a call the logger writes only into a list, warnings are recorded, and
  stdout is captured; everything lands in `AutoAttackReport` (`attack.report`).
- Per-component robust accuracy. The package keeps it in a local dict. Its evaluation state
  object, however, receives the per-point robust flags after every batch and is told when each
  component has finished (`add_run_attack`); a recording subclass of that state class, put in
  place for the duration of the call, reads the exact flags there. No log line is parsed.
- Resuming. pyautoattack 0.2.0 can write a state file but cannot read one back: the attack set
  is stored as a Python repr string, so every existing file is refused as "made for a different
  set of attacks"; the finished-attack list comes back as a list without `.add`; a restored run
  raises UnboundLocalError (`y_adv`) as soon as it breaks a point; a file written before the
  clean pass does not load. The same recording subclass repairs the loading (sets back to sets)
  and hands the saved flags to the package at the moment it sets its own clean flags, so the
  package's own loop skips the finished components and the points already broken. Only the
  loading is touched; the attacks, their order and the cascade are the package's.
- The components (APGD-CE, APGD-T, FAB-T, Square, and APGD-DLR) as attacks of their own, with the
  settings the standard version gives them, read from a standard-version instance of the
  package rather than copied here, so that a component alone attacks as it does in the suite.

Version "custom" of `autoattack` is the package's custom version: its constructor defaults
(APGD 5 restarts, FAB 5 restarts, 9 target classes, Square 5000 queries), not the standard
settings; the single-component attacks are the way to get a component with standard settings.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyautoattack
import torch
from pyautoattack import autoattack as _package
from pyautoattack import checks as _checks
from pyautoattack.state import EvaluationState
from torch import nn

from robench.atomic import atomic_write_json
from robench.attacks.base import Attack, Found, register_attack
from robench.attacks.judge import Judge
from robench.errors import UserError

VERSIONS = ("standard", "plus", "rand", "custom")
COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
DEFAULT_BATCH_SIZE = 500
LOGGER_NAME = "auto-attack"
RANDOMIZED_WARNING = "it seems to be a randomized defense"
# The components that average gradients over draws (EOT) when `eot_iter` > 1.
EOT_COMPONENTS = ("apgd-ce", "apgd-dlr")
# AutoAttack's own threshold for its Square check (`checks.check_square_sr`): Square must
# lower robust accuracy by more than this fraction of the points to signal masking.
SQUARE_ALPHA = 0.002
PACKAGE_DIR = Path(pyautoattack.__file__).resolve().parent

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

# Which of the package's attack objects runs each component.
_RUNNER = {"apgd-ce": "apgd", "apgd-dlr": "apgd", "apgd-t": "apgd_targeted", "fab": "fab",
           "fab-t": "fab", "square": "square"}
# The settings `AutoAttack._set_version` changes (for Linf and L2: restarts, target classes,
# queries; EOT for 'rand'; larger eps steps for L1): copied from a standard-version instance.
_SETTINGS = ("n_restarts", "n_target_classes", "n_queries", "eot_iter", "use_largereps")


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


@dataclass
class AutoAttackParams:
    version: str = "standard"
    attacks: list[str] = field(default_factory=list)
    # Draws per gradient of APGD-CE and APGD-DLR in version 'custom' (the 'rand' version sets
    # 20 itself; robench sets 20 for a randomised model).
    eot_iter: int = 1


@dataclass
class APGDParams:
    # 1 in the standard suite; 20 in the 'rand' version, for a randomised model.
    eot_iter: int = 1


class _PackageAttack(Attack):
    """The part every AutoAttack entry shares: build the package's object, run, report."""

    randomized = True
    # pyautoattack batches internally (and only its first batch feeds its checks): give it every
    # point at once.
    batches_itself: ClassVar[bool] = True

    def __init__(self, threat, params=None, *, seed: int = 0,
                 batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__(threat, params, seed=seed)
        self._check_params()
        # A runtime knob, yet not without effect: the package reseeds per batch, so the random
        # starts a point gets depend on its batch. It is recorded in the report.
        self.batch_size = batch_size
        self.report: AutoAttackReport | None = None
        self._state_path: Path | None = None

    # -- what a subclass says -----------------------------------------------------------------

    def _check_params(self) -> None:
        pass

    def suite(self) -> tuple[str, list[str]]:
        """(package version, components in run order)."""
        raise NotImplementedError

    def _configure(self, aa: _package.AutoAttack) -> None:
        """Change the package object's settings after construction (components only)."""

    # -- running ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        version, attacks = self.suite()
        return {**super().describe(), "pyautoattack": pyautoattack.__version__,
                "suite": {"version": version, "attacks": attacks}}

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            judge: Judge | None = None) -> Found:
        """The package decides, on `model`, which points it broke: those are its claims.

        The judge is not asked inside: the package's cascade is its own. The evaluation
        checks every claim with the judge afterwards (robench.evaluation.protocol).
        """
        x_adv = self._evaluate(model, x, y, self._state_path)
        return Found(x_adv, claimed=~self.report.robust.to(x_adv.device).bool())

    def run_with_state(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       state_path: str | Path, *, judge: Judge | None = None) -> Found:
        """Like calling the attack, but continue from (and keep up to date) `state_path`.

        An interrupted evaluation then resumes after its last finished component and skips the
        points already broken; a state file made for other attacks, another threat model, seed
        or number of points is refused. A sidecar `<state_path>.robench.json` holds what
        pyautoattack's file does not (the attack's description, per-component accuracies).
        """
        if not isinstance(state_path, (str, os.PathLike)) or not os.fspath(state_path):
            raise UserError(f"state_path must be a file path, got {state_path!r}.")
        self._state_path = Path(state_path).resolve()
        try:
            return self.search(model, x, y, judge=judge)
        finally:
            self._state_path = None

    def package_attack(self, model: nn.Module,
                       device: torch.device | str) -> _package.AutoAttack:
        """The configured pyautoattack object, exactly as a call would run it (to inspect)."""
        version, attacks = self.suite()
        aa = _package.AutoAttack(model, norm=self.norm, eps=self.eps, version=version,
                                 seed=self.seed, device=device,
                                 attacks=attacks if version == "custom" else None)
        self._configure(aa)
        return aa

    def _evaluate(self, model, x, y, state_path: Path | None) -> torch.Tensor:
        version, attacks = self.suite()
        n = len(y)
        if self.batch_size < 1:
            raise UserError(f"batch_size must be a positive integer, got {self.batch_size}.")
        sidecar = _Sidecar(state_path, self.describe(), n) if state_path else None
        recorder = _Recorder(n, attacks)
        if sidecar is not None:
            recorder.restore(sidecar.prepare(attacks))
        capture = _Capture()
        with capture, _recording_state(recorder, sidecar), _rng_kept(x.device):
            aa = self.package_attack(model, x.device)
            try:
                x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=self.batch_size,
                                                      state_path=state_path)
            except ValueError as exc:  # the package's refusal, should our own check miss it
                if "different set of attacks" in str(exc):
                    raise UserError(f"state file {str(state_path)!r} was made for another set "
                                    f"of attacks than {attacks}.") from exc
                raise
        self.report = recorder.report(version, self.batch_size, capture)
        return x_adv


@register_attack("autoattack", "AutoAttack (official pyautoattack): APGD-CE, APGD-T, FAB-T, "
                               "Square; versions standard, plus, rand, custom")
class AutoAttack(_PackageAttack):
    params_cls = AutoAttackParams

    def _check_params(self) -> None:
        p = self.params
        if p.version not in VERSIONS:
            raise UserError(f"autoattack.version {p.version!r} is not one of "
                            f"{', '.join(VERSIONS)}.")
        if p.version != "custom" and p.attacks:
            raise UserError(f"autoattack.attacks {p.attacks} is only read with version "
                            f"'custom', not {p.version!r}; drop it or set version=custom.")
        if p.version == "custom" and not p.attacks:
            raise UserError(f"autoattack.attacks {p.attacks} is empty: version 'custom' needs "
                            f"components among {', '.join(COMPONENTS)}.")
        for name in p.attacks:
            if name not in COMPONENTS:
                raise UserError(f"autoattack.attacks names {name!r}, which is not one of "
                                f"{', '.join(COMPONENTS)}.")
        if len(set(p.attacks)) != len(p.attacks):
            raise UserError(f"autoattack.attacks {p.attacks} names a component twice.")
        eot = p.eot_iter
        if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
            raise UserError(f"autoattack.eot_iter must be a positive integer, got {eot!r}.")
        if eot > 1 and p.version != "custom":
            raise UserError(f"autoattack.eot_iter is only read with version 'custom' (version "
                            f"'rand' draws 20 itself), not {p.version!r}.")

    def _configure(self, aa: _package.AutoAttack) -> None:
        if self.params.version == "custom" and self.params.eot_iter > 1:
            aa.apgd.eot_iter = self.params.eot_iter

    def without_eot(self) -> list[str]:
        """Components this configuration runs without averaging over draws."""
        version, attacks = self.suite()
        if version == "rand":
            return []
        if version == "custom" and self.params.eot_iter > 1:
            return [a for a in attacks if a not in EOT_COMPONENTS]
        return list(attacks)

    def suite(self) -> tuple[str, list[str]]:
        if self.params.version == "custom":
            return "custom", list(self.params.attacks)
        with _Capture():  # the package logs while it sets a version up
            aa = _package.AutoAttack(None, norm=self.norm, eps=self.eps,
                                     version=self.params.version, seed=self.seed)
        return self.params.version, list(aa.attacks_to_run)


class _Component(_PackageAttack):
    """One component alone, as the standard suite runs it (custom version, standard settings)."""

    component: ClassVar[str]

    def suite(self) -> tuple[str, list[str]]:
        return "custom", [self.component]

    def settings(self) -> dict[str, Any]:
        """The standard version's settings for this component, read from the package."""
        with _Capture():
            reference = _package.AutoAttack(None, norm=self.norm, eps=self.eps,
                                            version="standard", seed=self.seed)
        runner = getattr(reference, _RUNNER[self.component])
        out = {k: getattr(runner, k) for k in _SETTINGS if hasattr(runner, k)}
        if "eot_iter" in out and hasattr(self.params, "eot_iter"):
            out["eot_iter"] = self.params.eot_iter
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "settings": self.settings()}

    def without_eot(self) -> list[str]:
        if self.component in EOT_COMPONENTS and getattr(self.params, "eot_iter", 1) > 1:
            return []
        return [self.component]

    def _configure(self, aa: _package.AutoAttack) -> None:
        runner = getattr(aa, _RUNNER[self.component])
        for key, value in self.settings().items():
            setattr(runner, key, value)


class _APGDComponent(_Component):
    params_cls = APGDParams

    def _check_params(self) -> None:
        eot = self.params.eot_iter
        if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
            raise UserError(f"{self.name}.eot_iter must be a positive integer, got {eot!r}.")


@register_attack("apgd-ce", "APGD on cross-entropy (AutoAttack's component, official code)")
class APGDCE(_APGDComponent):
    component = "apgd-ce"


@register_attack("apgd-dlr", "APGD on the DLR loss (AutoAttack's component, official code)")
class APGDDLR(_APGDComponent):
    component = "apgd-dlr"


@register_attack("apgd-t", "targeted APGD on DLR, 9 targets (AutoAttack's component)")
class APGDT(_Component):
    component = "apgd-t"


@register_attack("fab-t", "targeted FAB, 9 targets (AutoAttack's component, official code)")
class FABT(_Component):
    component = "fab-t"


@register_attack("square", "Square, black-box, 5000 queries (AutoAttack's component)")
class Square(_Component):
    component = "square"
    uses_gradients = False  # black-box: it only queries the model


# ---------------------------------------------------------------------------------------------
# Keeping the package quiet, and keeping what it says


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _Capture:
    """The 'auto-attack' logger into a list, warnings recorded, stdout captured; all undone after.

    The logger's own handlers are set aside too: whatever a user attached would otherwise write
    into robench's output. Warnings that do not come from pyautoattack are raised again after.
    Logger, warning filters and stdout are process-wide, as is the package's own module state:
    one AutoAttack call at a time per process.
    """

    def __init__(self) -> None:
        self.handler = _ListHandler()
        self.caught: list[warnings.WarningMessage] = []
        self.stdout = io.StringIO()
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> _Capture:
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
            if not _from_package(w.filename):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def warnings(self) -> list[str]:
        found = [r.getMessage() for r in self.handler.records if r.levelno >= logging.WARNING]
        found += [str(w.message) for w in self.caught if _from_package(w.filename)]
        return list(dict.fromkeys(found))

    def log(self) -> list[str]:
        lines = [f"{r.levelname}: {r.getMessage()}" for r in self.handler.records]
        lines += [f"STDOUT: {s}" for s in self.stdout.getvalue().splitlines() if s.strip()]
        lines += [f"WARNING: {w.message}" for w in self.caught if _from_package(w.filename)]
        return lines


def _from_package(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _rng_kept(device: torch.device) -> Iterator[None]:
    """The caller's random streams as they were, and the package's side effects undone.

    Every component reseeds the global torch generator; check_dynamic replaces the trace
    function (a debugger's or coverage's) with None and counts into module-level totals that
    are never reset, so after one model that trips it every later model would be flagged.
    """
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    trace = sys.gettrace()
    for key in _checks.funcs:
        _checks.funcs[key] = 0
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        sys.settrace(trace)


# ---------------------------------------------------------------------------------------------
# Per-component flags and resuming, through the package's state object


class _Recorder:
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
        self.on_finished: Callable[[_Recorder], None] | None = None

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

    def report(self, version: str, batch_size: int, capture: _Capture) -> AutoAttackReport:
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


def _as_set(value: Any) -> set[str]:
    """pyautoattack 0.2.0 writes a set as its repr string ("{'apgd-ce', 'square'}")."""
    if isinstance(value, str):
        value = ast.literal_eval(value) if value.strip() not in ("", "set()") else set()
    return {str(v) for v in value}


@contextlib.contextmanager
def _recording_state(recorder: _Recorder, sidecar: _Sidecar | None) -> Iterator[None]:
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
            state._attacks_to_run = _as_set(state._attacks_to_run)
            state._run_attacks = _as_set(state._run_attacks)
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
    saved = _package.EvaluationState
    _package.EvaluationState = RecordingState
    try:
        yield
    finally:
        _package.EvaluationState = saved


class _Sidecar:
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
            saved_attacks = _as_set(saved["_attacks_to_run"])
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

    def save_progress(self, recorder: _Recorder) -> None:
        self._write({"counts": recorder.counts, "broken": recorder.broken})

    def _write(self, progress: dict[str, Any]) -> None:
        atomic_write_json(self.path, {"attack": self.description, "n_points": self.n,
                                      **progress})
