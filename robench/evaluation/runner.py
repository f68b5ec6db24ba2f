"""`robench eval` for Lp threat models: one record per eps, each the per-point worst case.

The order of work: check every input (eps, attack names and parameters, the number of points)
before anything runs; choose the points (their own seed); find out whether the model is
randomised (robench.evaluation.randomness), which decides the judge (one pass, or every one
of `verdict_draws` draws), whether the view may be used, and which attacks are sound; then
for each eps, in increasing order, the clean verdicts, the attacks, the opt-in sanity pass,
and the record. If AutoAttack's own check finds the model randomised when robench's did not,
the evaluation starts again as a randomised one, and the records it wrote meanwhile are
removed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from robench import records as records_mod
from robench import runs
from robench.attacks.autoattack import RANDOMIZED_WARNING
from robench.attacks.judge import Judge
from robench.config import EvalConfig
from robench.data import to_float
from robench.errors import Interrupted
from robench.evaluation import randomness
from robench.evaluation.plan import Plan, plan_attacks
from robench.evaluation.points import point_count, select_points, selection_mask
from robench.evaluation.protocol import (
    ProtocolState,
    StepResult,
    check_unchanged,
    clean_pass,
    snapshot,
)
from robench.evaluation.protocol import run_attacks as run_attack_sequence
from robench.evaluation.record import make_record
from robench.evaluation.sanity import sanity_pass
from robench.evaluation.standin import Searchers, choose_view
from robench.progress import Counter
from robench.records import Record, Selection, record_key
from robench.runtime import resolve_device
from robench.threat import Eps, default_eps, parse_eps_list


@dataclass
class EvalOutcome:
    record: Record
    path: Path
    reused: bool = False  # True when the same protocol had already been evaluated


class _FoundRandomised(Exception):
    """AutoAttack's own check saw the model randomised; robench's detection had not."""

    def __init__(self, warning: str):
        super().__init__(warning)
        self.warning = warning


def save_state(path: Path, state: ProtocolState) -> None:
    runs.save_state({
        "clean_correct": state.clean_correct, "robust": state.robust,
        "clean_seconds": state.clean_seconds, "clean_votes": state.clean_votes,
        "steps": [dataclasses.asdict(s) for s in state.steps],
    }, path)


def _unlink_states(*paths: Path) -> None:
    """Remove state files and any sidecar an attack keeps beside one."""
    for path in paths:
        path.unlink(missing_ok=True)
        for extra in path.parent.glob(path.name + ".*"):
            extra.unlink(missing_ok=True)


def _load_state(path: Path) -> ProtocolState:
    data = runs.load_state(path)
    return ProtocolState(clean_correct=data["clean_correct"], robust=data["robust"],
                         clean_seconds=data["clean_seconds"],
                         clean_votes=data.get("clean_votes", 0),
                         steps=[StepResult(**s) for s in data["steps"]])


def _budgets(target, cfg: EvalConfig) -> list[Eps]:
    shape = tuple(target.test.x.shape[1:])
    if cfg.eps:
        return parse_eps_list(cfg.eps, norm=cfg.norm, shape=shape)
    return [default_eps(target.info.name, cfg.norm, shape)]


def evaluate(target, cfg: EvalConfig, *, quiet: bool = False, resume: bool = False,
             force: bool = False) -> list[EvalOutcome]:
    """Clean and robust accuracy of `target` under `cfg`: one record per eps."""
    cfg.validate()
    eps_list = _budgets(target, cfg)
    for eps in eps_list:  # every attack name, norm and parameter checked before any work
        plan_attacks(cfg, eps.value, stochastic=False)
    n_avail = len(target.test)
    n_points = point_count(n_avail, cfg.n_examples, cfg.all_examples, target.info.name)
    runs.ensure_writable_dir(target.evals_dir)
    device = resolve_device(cfg.device)
    idx, method = select_points(target.test, n_points, cfg.selection_seed)
    selection = Selection(n_examples=len(idx), method=method, seed=cfg.selection_seed,
                          n_available=n_avail, mask=selection_mask(idx, n_avail))
    model = target.model.to(device)
    before = snapshot(model)
    session = _Session(target, cfg, target.test.x[idx], target.test.y[idx], selection,
                       device, quiet)
    with randomness.seeded(cfg.seed, device):
        try:
            outcomes = session.run(eps_list, stochastic=None, resume=resume, force=force)
        except _FoundRandomised as found:
            session.discard_written()
            session.notes_for_all.append(
                f"AutoAttack's own check found the model randomised where robench's detection "
                f"did not ({found.warning!r}); evaluated again as a randomised model")
            outcomes = session.run(eps_list, stochastic=True, resume=False, force=force)
    check_unchanged(model, before)
    return outcomes


class _Session:
    """One `evaluate` call's shared parts: the points, the judge, the stand-ins."""

    def __init__(self, target, cfg: EvalConfig, x, y, selection: Selection,
                 device: torch.device, quiet: bool):
        self.target, self.cfg, self.x, self.y = target, cfg, x, y
        self.selection, self.device, self.quiet = selection, device, quiet
        self.model = target.model
        self.written: list[Path] = []
        self.notes_for_all: list[str] = []

    def discard_written(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()

    def _setup(self, stochastic: bool | None) -> tuple[bool, list[str]]:
        cfg, notes = self.cfg, []
        first = to_float(self.x[:randomness.POINTS].to(self.device))
        if stochastic is None:
            found = randomness.detect(self.model, first)
            stochastic = found.stochastic
            if stochastic:
                notes.append(f"the model is randomised: {found.describe()}")
        for _ in range(2):  # a repeated clean pass may still find randomness
            self.judge = Judge(self.model, draws=cfg.verdict_draws if stochastic else 1,
                               batch_size=cfg.batch_size)
            self.clean = clean_pass(self.judge, self.x, self.y, device=self.device,
                                    batch_size=cfg.batch_size, check_repeat=not stochastic)
            if not self.clean.repeat_differs:
                break
            stochastic = True
            notes.append("the model is randomised: two clean passes over the evaluated "
                         "points gave different logits")
        view, why = choose_view(self.model, first, self.y[:randomness.POINTS].to(self.device),
                                stochastic=stochastic)
        if why is not None and not stochastic:
            notes.append(why)
        self.searchers = Searchers(self.model, view, cfg.precision)
        return stochastic, notes

    def run(self, eps_list: list[Eps], *, stochastic: bool | None, resume: bool,
            force: bool) -> list[EvalOutcome]:
        stochastic, setup_notes = self._setup(stochastic)
        # Planned for every eps first: attacks without EOT are refused before any runs.
        plans = {eps.value: plan_attacks(self.cfg, eps.value, stochastic=stochastic)
                 for eps in eps_list}
        outcomes: list[EvalOutcome] = []
        previous: Record | None = None  # the record at the next smaller eps
        with Counter(quiet=self.quiet) as counter:
            for eps in sorted(eps_list, key=lambda e: e.value):
                outcome = self._one(eps, plans[eps.value], stochastic, setup_notes, previous,
                                    counter, resume=resume, force=force)
                outcomes.append(outcome)
                previous = outcome.record
        return outcomes

    def _one(self, eps: Eps, plan: Plan, stochastic: bool, setup_notes: list[str], previous,
             counter, *, resume: bool, force: bool) -> EvalOutcome:
        cfg, target = self.cfg, self.target
        attacks = plan.attacks
        verdict = {"rule": "every-draw" if stochastic else "one-pass",
                   "draws": self.judge.draws}
        sanity = {"n": cfg.sanity_n} if cfg.sanity else None
        protocol = {"attacks": [a.describe() for a in attacks], "norm": cfg.norm,
                    "batch_size": [getattr(a, "batch_size", None) for a in attacks],
                    "eps": eps.value, "selection": dataclasses.asdict(self.selection),
                    "precision": cfg.precision, "model": dataclasses.asdict(target.source),
                    "verdict": verdict, "sanity": sanity}
        key = record_key([a.name for a in attacks], cfg.norm, eps.slug, len(self.y), protocol)
        path = target.evals_dir / f"{key}.json"
        if path.is_file() and not force:
            return EvalOutcome(records_mod.read(path), path, reused=True)
        state_path = target.evals_dir / f".{key}.state.pt"
        inner = [target.evals_dir / f".{key}.attack{i}.state" for i in range(len(attacks))]
        if resume and state_path.is_file():
            state = _load_state(state_path)
            counter.message(f"resuming {key} after {len(state.steps)} finished attack(s)")
        else:
            _unlink_states(state_path, *inner)
            c = self.clean.state
            state = ProtocolState(c.clean_correct.clone(), c.clean_correct.clone(),
                                  clean_seconds=c.clean_seconds, clean_votes=c.clean_votes)
        try:
            run_attack_sequence(self.x, self.y, attacks, state, searchers=self.searchers,
                                judge=self.judge, device=self.device,
                                batch_size=cfg.batch_size, counter=counter,
                                on_step=lambda s, p=state_path: save_state(p, s),
                                state_path=lambda i, inner=inner: inner[i])
        except KeyboardInterrupt:
            raise Interrupted(f"evaluation interrupted after {len(state.steps)} of "
                              f"{len(attacks)} attacks; run the same command with --resume "
                              f"to continue it.") from None
        if not stochastic:
            for attack in attacks:
                report = getattr(attack, "report", None)
                if report is not None and getattr(report, "randomized", False):
                    _unlink_states(state_path, *inner)
                    raise _FoundRandomised(next(w for w in report.warnings
                                                if RANDOMIZED_WARNING in w))
        checks = None
        if cfg.sanity:
            checks = sanity_pass(self.x, self.y, state, norm=cfg.norm, eps=eps.value,
                                 seed=cfg.seed, n_points=cfg.sanity_n, stochastic=stochastic,
                                 searchers=self.searchers, judge=self.judge,
                                 device=self.device, batch_size=cfg.batch_size)
        record = make_record(target, cfg, key, eps, plan, state, self.selection, self.judge,
                             stochastic=stochastic, notes=[*setup_notes, *self.notes_for_all],
                             previous=previous, sanity=checks, device=self.device)
        written = records_mod.write(record, target.evals_dir)
        self.written.append(written)
        _unlink_states(state_path, *inner)
        return EvalOutcome(record, written)
