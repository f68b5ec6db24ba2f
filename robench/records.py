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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from robench.atomic import atomic_write_json
from robench.config import build
from robench.cost import Cost
from robench.errors import UserError

# Version 2 added `corruptions` (the common-corruption threat model). Version 3 added what a
# per-point worst case over records needs (`points`: which points, and each one's verdict),
# the verdict rule, the sanity pass, each attack's search precision and stand-in, and a hash
# of a user model's source files. Version 4 added `cost` (wall seconds, points per second,
# peak memory). Version 5 added what decides whether a stored record may be reused: the
# versions that computed it, the data's identity (a content fingerprint, image size and
# normalisation) and a hash of the parameters and buffers actually evaluated. Older records
# are read as they are, without those.
SCHEMA_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)
EVALS = "evals"
CORRUPTIONS = "corruptions"  # the `norm` of a common-corruption record


@dataclass
class Selection:
    """Which test points were evaluated and how they were chosen.

    `seed` is the selection seed, its own (not the attacks' seed), so evaluations with
    different attack seeds run on the same points and can be combined point by point.
    """

    n_examples: int
    method: str  # "first" (dataset order) or "stratified" (seeded, per class)
    seed: int
    split: str = "test"
    n_available: int = 0
    mask: str | None = None  # bits over the split: which points (see encode_bits)


@dataclass
class AttackResult:
    """One attack of the sequence, run on the points every earlier attack left robust."""

    name: str
    params: dict[str, Any]
    robust_acc_after: float  # robust accuracy of the whole set after this attack
    broken: int  # points this attack broke that were still robust before it
    attacked: int  # points it was run on
    seconds: float
    precision: str = "fp32"  # the arithmetic its search ran in (verdicts are always fp32)
    searched_on: str = "model"  # "model", or "view" (BatchNorm folded, checked equal)
    disputed: int = 0  # points a stand-in called broken, the judge not: attacked again


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
    # A randomised model: each image's verdict is the mean over this many passes.
    draws: int = 1


@dataclass
class DataIdentity:
    """Which data a record measured, by content: the same images at another path are the
    same dataset, and a changed file or preprocessing is a different one."""

    fingerprint: str  # sha256 over the evaluated split's arrays (dtype, shape and bytes)
    image_size: int
    mean: list[float]
    std: list[float]


@dataclass
class Published:
    """A zoo model's accuracies as its leaderboard publishes them (RobustBench's model_info),
    shown beside robench's own; never used to compute anything."""

    clean_acc: float
    robust_acc: float | None = None
    metric: str = "autoattack"  # what robust_acc is: autoattack, or corruptions
    eps: str = ""
    source: str = ""


@dataclass
class ModelSource:
    kind: str  # "run", "external" (a user's file) or "zoo" (a model zoo's entry)
    run_id: str | None = None
    checkpoint: str | None = None
    weights_sha256: str | None = None
    file: str | None = None
    factory: str | None = None
    arch: str | None = None
    defense: str | None = None
    # A user model's code: sha256 over its file and the local modules it imported, so an
    # edited model is evaluated again instead of showing a stale record.
    file_sha256: str | None = None
    # sha256 over every parameter and buffer of the module evaluated (name, dtype, shape,
    # bytes): what identifies the model whatever its source says.
    state_sha256: str | None = None
    zoo: str | None = None  # "robustbench" for kind "zoo"
    zoo_dataset: str | None = None
    zoo_threat: str | None = None


@dataclass
class Verdict:
    """How a point was judged: `one-pass` (a deterministic model), or `every-draw` (a
    randomised one): correct only if each of `draws` fresh passes is correct, and broken as
    well wherever an attack searching on the real model in fp32 saw a draw misclassify it."""

    rule: str = "one-pass"
    draws: int = 1
    precision: str = "fp32"
    # Randomised models: the mean accuracy of single draws on the clean points (what a
    # paper's clean accuracy usually is), next to the per-point worst case `clean_acc`.
    mean_clean_acc: float | None = None


