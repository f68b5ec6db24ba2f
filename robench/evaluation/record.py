"""The result record of one Lp evaluation: exact counts, per-point verdicts, flags, notes."""

from __future__ import annotations

import dataclasses
from typing import Any

import robench
from robench.config import EvalConfig
from robench.cost import Cost
from robench.evaluation import flags as flags_mod
from robench.evaluation.identity import data_identity, evaluated_source, versions
from robench.evaluation.plan import Plan
from robench.evaluation.protocol import ProtocolState
from robench.evaluation.sanity import Sanity
from robench.records import (
    SCHEMA_VERSION,
    AttackResult,
    Points,
    Record,
    Selection,
    Verdict,
    encode_bits,
    is_standard_autoattack,
    record_key,
    timestamp,
    wilson_interval,
)
from robench.threat import Eps


def protocol_key(target, cfg: EvalConfig, eps: Eps, plan: Plan, selection: Selection, *,
                 stochastic: bool) -> tuple[str, dict[str, Any]]:
    """The record's key and the protocol it hashes: every setting that changes the numbers.

    `blocks` is the block size (--batch-size): which points share a batch and a seed
    (robench.evaluation.blocks), so it is part of what defines the result. `model` carries
    the hash of the parameters and buffers evaluated, `data` the test split by content with
    its image size and normalisation, and `versions` robench's, torch's and AutoAttack's
    (robench.evaluation.identity): a stored record is reused only when all of them match.
    """
    attacks = plan.attacks
    draws = cfg.verdict_draws if stochastic else 1
    protocol = {"attacks": [a.describe() for a in attacks], "norm": cfg.norm,
                "batch_size": [getattr(a, "batch_size", None) for a in attacks],
                "eps": eps.value, "selection": dataclasses.asdict(selection),
                "precision": cfg.precision,
                "model": dataclasses.asdict(evaluated_source(target)),
                "data": dataclasses.asdict(data_identity(target)), "versions": versions(),
                "verdict": {"rule": "every-draw" if stochastic else "one-pass", "draws": draws},
                "sanity": {"n": cfg.sanity_n} if cfg.sanity else None,
                "blocks": cfg.batch_size}
    key = record_key([a.name for a in attacks], cfg.norm, eps.slug, selection.n_examples,
                     protocol)
    return key, protocol


def make_record(target, cfg: EvalConfig, key: str, eps: Eps, plan: Plan,
                state: ProtocolState, selection: Selection, draws: int, *,
                stochastic: bool, notes: list[str], previous: Record | None,
                sanity: Sanity | None, device,
                peak_memory: tuple[int, str] | None = None) -> Record:
    n = len(state.robust)
    steps = list(state.steps)
    found_flags, check_notes = flags_mod.attack_flags(steps, plan.attacks, n, stochastic,
                                                      findings=state.findings)
    extra_flags, sanity_notes, sanity_result = [], [], None
    if sanity is not None:
        steps.append(sanity.step)
        extra_flags, sanity_notes, sanity_result = sanity.flags, sanity.notes, sanity.result
    clean_ok, robust_ok = int(state.clean_correct.sum()), int(state.robust.sum())
    robust_acc = robust_ok / n
    flags = [*found_flags, *plan.flags, *extra_flags,
             *flags_mod.near_clean(clean_ok, robust_ok, n),
             *flags_mod.curve(robust_acc, previous.robust_acc if previous else None,
                              previous.eps_text if previous else None)]
    # RobustBench's autoattack_acc: only from AutoAttack's standard version, as the cascade
    # stood after it.
    autoattack = next((s.robust_acc_after for s in state.steps if is_standard_autoattack(s)),
                      None)
    mean_clean = state.clean_votes / (n * draws) if stochastic and n else None
    seconds = round(state.clean_seconds + sum(s.seconds for s in steps), 3)
    cost = None
    if peak_memory is not None and peak_memory[1]:
        cost = Cost(seconds=seconds, items_per_s=round(n / seconds, 3) if seconds else 0.0,
                    peak_memory_bytes=int(peak_memory[0]), peak_memory=peak_memory[1])
    return Record(
        schema_version=SCHEMA_VERSION, robench_version=robench.__version__, key=key,
        created=timestamp(), model=evaluated_source(target), dataset=target.info.name,
        norm=cfg.norm,
        eps=eps.value, eps_text=eps.text, attacks=[a.name for a in plan.attacks],
        selection=selection, clean_acc=clean_ok / n, robust_acc=robust_acc,
        robust_ci95=wilson_interval(robust_ok, n), clean_ci95=wilson_interval(clean_ok, n),
        per_attack=[AttackResult(**dataclasses.asdict(s)) for s in steps],
        flags=list(dict.fromkeys(flags)),
        notes=list(dict.fromkeys([*notes, *plan.notes, *check_notes, *sanity_notes])),
        seconds=seconds,
        device=str(device), precision=cfg.precision, seed=cfg.seed,
        architecture=target.source.arch, autoattack_acc=autoattack,
        points=Points(clean=encode_bits(state.clean_correct.tolist()),
                      robust=encode_bits(state.robust.tolist())),
        verdict=Verdict(rule="every-draw" if stochastic else "one-pass", draws=draws,
                        mean_clean_acc=mean_clean),
        sanity=sanity_result, cost=cost, batch_size=cfg.batch_size,
        published=getattr(target, "published", None), versions=versions(),
        data=data_identity(target),
    )
