"""The typed configs: what a training run and an evaluation protocol are made of."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from robench.errors import UserError

PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")
SCHEDULES = ("constant", "multistep", "cosine", "onecycle", "cyclic")
AUGMENTS = ("crop+flip", "crop", "none", "augmix+clean")


@dataclass
class DataConfig:
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None
    train_subset: int | None = None
    val_size: int | None = None
    split_seed: int = 0
    augment: str | None = None


@dataclass
class ModelConfig:
    arch: str = "cnn"
    strides: str | None = None
    width: float = 1.0


@dataclass
class OptimConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "multistep"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0


@dataclass
class RuntimeConfig:
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    seed: int = 0
    deterministic: bool = False
    eval_batch_size: int = 512
    # Processes of a torchrun launch (set by robench, not by hand): optim.batch_size is per
    # process, so the global batch is batch_size x world_size.
    world_size: int = 1
    sync_bn: bool = False  # BatchNorm statistics over the global batch (training.sync_bn)


@dataclass
class ValidationConfig:
    """In-training validation; best.safetensors is chosen on it, never on the test split."""

    every: int = 1  # epochs between validations; the last epoch is always validated
    attack: str = "pgd"
    steps: int = 10
    eps: float | None = None  # None: the defense's eps, else the dataset's standard Linf eps
    # What best.safetensors maximises: robust (then clean) or clean accuracy. None: robust for
    # a defense that trains on adversaries, clean for any other (filled in when resolved).
    select: str | None = None


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    defense: str = "standard"
    defenses: dict[str, dict[str, Any]] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    init: str | None = None  # a run directory whose final weights training starts from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        """Short digest of what determines the result (not where it runs or is stored)."""
        d = self.to_dict()
        for key in ("device", "eval_batch_size"):
            d["runtime"].pop(key)
        # Settings added later hash only when set, so earlier runs keep their ids.
        for key, default in (("world_size", 1), ("sync_bn", False)):
            if d["runtime"][key] == default:
                d["runtime"].pop(key)
        d["data"].pop("data_dir")
        d["data"].pop("download")
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


def require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


DEFAULT_N_EXAMPLES = 1000


@dataclass
class EvalConfig:
    """An evaluation protocol: attacks in order, threat model, points, and runtime."""

    attacks: list[str] = field(default_factory=lambda: ["autoattack"])
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per attack name
    norm: str = "Linf"
    eps: list[str] = field(default_factory=list)  # empty: the dataset's standard eps
    n_examples: int | None = None  # None: the first DEFAULT_N_EXAMPLES (or all, if fewer)
    all_examples: bool = False  # the whole test split
    # Points per batch and per seeded block; "auto": the largest that fits (chosen, then
    # recorded, by robench.evaluation.batch_size).
    batch_size: int | str = 500
    seed: int = 0  # the attacks' seed (and the seed of a randomised model's draws)
    selection_seed: int = 0  # which points, when they are sampled (class-ordered splits)
    precision: str = "fp32"  # of the attacks' search; verdicts are always fp32
    device: str = "auto"
    checkpoint: str = "final"
    # Passes per verdict for a randomised model; a point is correct only if every one is.
    verdict_draws: int = 10
    allow_non_eot: bool = False  # run attacks without EOT on a randomised model, flagged
    sanity: bool = False  # the opt-in checks of robench.evaluation.sanity
    sanity_n: int = 100  # points they run on (the first ones evaluated)

    def validate(self) -> EvalConfig:
        require(bool(self.attacks), "give at least one --attack, e.g. --attack autoattack.")
        require(self.n_examples is None or self.n_examples > 0,
                 f"--n-examples must be a positive integer, got {self.n_examples}.")
        require(self.batch_size == "auto" or (isinstance(self.batch_size, int)
                                               and self.batch_size > 0),
                 f"--batch-size must be a positive integer or 'auto', got {self.batch_size!r}.")
        require(self.precision in PRECISIONS,
                 f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}.")
        require(self.verdict_draws >= 1,
                 f"--verdict-draws must be a positive integer, got {self.verdict_draws}.")
        require(self.sanity_n >= 1,
                 f"--sanity-n must be a positive integer, got {self.sanity_n}.")
        stray = sorted(set(self.params) - set(self.attacks))
        require(not stray, f"parameters were given for attack {stray[0]!r}, which is not "
                            f"among the attacks run ({', '.join(self.attacks)})."
                 if stray else "")
        return self
