"""Accuracy under common corruptions: the CIFAR-10-C protocol as robench's second threat model.

Each selected test point is corrupted by every (corruption, severity) setting and classified;
the record holds the accuracy of every setting, their mean (RobustBench's corruptions
accuracy) and, against a reference model evaluated with the identical protocol, the corruption
errors of Hendrycks & Dietterich (2019). When the published pre-made files (CIFAR-10-C,
CIFAR-100-C, Tiny-ImageNet-C) are in the data directory they are used, since that is what
published numbers are measured on; otherwise robench generates the corruptions itself,
seeded, on the device (robench.corruptions, whose docstring lists where it interprets).

Generated noise is drawn per chunk of `CHUNK` points with a seed derived from the chunk's
position, so a point's corruption depends on the seed and its place in the selection, never on
the batch size or the device's memory.

Every accuracy is a verdict, as an attack's is: the model in eval mode and fp32 with TF32 off,
whatever --precision says (the record's precision is "fp32", with a note). A model found
randomised (robench.evaluation.randomness, under the evaluation's seed) is classified
`CORRUPTION_DRAWS` times per image and each accuracy is the mean over those draws, recorded
in `CorruptionResult.draws` and a note.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import robench
from robench import corruptions as corruption_lib
from robench import records as records_mod
from robench.attacks.judge import Judge
from robench.data import Split, to_float
from robench.data.load import DEFAULT_DATA_DIR
from robench.errors import UserError
from robench.evaluation import randomness
from robench.evaluation.accuracy import correct_votes, verdict_precision
from robench.evaluation.points import point_count, select_points
from robench.evaluation.unchanged import check_unchanged, snapshot
from robench.progress import Counter
from robench.records import CORRUPTIONS, CorruptionResult, Record, Selection, wilson_interval
from robench.runtime import resolve_device, warn_if_slow

CHUNK = 1000
# Passes averaged per image for a randomised model.
CORRUPTION_DRAWS = 8
_TINY = 1e-9


@dataclass
class CorruptionConfig:
    """Which corruptions, severities and points, and how to run them."""

    corruptions: list[str] = field(default_factory=lambda: list(corruption_lib.BENCHMARK))
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    n_examples: int | None = None  # None: the first 1000 (or all, if fewer)
    all_examples: bool = False
    seed: int = 0
    batch_size: int = 500
    precision: str = "fp32"
    device: str = "auto"
    premade: bool = True  # use the published files when they are in the data directory

    def validate(self) -> CorruptionConfig:
        if not self.corruptions:
            raise UserError("give at least one corruption, e.g. --corruptions gaussian_noise.")
        for name in self.corruptions:
            corruption_lib.get(name)  # the did-you-mean error for an unknown name
        if len(set(self.corruptions)) != len(self.corruptions):
            raise UserError(f"--corruptions names a corruption twice: "
                            f"{','.join(self.corruptions)}.")
        bad = [s for s in self.severities if s not in corruption_lib.SEVERITIES]
        if not self.severities or bad:
            raise UserError(f"severity {bad[0] if bad else 'list'!s} is not valid; give "
                            f"severities between 1 and 5, e.g. --severities 1-5 or 1,3,5.")
        if self.n_examples is not None and self.n_examples < 1:
            raise UserError(f"--n-examples must be a positive integer, got {self.n_examples}.")
        return self


def severity_text(severities: list[int]) -> str:
    """[1, 2, 3, 4, 5] -> 's1-5'; [1, 3] -> 's1,3': a record's eps_text and key part."""
    if severities == list(range(severities[0], severities[-1] + 1)) and len(severities) > 1:
        return f"s{severities[0]}-{severities[-1]}"
    return "s" + ",".join(str(s) for s in severities)


def parse_severities(text: str) -> list[int]:
    """'1-5', '3', '1,3,5' -> sorted severities; anything else is a user error."""
    values: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise UserError(f"--severities {text!r} is not valid; write a range or a list of "
                            f"severities between 1 and 5, e.g. 1-5 or 1,3,5.")
        lo, hi = int(match[1]), int(match[2] or match[1])
        values.update(range(lo, hi + 1))
    if not values or not all(1 <= v <= 5 for v in values):
        raise UserError(f"--severities {text!r} is not valid; severities run from 1 to 5.")
    return sorted(values)


