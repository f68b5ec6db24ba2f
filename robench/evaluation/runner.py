"""`robench eval` for Lp threat models: one record per eps, each the per-point worst case.

The order of work: check every input (eps, attack names and parameters, the number of points)
before anything runs; choose the points (their own seed); find out whether the model is
randomised (robench.evaluation.randomness), which decides the judge (one pass, or every one
of `verdict_draws` draws), whether the view may be used, and which attacks are sound; then
for each eps, in increasing order, the clean verdicts, the attacks, the opt-in sanity pass,
and the record. If AutoAttack's own check finds the model randomised when robench's did not,
the evaluation starts again as a randomised one, and the records it wrote meanwhile are
removed. Before each record or part is written the model is checked to be as the evaluation
found it (robench.evaluation.unchanged); if it changed, everything this call wrote goes.
Every pass works block by block (robench.evaluation.blocks); with a shard, only that shard's
blocks are evaluated and a part is written instead of the record (robench.evaluation.shards;
`merge_shards` in robench.evaluation.merging makes the record).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from robench import records as records_mod
from robench import runs
from robench.attacks.autoattack import RANDOMIZED_WARNING, Findings
from robench.attacks.judge import Judge
from robench.attacks.view import InPrecision
from robench.config import EvalConfig
from robench.cost import peak_memory, reset_peak
from robench.data import to_float
from robench.errors import Interrupted, ModelChanged, Preempted, UserError
from robench.evaluation import randomness
from robench.evaluation.batch_size import AUTO, PROBE_POINTS, choose_batch_size
from robench.evaluation.blocks import Shard, attack_pass, n_blocks
from robench.evaluation.plan import Plan, plan_attacks
from robench.evaluation.points import point_count, select_points, selection_mask
from robench.evaluation.protocol import (
    ProtocolState,
    StepResult,
    clean_pass,
    unlink_states,
)
from robench.evaluation.protocol import run_attacks as run_attack_sequence
from robench.evaluation.record import make_record, protocol_key
from robench.evaluation.sanity import sanity_pass, sanity_result
from robench.evaluation.shards import Partial, partial_path, write_partial
from robench.evaluation.standin import Searchers, choose_view
from robench.evaluation.unchanged import Snapshot, check_unchanged, snapshot
from robench.preemption import StopRequests
from robench.progress import Counter
from robench.records import Record, Selection
from robench.runtime import (
    evaluating,
    is_out_of_memory,
    resolve_device,
    smaller_batch,
    warn_if_slow,
)
from robench.threat import Eps, default_eps, parse_eps_list


@dataclass
class EvalOutcome:
    record: Record
    path: Path
    reused: bool = False  # True when the same protocol had already been evaluated


@dataclass
class ShardOutcome:
    """One shard's part of the evaluation at one eps (the record is made by the merge)."""

    partial: Partial
    path: Path
    eps: Eps
    reused: bool = False


class _FoundRandomised(Exception):
    """AutoAttack's own check saw the model randomised; robench's detection had not."""

    def __init__(self, warning: str):
        super().__init__(warning)
        self.warning = warning


def save_state(path: Path, state: ProtocolState) -> None:
    runs.save_state({
        "clean_correct": state.clean_correct, "robust": state.robust,
        "clean_seconds": state.clean_seconds, "clean_votes": state.clean_votes,
        "steps": [dataclasses.asdict(s) for s in state.steps], "covered": state.covered,
        "robust_after": state.robust_after, "findings": state.findings,
        "progress": state.progress,
    }, path)


def _load_state(path: Path) -> ProtocolState:
    data = runs.load_state(path)
    return ProtocolState(clean_correct=data["clean_correct"], robust=data["robust"],
                         clean_seconds=data["clean_seconds"],
                         clean_votes=data.get("clean_votes", 0),
                         steps=[StepResult(**s) for s in data["steps"]],
                         covered=data.get("covered"),
                         robust_after=data.get("robust_after", []),
                         findings=data.get("findings", []), progress=data.get("progress"))


