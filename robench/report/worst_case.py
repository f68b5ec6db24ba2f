"""A model's robust accuracy over all its records: the per-point worst case, never the best.

Several evaluations of one model at one threat model (AutoAttack, a long PGD, another seed)
each leave some points robust. A point is robust only if every one of them left it robust, so
records that ran on the same points are combined point by point (their per-point verdicts,
`Record.points`). Records on other points, or written before per-point verdicts were kept, are
not combined; of those candidates the lowest robust accuracy is the model's number, and the
table names where it comes from. No candidate wins for being AutoAttack: a lower number from
any attack is a point AutoAttack missed. Whatever wins, the row carries what every record of
the model says about itself (flags, notes, sanity, disputed points): a flag raised on one
point set is a warning about the model, not about that set.

RobustBench's `autoattack_acc` is a different thing: the number of AutoAttack's standard
version alone (the record with the most points, then the lowest), never of 'rand', 'plus' or
'custom'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robench.records import Record, decode_bits, is_standard_autoattack, wilson_interval

COMBINED = " & "  # between the attack sets of records combined point by point


@dataclass
class Estimate:
    clean: float
    robust: float
    n: int
    ci: list[float]
    attacks: str  # "+" within a record's attacks, COMBINED between records
    flags: list[str]
    precision: str
    records: list[tuple[Record, Path]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sanity: str = "not run"
    disputed: int = 0
    autoattack_version: str = ""  # "+"-joined over the model's records, "" without


def step_label(step) -> str:
    """An attack as a table names it: AutoAttack with its version, e.g. autoattack(rand)."""
    if step.name != "autoattack":
        return step.name
    version = (step.params.get("suite") or {}).get("version")
    return f"autoattack({version})" if version else step.name


def attack_label(r: Record) -> str:
    labels = {s.name: step_label(s) for s in r.per_attack}
    return "+".join(labels.get(a, a) for a in r.attacks)


def _point_set(r: Record) -> tuple | None:
    s = r.selection
    if r.points is None or s.mask is None:
        return None
    fingerprint = r.data.fingerprint if r.data is not None else None
    return (r.dataset, fingerprint, s.split, s.n_available, s.mask)


def _combine(items: list[tuple[Record, Path]]) -> Estimate:
    records = [r for r, _ in items]
    n = records[0].selection.n_examples
    if records[0].points is None:  # an older record: its own numbers
        clean_ok, robust_ok = round(records[0].clean_acc * n), round(records[0].robust_acc * n)
    else:
        clean = robust = (1 << n) - 1
        for r in records:
            clean &= decode_bits(r.points.clean)
            robust &= decode_bits(r.points.robust)
        clean_ok, robust_ok = clean.bit_count(), (robust & clean).bit_count()
    attack_sets = list(dict.fromkeys(attack_label(r) for r in records))
    flags = list(dict.fromkeys(f for r in records for f in r.flags))
    precision = "+".join(dict.fromkeys(r.precision for r in records))
    return Estimate(clean=clean_ok / n, robust=robust_ok / n, n=n,
                    ci=wilson_interval(robust_ok, n), attacks=COMBINED.join(attack_sets),
                    flags=flags, precision=precision, records=items)


def worst_case(items: list[tuple[Record, Path]]) -> Estimate:
    """The model's number: the lowest over point sets of the per-point worst case in each."""
    groups: dict[tuple, list[tuple[Record, Path]]] = {}
    for r, path in items:
        key = _point_set(r) or ("record", str(path))
        groups.setdefault(key, []).append((r, path))
    candidates = [_combine(group) for group in groups.values()]
    best = min(candidates, key=lambda e: (e.robust, -e.n, e.attacks))
    return _with_model_facts(best, [r for r, _ in items])


def _with_model_facts(est: Estimate, records: list[Record]) -> Estimate:
    """The winning estimate, with the flags, notes, sanity passes, disputed points and
    AutoAttack versions of every record of the model."""
    def union(values) -> list[str]:
        return list(dict.fromkeys(values))
    sanity = union(f"{r.sanity.extra_broken}/{r.sanity.n_points} more broken"
                   for r in records if r.sanity is not None)
    versions = union((s.params.get("suite") or {}).get("version") or "unknown"
                     for r in records for s in r.per_attack if s.name == "autoattack")
    est.flags = union(f for r in records for f in r.flags)
    est.notes = union(n for r in records for n in r.notes)
    est.sanity = "; ".join(sanity) or "not run"
    est.disputed = sum(s.disputed for r in records for s in r.per_attack)
    est.autoattack_version = "+".join(versions)
    return est


def autoattack_accuracy(items: list[tuple[Record, Path]]) -> float | None:
    """AutoAttack's standard version alone: the record with the most points, then lowest."""
    standard = [r for r, _ in items if any(map(is_standard_autoattack, r.per_attack))]
    if not standard:
        return None
    best = min(standard, key=lambda r: (-r.selection.n_examples, _aa_value(r)))
    return _aa_value(best)


def _aa_value(r: Record) -> float:
    step = next(s for s in r.per_attack if s.name == "autoattack")
    return step.robust_acc_after
