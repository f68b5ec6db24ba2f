"""The result record: one JSON object per evaluation, the only source of every leaderboard row.

A record is checked against one typed schema when it is written and when it is read, so
numbers are numbers (never "8/255" strings where a float belongs) and a record that does not
fit the schema is refused rather than half-read. It carries every protocol parameter needed
to repeat the evaluation, and RobustBench's model_info fields (clean_acc, autoattack_acc,
eps, dataset, architecture, additional_data) so it can be compared with theirs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from robench.atomic import atomic_write_json
from robench.config import build
from robench.errors import UserError

# Version 2 added `corruptions` (the common-corruption threat model); version 1 records are
# version 2 records without it and are read as they are.
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
EVALS = "evals"
CORRUPTIONS = "corruptions"  # the `norm` of a common-corruption record


@dataclass
class Selection:
    """Which test points were evaluated and how they were chosen."""

    n_examples: int
    method: str  # "first" (dataset order) or "stratified" (seeded, per class)
    seed: int
    split: str = "test"
    n_available: int = 0


@dataclass
class AttackResult:
    """One attack of the sequence, run on the points every earlier attack left robust."""

    name: str
    params: dict[str, Any]
    robust_acc_after: float  # robust accuracy of the whole set after this attack
    broken: int  # points this attack broke that were still robust before it
    attacked: int  # points it was run on
    seconds: float


@dataclass
class CorruptionResult:
    """Accuracy under common corruptions (Hendrycks & Dietterich 2019), per setting.

    In such a record `robust_acc` is the mean accuracy over every corruption and severity
    (RobustBench's corruptions accuracy); it may exceed clean accuracy, which Lp records
    never do. Errors relative to a reference model follow the paper: CE_c = sum_s E_{c,s} /
    sum_s E^ref_{c,s}, relative CE_c = sum_s (E_{c,s} - E_clean) / sum_s (E^ref_{c,s} -
    E^ref_clean), and mCE / relative mCE their means over corruptions.
    """

    source: str  # "generated" (robench's implementation) or "premade:<folder>"
    corruptions: list[str]
    severities: list[int]
    accuracy: dict[str, list[float]]  # per corruption, one value per severity
    mean_acc: float
    reference: str | None = None  # the reference model's run id or label
    reference_clean_acc: float | None = None
    reference_accuracy: dict[str, list[float]] | None = None
    ce: dict[str, float | None] | None = None
    mce: float | None = None
    relative_ce: dict[str, float | None] | None = None
    relative_mce: float | None = None


@dataclass
class ModelSource:
    kind: str  # "run" or "external"
    run_id: str | None = None
    checkpoint: str | None = None
    weights_sha256: str | None = None
    file: str | None = None
    factory: str | None = None
    arch: str | None = None
    defense: str | None = None


@dataclass
class Record:
    schema_version: int
    robench_version: str
    key: str
    created: str
    model: ModelSource
    dataset: str
    norm: str
    eps: float
    eps_text: str
    attacks: list[str]
    selection: Selection
    clean_acc: float
    robust_acc: float
    robust_ci95: list[float]
    clean_ci95: list[float]
    per_attack: list[AttackResult]
    flags: list[str]
    notes: list[str]
    seconds: float
    device: str
    precision: str
    seed: int
    # RobustBench model_info compatibility
    architecture: str | None = None
    autoattack_acc: float | None = None
    additional_data: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    corruptions: CorruptionResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> list[float]:
    """95 % Wilson score interval for a proportion: honest near 0 and 1, unlike +-1.96 SE."""
    if n <= 0:
        return [0.0, 1.0]
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-").lower()


def record_key(attacks: list[str], norm: str, eps_slug: str, n_examples: int,
               protocol: dict[str, Any]) -> str:
    """`<attack+attack>-<norm>-<eps>-n<N>-<hash of the whole protocol>`."""
    digest = hashlib.sha256(json.dumps(protocol, sort_keys=True, default=str).encode())
    return "-".join([_slug("+".join(attacks)), norm.lower(), _slug(eps_slug),
                     f"n{n_examples}", digest.hexdigest()[:8]])


def validate(data: dict[str, Any], source: str = "record") -> Record:
    """A typed Record from a dict; refuses any other schema version or shape."""
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise UserError(f"{source} has schema version {version!r}; this robench reads "
                        f"versions {readable}.")
    for name in ("eps", "clean_acc", "robust_acc"):  # numbers, never text such as "8/255"
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{source}: '{name}' must be a number, got {value!r}.")
    record = build(Record, data)
    for name in ("clean_acc", "robust_acc"):
        value = getattr(record, name)
        if not 0 <= value <= 1:
            raise UserError(f"{source}: {name} {value} is not a fraction in [0, 1].")
    if (record.norm == CORRUPTIONS) != (record.corruptions is not None):
        raise UserError(f"{source}: a '{CORRUPTIONS}' record needs its per-corruption "
                        f"results, and only such a record has them.")
    if record.norm != CORRUPTIONS and record.robust_acc > record.clean_acc + 1e-12:
        raise UserError(f"{source}: robust accuracy {record.robust_acc} exceeds clean "
                        f"accuracy {record.clean_acc}.")
    return record


def write(record: Record, directory: Path) -> Path:
    """Validate, then write `<directory>/<key>.json` atomically."""
    validate(json.loads(json.dumps(record.to_dict())), source=f"record {record.key}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{record.key}.json"
    atomic_write_json(path, record.to_dict())
    return path


def read(path: Path) -> Record:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read record {str(path)!r} ({exc}).") from None
    return validate(data, source=f"record {str(path)!r}")
