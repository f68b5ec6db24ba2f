"""A shard's part of an evaluation, written to a file, and N such parts merged into one.

`robench eval --shard i/N` evaluates the blocks of shard i (robench.evaluation.blocks) and
writes `evals/<key>.shard-i-of-N.partial`: per-point verdicts on its points and the counts of
every attack. `--merge` (and a torchrun evaluation, over its ranks) adds the N parts up to
the state one process would have reached, from which the record is made as always. A merge
is refused, with a sentence, when a part is missing (naming the file expected), was made for
another number of shards, by another robench or torch or on another kind of device (naming
the file: another torch's kernels are other numbers, so the parts would be of two
evaluations), or when the parts disagree on what the model is (randomised or not).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import robench
from robench.atomic import atomic_write_json
from robench.attacks.autoattack import Findings
from robench.errors import UserError
from robench.evaluation.blocks import Shard
from robench.evaluation.protocol import ProtocolState, StepResult
from robench.evaluation.sanity import add_counts
from robench.records import bits_to_list, encode_bits

SUFFIX = ".partial"
FORMAT = 1


@dataclass
class Partial:
    """What one shard found: enough to merge, nothing that needs the model."""

    key: str
    shard: Shard
    n_points: int
    stochastic: bool
    draws: int
    state: ProtocolState
    notes: list[str] = field(default_factory=list)
    sanity: dict[str, Any] | None = None
    device: str = "cpu"
    peak_memory: tuple[int, str] = (0, "")  # bytes and kind (robench.cost), the largest shard's
    # What made it ({"robench": ..., "torch": ...}); None in parts older robench wrote.
    versions: dict[str, str] | None = field(default_factory=lambda: made_with())

    def to_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "format": FORMAT, "key": self.key, "shard": [self.shard.index, self.shard.count],
            "n_points": self.n_points, "stochastic": self.stochastic, "draws": self.draws,
            "notes": self.notes, "sanity": self.sanity, "device": self.device,
            "peak_memory": list(self.peak_memory), "versions": self.versions,
            "points": {"covered": encode_bits(s.covered_mask().tolist()),
                       "clean": encode_bits(s.clean_correct.tolist()),
                       "robust": encode_bits(s.robust.tolist())},
            "clean_seconds": s.clean_seconds, "clean_votes": s.clean_votes,
            "steps": [asdict(step) for step in s.steps], "robust_after": s.robust_after,
            "findings": s.findings,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Partial:
        n = d["n_points"]

        def bits(name: str) -> torch.Tensor:
            return torch.tensor(bits_to_list(d["points"][name], n), dtype=torch.bool)

        state = ProtocolState(clean_correct=bits("clean"), robust=bits("robust"),
                              steps=[StepResult(**s) for s in d["steps"]],
                              clean_seconds=d["clean_seconds"], clean_votes=d["clean_votes"],
                              covered=bits("covered"), robust_after=list(d["robust_after"]),
                              findings=list(d["findings"]))
        return cls(key=d["key"], shard=Shard(*d["shard"]), n_points=n,
                   stochastic=d["stochastic"], draws=d["draws"], state=state,
                   notes=list(d["notes"]), sanity=d["sanity"], device=d["device"],
                   peak_memory=tuple(d.get("peak_memory", (0, ""))),
                   versions=d.get("versions"))


def made_with() -> dict[str, str]:
    """The versions a part records: a merge refuses parts of different ones."""
    return {"robench": robench.__version__, "torch": torch.__version__}


def device_kind(device: str) -> str:
    return device.split(":")[0]


def _made(part: Partial, what: str) -> str:
    """How `part` was made, in `what` (robench, torch, device): words for a refusal."""
    if what == "device":
        return f"on a {device_kind(part.device)} device"
    version = (part.versions or {}).get(what)
    return f"with {what} {version}" if version else f"with an unrecorded {what} version"


def refuse_mixed(named: list[tuple[str, Partial]]) -> None:
    """A UserError naming the first part made by another robench, torch or kind of device
    than the first part (`named`: each part with the words that name it, its file)."""
    (first_name, first), *rest = named
    for what in ("robench", "torch", "device"):
        for name, part in rest:
            if _made(part, what) != _made(first, what):
                raise UserError(f"{name} was made {_made(part, what)}, but {first_name} "
                                f"{_made(first, what)}; evaluate every shard with the same "
                                f"robench, torch and kind of device (that shard again with "
                                f"--force), then merge.")


def partial_path(evals_dir: Path, key: str, shard: Shard) -> Path:
    return evals_dir / f"{key}.{shard.slug}{SUFFIX}"


def write_partial(evals_dir: Path, partial: Partial) -> Path:
    path = partial_path(evals_dir, partial.key, partial.shard)
    atomic_write_json(path, partial.to_dict())
    return path


def read_partials(evals_dir: Path, key: str) -> list[tuple[Path, Partial]]:
    found = []
    for path in sorted(evals_dir.glob(f"{key}.shard-*{SUFFIX}")):
        try:
            data = json.loads(path.read_text())
            found.append((path, Partial.from_dict(data)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"shard file {str(path)!r} cannot be read ({exc}); evaluate that "
                            f"shard again with --force.") from None
    return found


def complete_set(evals_dir: Path, key: str, command: str) -> list[tuple[Path, Partial]]:
    """Every shard of `key`, checked to be one whole set; else a sentence saying what is not."""
    found = read_partials(evals_dir, key)
    if not found:
        raise UserError(f"no shard of this evaluation is in {str(evals_dir)!r} (looked for "
                        f"{key}.shard-*{SUFFIX}); run it first with --shard i/N.")
    counts = sorted({p.shard.count for _, p in found})
    if len(counts) > 1:
        raise UserError(f"the shards of {key} in {str(evals_dir)!r} were made for different "
                        f"numbers of shards ({', '.join(map(str, counts))}); remove the files "
                        f"of the split you do not want and merge again.")
    count = counts[0]
    have = {p.shard.index for _, p in found}
    missing = [Shard(i, count) for i in range(count) if i not in have]
    if missing:
        labels = _and([s.label for s in missing])
        files = _and([repr(str(partial_path(evals_dir, key, s))) for s in missing])
        one = len(missing) == 1
        raise UserError(f"shard{'' if one else 's'} {labels} {'is' if one else 'are'} missing: "
                        f"{files} {'was' if one else 'were'} expected; run {command} --shard "
                        f"{missing[0].label}, then merge again.")
    found.sort(key=lambda item: item[1].shard.index)
    refuse_mixed([(f"shard file {str(path)!r}", part) for path, part in found])
    return found


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def merge(parts: list[Partial]) -> Partial:
    """The N shards' parts as the part of one process (per-point verdicts, summed counts)."""
    first = parts[0]
    refuse_mixed([(f"shard {p.shard.label}", p) for p in parts])
    for p in parts[1:]:
        if p.stochastic != first.stochastic:
            randomised = next(q for q in parts if q.stochastic)
            raise UserError(f"shard {randomised.shard.label} found the model randomised, but "
                            f"other shards evaluated it as deterministic; evaluate it in one "
                            f"process (without --shard), which decides once for every point.")
        if p.n_points != first.n_points or len(p.state.steps) != len(first.state.steps):
            raise UserError(f"shard {p.shard.label} of {first.key} does not fit shard "
                            f"{first.shard.label} (other points or attacks); evaluate it again "
                            f"with --force.")
    n = first.n_points
    covered = torch.zeros(n, dtype=torch.bool)
    clean = torch.zeros(n, dtype=torch.bool)
    robust = torch.zeros(n, dtype=torch.bool)
    for p in parts:
        mask = p.state.covered_mask()
        if bool((covered & mask).any()):
            raise UserError(f"shard {p.shard.label} of {first.key} overlaps another shard; "
                            f"evaluate it again with --force.")
        covered |= mask
        clean |= p.state.clean_correct & mask
        robust |= p.state.robust & mask
    if not bool(covered.all()):
        raise UserError(f"the shards of {first.key} leave {int((~covered).sum())} points "
                        f"unevaluated; evaluate the shards again with --force.")
    steps, findings = [], []
    for i, step in enumerate(first.state.steps):
        same = [p.state.steps[i] for p in parts]
        robust_after = sum(p.state.robust_after[i] for p in parts)
        steps.append(StepResult(
            name=step.name, params=step.params, robust_acc_after=robust_after / n,
            broken=sum(s.broken for s in same), attacked=sum(s.attacked for s in same),
            seconds=sum(s.seconds for s in same), precision=step.precision,
            searched_on=step.searched_on, disputed=sum(s.disputed for s in same)))
        findings.append(_merge_findings([p.state.findings[i] for p in parts]))
    state = ProtocolState(
        clean_correct=clean, robust=robust, steps=steps,
        clean_seconds=sum(p.state.clean_seconds for p in parts),
        clean_votes=sum(p.state.clean_votes for p in parts), covered=covered,
        robust_after=[sum(p.state.robust_after[i] for p in parts) for i in range(len(steps))],
        findings=findings)
    sanity = None
    if first.sanity is not None:
        sanity = first.sanity
        for p in parts[1:]:
            sanity = add_counts(sanity, p.sanity)
    notes = list(dict.fromkeys(note for p in parts for note in p.notes))
    return Partial(key=first.key, shard=Shard(), n_points=n, stochastic=first.stochastic,
                   draws=first.draws, state=state, notes=notes, sanity=sanity,
                   device=first.device, peak_memory=max(p.peak_memory for p in parts),
                   versions=first.versions)


def _merge_findings(items: list[dict | None]) -> dict | None:
    total: Findings | None = None
    for item in items:
        if item is not None:
            found = Findings.from_dict(item)
            total = found if total is None else total.plus(found)
    return None if total is None else total.to_dict()