@dataclass
class CorruptionOutcome:
    record: Record
    path: Path
    reused: bool = False


def evaluate_corruptions(target, cfg: CorruptionConfig, *, reference=None,
                         quiet: bool = False, force: bool = False) -> CorruptionOutcome:
    """Evaluate `target` (and `reference`, with the same protocol) under common corruptions."""
    cfg.validate()
    n_avail = len(target.test)
    n_points = point_count(n_avail, cfg.n_examples, cfg.all_examples, target.info.name)
    if reference is not None and reference.info.name != target.info.name:
        raise UserError(f"the reference model was trained on {reference.info.name!r}, not "
                        f"{target.info.name!r}; give a reference run of the same dataset.")
    ref_record = None
    if reference is not None:
        ref_record = evaluate_corruptions(reference, cfg, quiet=quiet).record
    idx, method = select_points(target.test, n_points, cfg.seed)
    data_dir = Path(target.data_dir or DEFAULT_DATA_DIR)
    premade = corruption_lib.find_premade(data_dir, target.info.name) if cfg.premade else None
    source = f"premade:{premade}" if premade else "generated"
    selection = Selection(n_examples=len(idx), method=method, seed=cfg.seed,
                          n_available=n_avail)
    protocol = {"corruptions": cfg.corruptions, "severities": cfg.severities, "source": source,
                "selection": dataclasses.asdict(selection), "precision": "fp32",
                "verdict": f"fp32, mean over {CORRUPTION_DRAWS} draws if randomised",
                "model": dataclasses.asdict(target.source),
                "reference": ref_record.model.weights_sha256 if ref_record else None}
    key = records_mod.record_key([CORRUPTIONS], CORRUPTIONS, severity_text(cfg.severities),
                                 len(idx), protocol)
    path = target.evals_dir / f"{key}.json"
    if path.is_file() and not force:
        return CorruptionOutcome(records_mod.read(path), path, reused=True)

    device = resolve_device(cfg.device)
    warn_if_slow(device, cfg.precision)
    model = target.model.to(device)
    before = snapshot(model)
    t0 = time.perf_counter()
    clean = Split(target.test.x[idx], target.test.y[idx])
    first = to_float(clean.x[:randomness.POINTS].to(device))
    with verdict_precision(device), randomness.seeded(cfg.seed, device):
        stochastic = randomness.detect(model, first).stochastic
        draws = CORRUPTION_DRAWS if stochastic else 1
        judge = Judge(model, draws=draws, batch_size=cfg.batch_size)
        clean_votes = correct_votes(judge, clean, device)
        accuracy: dict[str, list[float]] = {}
        with Counter(quiet=quiet) as counter:
            task = counter.task(f"{target.label}: corruptions",
                                len(cfg.corruptions) * len(cfg.severities))
            for name in cfg.corruptions:
                accuracy[name] = []
                for severity in cfg.severities:
                    if premade:
                        x, y = corruption_lib.load_premade(premade, name, severity, len(idx))
                        split = Split(x, y)
                    else:
                        split = Split(_corrupted(clean.x, name, severity, cfg.seed, device),
                                      clean.y)
                    votes = correct_votes(judge, split, device)
                    accuracy[name].append(votes / (len(split) * draws))  # exact k/(n*draws)
                    counter.advance(task, 1)
    seconds = time.perf_counter() - t0
    check_unchanged(model, before)
    clean_acc = clean_votes / (len(idx) * draws)
    result = dataclasses.replace(_result(source, cfg, accuracy, clean_acc, ref_record),
                                 draws=draws)
    notes = []
    if stochastic:
        notes.append(f"the model is randomised: each accuracy is the mean over {draws} draws "
                     f"(passes with fresh randomness) of every image.")
    if cfg.precision != "fp32":
        notes.append(f"judged in fp32 with TF32 off, not {cfg.precision}: accuracies are "
                     f"verdicts of the model.")
    if premade:
        notes.append(f"corrupted images from the pre-made files in {premade} (their first "
                     f"{len(idx)} per severity); clean accuracy on robench's test selection.")
    else:
        notes.append("corruptions generated by robench (CIFAR-10-C recipe parameters; see "
                     "robench.corruptions for where robench interprets); compare with "
                     "published numbers only through the pre-made files.")
    if set(cfg.corruptions) != set(corruption_lib.BENCHMARK) and ref_record is not None:
        notes.append("mCE is averaged over the corruptions evaluated, not the 15 of the "
                     "benchmark.")
    record = _record(target, cfg, key, selection, clean_acc, result, notes, device,
                     seconds)
    written = records_mod.write(record, target.evals_dir)
    return CorruptionOutcome(record, written)