def budgets(target, cfg: EvalConfig) -> list[Eps]:
    shape = tuple(target.test.x.shape[1:])
    if cfg.eps:
        return parse_eps_list(cfg.eps, norm=cfg.norm, shape=shape)
    return [default_eps(target.info.name, cfg.norm, shape)]


def selection_of(target, cfg: EvalConfig) -> tuple[torch.Tensor, Selection]:
    """The evaluated points' indices and their description (checks --n-examples first)."""
    n_avail = len(target.test)
    n_points = point_count(n_avail, cfg.n_examples, cfg.all_examples, target.info.name)
    idx, method = select_points(target.test, n_points, cfg.selection_seed)
    return idx, Selection(n_examples=len(idx), method=method, seed=cfg.selection_seed,
                          n_available=n_avail, mask=selection_mask(idx, n_avail))


def record_of(target, cfg: EvalConfig, eps: Eps, plan: Plan, part: Partial,
              selection: Selection, previous: Record | None, notes: list[str]) -> Record:
    """The record from the part of one process, or from N shards' parts merged."""
    sanity = None
    if part.sanity is not None:
        sanity = sanity_result(part.sanity, norm=cfg.norm, eps=eps.value, seed=cfg.seed,
                               stochastic=part.stochastic, shape=tuple(target.test.x.shape[1:]),
                               robust_after=int(part.state.robust.sum()), n=part.n_points)
    return make_record(target, cfg, part.key, eps, plan, part.state, selection, part.draws,
                       stochastic=part.stochastic, notes=[*part.notes, *notes],
                       previous=previous, sanity=sanity, device=part.device,
                       peak_memory=part.peak_memory)


def evaluate(target, cfg: EvalConfig, *, quiet: bool = False, resume: bool = False,
             force: bool = False, shard: Shard | None = None) -> list:
    """Clean and robust accuracy of `target` under `cfg`: one record per eps.

    With a `shard` of more than one, only its blocks are evaluated, and the result is one
    `ShardOutcome` per eps (a part for robench.evaluation.merging) instead of records.
    """
    cfg.validate()
    shard = shard or Shard()
    eps_list = budgets(target, cfg)
    for eps in eps_list:  # every attack name, norm and parameter checked before any work
        plan_attacks(cfg, eps.value, stochastic=False)
    idx, selection = selection_of(target, cfg)
    made_dir = not target.evals_dir.exists()
    runs.ensure_writable_dir(target.evals_dir)
    device = resolve_device(cfg.device)
    warn_if_slow(device, cfg.precision)
    model = target.model.to(device)
    reset_peak(device)
    session = _Session(target, cfg, target.test.x[idx], target.test.y[idx], selection,
                       device, quiet, shard, before=snapshot(model))
    try:
        if cfg.batch_size == AUTO:
            session.cfg, auto_note = _auto_batch(cfg, model, session.x, session.y, device,
                                                 shard)
            session.notes_for_all.append(auto_note)
        outcomes = _run(session, eps_list, resume=resume, force=force)
        session.check()  # also when every record was reused: the setup's passes ran
    except ModelChanged as changed:  # found before a write: what was written before goes
        session.discard_written()
        session.discard_states()
        if made_dir:
            _remove_if_empty(target.evals_dir)
        raise changed.written_nothing() from None
    return outcomes


def _run(session: _Session, eps_list: list[Eps], *, resume: bool, force: bool) -> list:
    """The session's records (or parts), evaluated again as a randomised model if AutoAttack
    finds randomness robench's detection missed."""
    cfg, device = session.cfg, session.device
    with randomness.seeded(cfg.seed, device):
        try:
            try:
                return session.run(eps_list, stochastic=None, resume=resume, force=force)
            except _FoundRandomised as found:
                session.discard_written()
                session.notes_for_all.append(
                    f"AutoAttack's own check found the model randomised where robench's "
                    f"detection did not ({found.warning!r}); evaluated again as a randomised "
                    f"model")
                return session.run(eps_list, stochastic=True, resume=False, force=force)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise UserError(f"out of memory on {device} at --batch-size {cfg.batch_size}; "
                            f"try --batch-size {smaller_batch(cfg.batch_size)} (the records "
                            f"written so far are kept).") from None


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty: others' files were there, or came meanwhile
        pass