@dataclass
class Points:
    """Each evaluated point's clean and robust verdict, in the order of the selected indices
    (encode_bits): what lets a report take the per-point worst case over records."""

    clean: str
    robust: str


@dataclass
class SanityResult:
    """The opt-in `--sanity` pass on a subset of the points."""

    n_points: int
    attack: dict[str, Any]  # the stronger PGD, with every parameter
    extra_broken: int  # robust under the protocol, broken by the stronger PGD (b)
    only_protocol: int  # broken by the protocol, not by the stronger PGD (c)
    p_value: float  # one-sided exact sign test of b against c (McNemar)
    large_eps: float
    large_eps_attack: dict[str, Any]
    large_eps_robust: int  # points of the subset still correct at the large eps
    large_eps_attacked: int
    # b / n_points: the robust accuracy the protocol alone over-reported on the subset, and
    # its 95 % Wilson interval. None in records written before they were kept.
    implied_drop: float | None = None
    implied_drop_ci95: list[float] | None = None


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
    points: Points | None = None
    verdict: Verdict | None = None
    sanity: SanityResult | None = None
    cost: Cost | None = None  # what the evaluation took (robench.cost)
    # Points per batch and per seeded block (part of the protocol; --batch-size, or what
    # --batch-size auto chose). None in records written before it was recorded.
    batch_size: int | None = None
    # A zoo model's published numbers (ModelSource.kind "zoo"), to set beside robench's.
    published: Published | None = None
    # What computed the record: {"robench": ..., "torch": ..., "pyautoattack": ...}.
    versions: dict[str, str] | None = None
    data: DataIdentity | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def timestamp() -> str:
    """Now, as records and run directories write it (local time with its UTC offset)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def is_standard_autoattack(step: Any) -> bool:
    """A step (AttackResult, or a protocol's StepResult) that ran AutoAttack's standard
    version: the only source of RobustBench's autoattack_acc."""
    suite = step.params.get("suite") or {}
    return step.name == "autoattack" and suite.get("version") == "standard"


def readable_versions() -> str:
    """"1, 2 and 3": the schema versions this robench reads, for error messages."""
    *head, last = map(str, READABLE_VERSIONS)
    return f"{', '.join(head)} and {last}" if head else last


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> list[float]:
    """95 % Wilson score interval for a proportion: honest near 0 and 1, unlike +-1.96 SE."""
    if n <= 0:
        return [0.0, 1.0]
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def encode_bits(flags: Any) -> str:
    """A sequence of booleans as hex; bit i (least significant first) is flags[i].

    Hex digits stand for 4 points each, so 10,000 points take 2,500 characters. Pure Python:
    the report reads these without torch.
    """
    value = 0
    for i, flag in enumerate(flags):
        if flag:
            value |= 1 << i
    return format(value, f"0{max(1, (len(flags) + 3) // 4)}x")


def decode_bits(text: str) -> int:
    """The integer whose bits encode_bits wrote (bit i is point i); int.bit_count counts."""
    return int(text, 16)


def bits_to_list(text: str, n: int) -> list[bool]:
    value = decode_bits(text)
    return [bool(value >> i & 1) for i in range(n)]


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
        readable = readable_versions()
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
    if record.points is not None:
        _check_points(record, source)
    return record


def _check_points(record: Record, source: str) -> None:
    """Per-point verdicts must agree with the accuracies they are the counts of."""
    n = record.selection.n_examples
    try:
        clean, robust = decode_bits(record.points.clean), decode_bits(record.points.robust)
    except ValueError:
        raise UserError(f"{source}: its per-point verdicts are not hex bit strings.") from None
    if clean >> n or robust >> n or robust & ~clean:
        raise UserError(f"{source}: its per-point verdicts do not fit {n} points (a robust "
                        f"point must be clean-correct).")
    if clean.bit_count() != round(record.clean_acc * n) or \
            robust.bit_count() != round(record.robust_acc * n):
        raise UserError(f"{source}: its per-point verdicts do not count to its clean and "
                        f"robust accuracy.")


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