def _corrupted(x: torch.Tensor, name: str, severity: int, seed: int,
               device: torch.device) -> torch.Tensor:
    """All of x corrupted, chunk by chunk on `device`, each chunk with its own seed."""
    parts = []
    for i, start in enumerate(range(0, len(x), CHUNK)):
        chunk = to_float(x[start:start + CHUNK].to(device))
        parts.append(corruption_lib.corrupt(chunk, name, severity, seed=seed * 100_003 + i))
    return torch.cat(parts)


def corruption_errors(accuracy: dict[str, list[float]], clean_acc: float,
                      ref_accuracy: dict[str, list[float]], ref_clean_acc: float
                      ) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """CE and relative CE per corruption (Hendrycks & Dietterich 2019); None where the
    reference makes no error (or no error beyond its clean error) to compare with.

    Accuracies are counts over the same points, so a difference is either 0 or at least
    1/n; `_TINY` only absorbs float rounding, never a real (if small) denominator.
    """
    ce: dict[str, float | None] = {}
    rel: dict[str, float | None] = {}
    for name, accs in accuracy.items():
        errors = [1 - a for a in accs]
        ref_errors = [1 - a for a in ref_accuracy[name]]
        ce[name] = sum(errors) / sum(ref_errors) if sum(ref_errors) > _TINY else None
        gap = sum(e - (1 - ref_clean_acc) for e in ref_errors)
        rel[name] = (sum(e - (1 - clean_acc) for e in errors) / gap) if gap > _TINY else None
    return ce, rel


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _result(source: str, cfg: CorruptionConfig, accuracy: dict[str, list[float]],
            clean_acc: float, ref: Record | None) -> CorruptionResult:
    flat = [a for accs in accuracy.values() for a in accs]
    result = CorruptionResult(source=source, corruptions=list(cfg.corruptions),
                              severities=list(cfg.severities), accuracy=accuracy,
                              mean_acc=sum(flat) / len(flat))
    if ref is not None:
        ce, rel = corruption_errors(accuracy, clean_acc, ref.corruptions.accuracy, ref.clean_acc)
        result = dataclasses.replace(
            result, reference=ref.model.run_id or ref.model.arch,
            reference_clean_acc=ref.clean_acc, reference_accuracy=ref.corruptions.accuracy,
            ce=ce, mce=_mean(ce.values()), relative_ce=rel, relative_mce=_mean(rel.values()))
    return result


def _record(target, cfg: CorruptionConfig, key: str, selection: Selection,
            clean_acc: float, result: CorruptionResult, notes: list[str],
            device: torch.device, seconds: float) -> Record:
    n = selection.n_examples
    clean_ok = round(clean_acc * n)
    # The interval treats the mean as a proportion over the n points: settings of the same
    # point are not independent draws, so counting n * settings trials would be too narrow.
    mean_ok = round(result.mean_acc * n)
    return Record(
        schema_version=records_mod.SCHEMA_VERSION, robench_version=robench.__version__,
        key=key, created=records_mod.timestamp(), model=target.source,
        dataset=target.info.name,
        norm=CORRUPTIONS, eps=0.0, eps_text=severity_text(cfg.severities), attacks=[CORRUPTIONS],
        selection=selection, clean_acc=clean_acc, robust_acc=result.mean_acc,
        robust_ci95=wilson_interval(mean_ok, n), clean_ci95=wilson_interval(clean_ok, n),
        per_attack=[], flags=[], notes=notes, seconds=round(seconds, 3), device=str(device),
        precision="fp32", seed=cfg.seed, architecture=target.source.arch,
        corruptions=result, published=getattr(target, "published", None))