def _auto_batch(cfg: EvalConfig, model, x, y, device,
                shard: Shard) -> tuple[EvalConfig, str]:
    """cfg with the batch `--batch-size auto` chose, and the note that says so. Measured on
    the model itself in the search precision (the folded view holds less, never more)."""
    if not shard.whole:
        raise UserError("--batch-size auto may choose another batch on each machine, and "
                        "shards must share their blocks; give --batch-size a number.")
    points = to_float(x[:PROBE_POINTS].to(device))
    search = model if cfg.precision == "fp32" else InPrecision(model, cfg.precision)
    with evaluating(model):
        choice = choose_batch_size(search, points, y[:PROBE_POINTS].to(device), len(y))
    return dataclasses.replace(cfg, batch_size=choice.batch_size), choice.describe()


class _Session:
    """One `evaluate` call's shared parts: the points, the judge, the stand-ins."""

    def __init__(self, target, cfg: EvalConfig, x, y, selection: Selection,
                 device: torch.device, quiet: bool, shard: Shard, *, before: Snapshot):
        self.target, self.cfg, self.x, self.y = target, cfg, x, y
        self.selection, self.device, self.quiet, self.shard = selection, device, quiet, shard
        self.model, self.before = target.model, before
        self.written: list[Path] = []
        self.states: list[tuple[Path, Path]] = []  # (state file, attack states) per protocol
        self.notes_for_all: list[str] = []

    @property
    def blocks(self) -> range:
        """This shard's blocks (of the batch size chosen, where it was `auto`)."""
        return self.shard.blocks(n_blocks(len(self.y), self.cfg.batch_size))

    def check(self) -> None:
        """ModelChanged unless the model is still as the evaluation found it."""
        check_unchanged(self.model, self.before)

    def discard_written(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()

    def discard_states(self) -> None:
        """The state files kept for --resume: progress made on a model that changed."""
        for state_path, inner in self.states:
            _unlink_inner(state_path, inner)

    def _setup(self, stochastic: bool | None) -> tuple[bool, list[str]]:
        """The judge, the clean pass of this shard's blocks and the stand-ins. Randomness and
        the view are decided on the first evaluated points, the same ones in every shard."""
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
                                    batch_size=cfg.batch_size, check_repeat=not stochastic,
                                    blocks=self.blocks, seed=cfg.seed)
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
            force: bool) -> list:
        stochastic, setup_notes = self._setup(stochastic)
        # Planned for every eps first: attacks without EOT are refused before any runs.
        plans = {eps.value: plan_attacks(self.cfg, eps.value, stochastic=stochastic)
                 for eps in eps_list}
        outcomes: list = []
        previous: Record | None = None  # the record at the next smaller eps
        with Counter(quiet=self.quiet) as counter:
            for eps in sorted(eps_list, key=lambda e: e.value):
                outcome = self._one(eps, plans[eps.value], stochastic, setup_notes, previous,
                                    counter, resume=resume, force=force)
                outcomes.append(outcome)
                previous = getattr(outcome, "record", None)
        return outcomes

    def _one(self, eps: Eps, plan: Plan, stochastic: bool, setup_notes: list[str], previous,
             counter, *, resume: bool, force: bool):
        cfg, target, shard = self.cfg, self.target, self.shard
        attacks = plan.attacks
        key, _ = protocol_key(target, cfg, eps, plan, self.selection, stochastic=stochastic)
        evals = target.evals_dir
        path = evals / f"{key}.json"
        if path.is_file() and not force:  # already recorded, by one process or a merge
            return EvalOutcome(records_mod.read(path), path, reused=True)
        part_file = partial_path(evals, key, shard)
        if not shard.whole and part_file.is_file() and not force:
            from_file = Partial.from_dict(json.loads(part_file.read_text()))
            return ShardOutcome(from_file, part_file, eps, reused=True)
        stem = key if shard.whole else f"{key}.{shard.slug}"
        state_path = evals / f".{stem}.state.pt"
        inner = evals / f".{stem}.attack"
        self.states.append((state_path, inner))
        if resume and state_path.is_file():
            state = _load_state(state_path)
            counter.message(f"resuming {stem} after {len(state.steps)} finished attack(s)")
        else:
            _unlink_inner(state_path, inner)
            c = self.clean.state
            state = ProtocolState(c.clean_correct.clone(), c.clean_correct.clone(),
                                  clean_seconds=c.clean_seconds, clean_votes=c.clean_votes,
                                  covered=c.covered)
        stop = StopRequests()

        def save(s: ProtocolState) -> None:
            save_state(state_path, s)
            if stop.requested:  # a scheduler's signal: stop at this block boundary
                raise Preempted(f"evaluation stopped by {stop.name} after a block of "
                                f"{cfg.batch_size} points, its state saved; run the same "
                                f"command with --resume to continue it.", stop.signum)

        try:
            with stop:
                run_attack_sequence(self.x, self.y, attacks, state, searchers=self.searchers,
                                    judge=self.judge, device=self.device,
                                    batch_size=cfg.batch_size, counter=counter,
                                    on_progress=save, blocks=self.blocks, seed=cfg.seed,
                                    state_path=lambda i, b: inner.with_name(
                                        f"{inner.name}{i}.block{b}.state"))
        except Preempted:
            raise
        except KeyboardInterrupt:
            under_way = ""
            if state.progress is not None and len(state.steps) < len(attacks):
                under_way = (f" and {state.progress['blocks_done']} of {len(self.blocks)} "
                             f"blocks of {attacks[len(state.steps)].name}")
            raise Interrupted(f"evaluation interrupted after {len(state.steps)} of "
                              f"{len(attacks)} attacks{under_way}; run the same command with "
                              f"--resume to continue it.") from None
        if not stochastic:
            for found in (Findings.from_dict(f) for f in state.findings if f is not None):
                if found.randomized:
                    _unlink_inner(state_path, inner)
                    raise _FoundRandomised(next(w for w in found.checks
                                                if RANDOMIZED_WARNING in w))
        counts = None
        if cfg.sanity:
            counts = sanity_pass(self.x, self.y, state, norm=cfg.norm, eps=eps.value,
                                 seed=cfg.seed, n_points=cfg.sanity_n, stochastic=stochastic,
                                 searchers=self.searchers, judge=self.judge,
                                 device=self.device, batch_size=cfg.batch_size,
                                 first_pass=attack_pass(len(attacks)), blocks=self.blocks)
        part = Partial(key=key, shard=shard, n_points=len(self.y), stochastic=stochastic,
                       draws=self.judge.draws, state=state, notes=list(setup_notes),
                       sanity=counts, device=str(self.device),
                       peak_memory=peak_memory(self.device))
        self.check()  # before anything is written
        if not shard.whole:
            written = write_partial(evals, part)
            self.written.append(written)
            _unlink_inner(state_path, inner)
            return ShardOutcome(part, written, eps)
        record = record_of(target, cfg, eps, plan, part, self.selection, previous,
                           self.notes_for_all)
        written = records_mod.write(record, evals)
        self.written.append(written)
        _unlink_inner(state_path, inner)
        return EvalOutcome(record, written)


def _unlink_inner(state_path: Path, inner: Path) -> None:
    """The protocol's state file and every attack's state inside a block."""
    unlink_states(state_path, *inner.parent.glob(inner.name + "*.state"))
