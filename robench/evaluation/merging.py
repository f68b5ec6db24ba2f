"""Records from shards: `robench eval --merge` over N shard files, and a torchrun evaluation
over its ranks. Both make the record from the shards' parts merged (robench.evaluation.shards)
with the same function one process uses, so the record holds the same verdicts.
"""

from __future__ import annotations

from pathlib import Path

from robench import distributed
from robench import records as records_mod
from robench.config import EvalConfig
from robench.errors import UserError
from robench.evaluation.blocks import Shard
from robench.evaluation.plan import Plan, plan_attacks
from robench.evaluation.record import protocol_key
from robench.evaluation.runner import (
    EvalOutcome,
    ShardOutcome,
    budgets,
    evaluate,
    record_of,
    selection_of,
)
from robench.evaluation.shards import Partial, complete_set, merge, read_partials
from robench.records import Record, Selection
from robench.threat import Eps


def _merged_note(count: int) -> str:
    return (f"evaluated in {count} shards and merged: every block of points met the same "
            f"batches and seeds as in one process (robench.evaluation.blocks)")


def _record(target, cfg: EvalConfig, eps: Eps, plan: Plan, parts: list[Partial],
            selection: Selection, previous: Record | None) -> EvalOutcome:
    merged = merge(parts)
    record = record_of(target, cfg, eps, plan, merged, selection, previous,
                       [_merged_note(len(parts))])
    return EvalOutcome(record, records_mod.write(record, target.evals_dir))


def _plans(cfg: EvalConfig, eps: Eps) -> list[tuple[bool, Plan]]:
    """The plans a shard may have run: for a deterministic, then a randomised model."""
    out = [(False, plan_attacks(cfg, eps.value, stochastic=False))]
    try:
        out.append((True, plan_attacks(cfg, eps.value, stochastic=True)))
    except UserError:  # attacks without EOT: no shard ran them on a randomised model
        pass
    return out


def merge_shards(target, cfg: EvalConfig, *, command: str = "robench eval") -> list[EvalOutcome]:
    """One record per eps from the shard files in the target's evals folder; each record
    written, its shard files removed."""
    cfg.validate()
    if cfg.batch_size == "auto":
        raise UserError("--merge needs the --batch-size number the shards were evaluated "
                        "with (their blocks), not auto.")
    _, selection = selection_of(target, cfg)
    evals = target.evals_dir
    outcomes: list[EvalOutcome] = []
    previous: Record | None = None
    for eps in sorted(budgets(target, cfg), key=lambda e: e.value):
        keyed = [(protocol_key(target, cfg, eps, plan, selection, stochastic=s)[0], plan)
                 for s, plan in _plans(cfg, eps)]
        done = next(((k, p) for k, p in keyed if (evals / f"{k}.json").is_file()), None)
        if done is not None:
            path = evals / f"{done[0]}.json"
            outcome = EvalOutcome(records_mod.read(path), path, reused=True)
        else:
            key, plan = next(((k, p) for k, p in keyed if read_partials(evals, k)), keyed[0])
            items = complete_set(evals, key, command)
            outcome = _record(target, cfg, eps, plan, [p for _, p in items], selection,
                              previous)
            for path, _ in items:
                path.unlink(missing_ok=True)
        outcomes.append(outcome)
        previous = outcome.record
    return outcomes


def evaluate_ranks(target, cfg: EvalConfig, *, quiet: bool = False, resume: bool = False,
                   force: bool = False) -> list[EvalOutcome]:
    """The evaluation spread over the processes of a torchrun launch: rank r evaluates shard
    r/N, rank 0 gathers the parts and writes the records (other ranks return [])."""
    world = distributed.world_from_env()
    if not distributed.active():
        return evaluate(target, cfg, quiet=quiet, resume=resume, force=force)
    shard = Shard(world.rank, world.size)
    outcomes = evaluate(target, cfg, quiet=quiet or not world.main, resume=resume,
                        force=force, shard=shard)
    mine = [o.partial.to_dict() if isinstance(o, ShardOutcome) else None for o in outcomes]
    gathered = distributed.gather(mine)
    result: list[EvalOutcome] = []
    if world.main:
        _, selection = selection_of(target, cfg)
        previous: Record | None = None
        for k, outcome in enumerate(outcomes):
            if isinstance(outcome, EvalOutcome):  # recorded before: nothing was run
                result.append(outcome)
            else:
                if any(g[k] is None for g in gathered):
                    raise UserError("another process found this evaluation already recorded; "
                                    "every process of a torchrun evaluation must see the same "
                                    "run directory (a shared file system).")
                parts = [Partial.from_dict(g[k]) for g in gathered]
                plan = plan_attacks(cfg, outcome.eps.value, stochastic=parts[0].stochastic)
                result.append(_record(target, cfg, outcome.eps, plan, parts, selection,
                                      previous))
            previous = result[-1].record
    distributed.barrier()  # the record is written before any shard file goes
    for outcome in outcomes:
        if isinstance(outcome, ShardOutcome):
            Path(outcome.path).unlink(missing_ok=True)
    return result
