"""The registered AutoAttack entries: the suite in its versions, and each component alone.

Nothing here re-implements an attack: robench's threat model, seed and parameters are mapped
onto `pyautoattack.AutoAttack`. The components (APGD-CE, APGD-T, FAB-T, Square, APGD-DLR) get
the settings the standard version gives them, read from a standard-version instance of the
package rather than copied here, so that a component alone attacks as it does in the suite.

Version "custom" of `autoattack` is the package's custom version: its constructor defaults
(APGD 5 restarts, FAB 5 restarts, 9 target classes, Square 5000 queries), not the standard
settings; the single-component attacks are the way to get a component with standard settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyautoattack
import torch
from pyautoattack import autoattack as package
from torch import nn

from robench.attacks.autoattack.isolation import Capture, rng_kept
from robench.attacks.autoattack.report import AutoAttackReport
from robench.attacks.autoattack.resume import Recorder, Sidecar, recording_state
from robench.attacks.base import Attack, Found, register_attack
from robench.attacks.judge import Judge
from robench.errors import UserError

VERSIONS = ("standard", "plus", "rand", "custom")
COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
DEFAULT_BATCH_SIZE = 500
# The components that average gradients over draws (EOT) when `eot_iter` > 1.
EOT_COMPONENTS = ("apgd-ce", "apgd-dlr")
# Which of the package's attack objects runs each component.
_RUNNER = {"apgd-ce": "apgd", "apgd-dlr": "apgd", "apgd-t": "apgd_targeted", "fab": "fab",
           "fab-t": "fab", "square": "square"}
# The settings `AutoAttack._set_version` changes (for Linf and L2: restarts, target classes,
# queries; EOT for 'rand'; larger eps steps for L1): copied from a standard-version instance.
_SETTINGS = ("n_restarts", "n_target_classes", "n_queries", "eot_iter", "use_largereps")


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

    def _configure(self, aa: package.AutoAttack) -> None:
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
                       device: torch.device | str) -> package.AutoAttack:
        """The configured pyautoattack object, exactly as a call would run it (to inspect)."""
        version, attacks = self.suite()
        aa = package.AutoAttack(model, norm=self.norm, eps=self.eps, version=version,
                                 seed=self.seed, device=device,
                                 attacks=attacks if version == "custom" else None)
        self._configure(aa)
        return aa

    def _evaluate(self, model, x, y, state_path: Path | None) -> torch.Tensor:
        version, attacks = self.suite()
        n = len(y)
        if self.batch_size < 1:
            raise UserError(f"batch_size must be a positive integer, got {self.batch_size}.")
        sidecar = Sidecar(state_path, self.describe(), n) if state_path else None
        recorder = Recorder(n, attacks)
        if sidecar is not None:
            recorder.restore(sidecar.prepare(attacks))
        capture = Capture()
        with capture, recording_state(recorder, sidecar), rng_kept(x.device):
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

    def _configure(self, aa: package.AutoAttack) -> None:
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
        with Capture():  # the package logs while it sets a version up
            aa = package.AutoAttack(None, norm=self.norm, eps=self.eps,
                                     version=self.params.version, seed=self.seed)
        return self.params.version, list(aa.attacks_to_run)


class _Component(_PackageAttack):
    """One component alone, as the standard suite runs it (custom version, standard settings)."""

    component: ClassVar[str]

    def suite(self) -> tuple[str, list[str]]:
        return "custom", [self.component]

    def settings(self) -> dict[str, Any]:
        """The standard version's settings for this component, read from the package."""
        with Capture():
            reference = package.AutoAttack(None, norm=self.norm, eps=self.eps,
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

    def _configure(self, aa: package.AutoAttack) -> None:
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
