"""Gathering result records for a report: which files, which are valid, which is newest.

A report never re-runs anything and never reads logs: it gathers the JSON records that
`robench eval` wrote (runs/<run-id>/evals/<key>.json), refuses the ones that do not fit the
schema (saying which and why, instead of stopping or half-reading them), and collapses only
exact repeats (robench.report.repeats): every other evaluation of a model enters its worst
case. Like the whole package, it never imports torch, so a report starts in a second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from robench.errors import UserError
from robench.records import EVALS, READABLE_VERSIONS, Record, readable_versions, validate
from robench.report.repeats import REPEAT_DISAGREES, exact_id, protocol_id

RUN_CONFIG, RUN_ENV, FINAL_WEIGHTS = "config.yaml", "env.json", "model.safetensors"  # robench.runs


@dataclass
class LoadedRecords:
    records: list[tuple[Record, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # with the reason
    # (dropped, kept): an exact repeat of the kept record, older than it
    replaced: list[tuple[Path, Path]] = field(default_factory=list)
    disagreeing: list[Path] = field(default_factory=list)  # repeats whose results differ

    def summary(self) -> str:
        """The one line every report starts with, so nothing is dropped silently."""
        read = len(self.records) + len(self.replaced)
        repeats = len(self.replaced)
        disagree = (f", {len(self.disagreeing)} repeats that disagree kept and flagged"
                    if self.disagreeing else "")
        return (f"{read} records read, {len(self.skipped)} skipped, {repeats} identical "
                f"repeat{'' if repeats == 1 else 's'} collapsed{disagree}; "
                f"{len(self.records)} used.")

    def warnings(self) -> list[str]:
        """One line per skipped or collapsed file, naming it (for stderr and the report)."""
        return ([f"skipped {p}: {why}" for p, why in self.skipped]
                + [f"collapsed {old} into its identical, newer repeat {new}"
                   for old, new in self.replaced]
                + [f"kept {p}: a repeat of another record's protocol with other results "
                   f"({REPEAT_DISAGREES})" for p in self.disagreeing])


def record_files(paths: Sequence[str | Path]) -> list[Path]:
    """Record files named directly, or every *.json in an `evals` folder below a directory.

    Only `evals` folders are searched so a run's env.json (or a report's own model_info
    JSON) is never taken for a broken record; a directory with no `evals` folder and no
    config.yaml (an external model's --out folder) gives its own *.json files.
    """
    found: dict[Path, None] = {}
    for item in (Path(p).resolve() for p in paths):  # resolved once, not per file
        if item.is_dir():
            files = [*item.glob("*.json")] if item.name == EVALS else [*item.rglob("*.json")]
            files = [f for f in files if f.parent.name == EVALS] or (
                [] if (item / RUN_CONFIG).exists() else [*item.glob("*.json")])
        elif item.is_file():
            files = [item]
        else:
            raise UserError(f"{str(item)!r} does not exist; give record files, run "
                            f"directories or a directory of runs.")
        for f in sorted(files):
            if not f.name.startswith("."):  # atomic temporaries and attack state files
                found.setdefault(f, None)
    return list(found)


def read(path: Path) -> Record:
    """A valid record, or ValueError saying in a few words why this file is not one."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON, truncated or corrupt ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ValueError("not a result record (no schema_version)")
    if data["schema_version"] not in READABLE_VERSIONS:
        readable = readable_versions()
        raise ValueError(f"schema version {data['schema_version']}, this robench reads "
                         f"{readable}")
    try:
        return validate(data, source=path.name)
    except (UserError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"does not fit the record schema ({exc})") from None


def model_id(r: Record) -> tuple:
    """Which model was evaluated: a run (and its checkpoint), or an external file's weights."""
    m = r.model
    if m.kind == "run":
        return ("run", m.run_id, m.checkpoint or FINAL_WEIGHTS)
    if m.kind == "zoo":
        return ("zoo", m.zoo, m.zoo_dataset, m.zoo_threat, m.arch, m.weights_sha256)
    return ("external", m.file, m.factory, m.weights_sha256)


def created(item: tuple[Record, Path]) -> tuple[float, str]:
    text = item[0].created
    for parse in (lambda t: datetime.strptime(t, "%Y-%m-%dT%H:%M:%S%z"), datetime.fromisoformat):
        try:
            return parse(text).timestamp(), str(item[1])
        except ValueError:
            pass
    return -math.inf, str(item[1])


def load_records(paths: Sequence[str | Path]) -> LoadedRecords:
    """Every valid record under `paths`; bad files are listed in `skipped`, not fatal."""
    shown = ", ".join(map(str, paths)) or "(no paths given)"
    files = record_files(paths)
    loaded, newest = LoadedRecords(), {}
    for path in files:
        try:
            item = (read(path), path)
        except ValueError as exc:
            loaded.skipped.append((path, str(exc)))
            continue
        key = exact_id(item[0])
        if key in newest:  # the same evaluation and the same results: one is enough
            old, item = sorted([newest[key], item], key=created)
            loaded.replaced.append((old[1], item[1]))
        newest[key] = item
    loaded.records = _flag_disagreeing(list(newest.values()), loaded.disagreeing)
    if not loaded.records:
        why = f" ({len(files)} files skipped, e.g. {files[0]}: {loaded.skipped[0][1]})" \
            if files else ""
        raise UserError(f"no result records found in {shown}{why}; nothing to report; "
                        f"run robench eval first.")
    return loaded


def _flag_disagreeing(items: list[tuple[Record, Path]], paths: list[Path]
                      ) -> list[tuple[Record, Path]]:
    """Records sharing a protocol with other results carry REPEAT_DISAGREES (in memory)."""
    ids = [protocol_id(r) for r, _ in items]
    protocols = Counter(ids)
    out = []
    for (r, path), pid in zip(items, ids, strict=True):
        if protocols[pid] > 1:
            paths.append(path)
            if REPEAT_DISAGREES not in r.flags:
                r = dataclasses.replace(r, flags=[*r.flags, REPEAT_DISAGREES])
        out.append((r, path))
    return out


def model_names(items: list[tuple[Record, Path]]) -> dict[tuple, str]:
    """Run ids (with @best for the best checkpoint), external-<name>, robustbench:<name>;
    clashes get a hash."""
    base = {}
    for r, _ in items:
        mid = model_id(r)
        if r.model.kind == "run":
            ckpt = Path(mid[2]).stem
            base[mid] = r.model.run_id + ("" if mid[2] == FINAL_WEIGHTS else f"@{ckpt}")
        elif r.model.kind == "zoo":
            base[mid] = f"{r.model.zoo}:{r.model.arch}"
        else:
            base[mid] = f"external-{r.model.arch or Path(r.model.file or 'model').stem}"
    counts = Counter(base.values())
    return {mid: name if counts[name] == 1 else f"{name}-{digest(mid)}"
            for mid, name in base.items()}


def digest(obj: Any, n: int = 8) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]
