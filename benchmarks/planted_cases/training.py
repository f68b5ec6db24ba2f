"""Planted cases of issue 29, items 6 and 11 (training's validation, corruption evaluation).

Each row runs robench on a planted model and says what it shows; run against an old checkout
(PYTHONPATH=<old checkout>) for the "before" column. Validation is what `robench train` calls
every epoch to choose best.safetensors (robench.training.validation.validate; at 830c880 the
same function was robench.training.engine._validate).
"""

from __future__ import annotations

import pathlib
import sys

import torch

TESTS = pathlib.Path(__file__).resolve().parents[2] / "tests"
sys.path.insert(0, str(TESTS))


def _validation_row() -> tuple[str, str, str]:
    from planted import WrongEveryFourthPass, fragile_splits, validation_config

    from robench.distributed import World
    try:
        from robench.training.validation import validate
    except ImportError:  # the checkout before issue 29
        from robench.training.engine import _validate as validate
    n, fragile = 12, 5
    row = validate(WrongEveryFourthPass(), fragile_splits(n, fragile), validation_config(),
                   torch.device("cpu"), 1, World())
    shown = (f"val_acc {round(row['val_acc'] * n)}/{n}, val_robust_acc "
             f"{round(row['val_robust_acc'] * n)}/{n}")
    return ("randomised model's validation figure (best.safetensors chosen on it)", shown,
            f"val_acc {n - fragile}/{n}, val_robust_acc {n - fragile}/{n} ({fragile} points "
            f"wrong on one draw in four)")


def _corruption_rows(workdir: pathlib.Path) -> list[tuple[str, str, str]]:
    from planted import EveryFourthPassWrong, RecordsPrecision
    from test_corruption_eval import BRIGHT, Brightness, cifar_target, write_premade

    from robench.evaluation.corruptions import CorruptionConfig, evaluate_corruptions
    rows = []
    folder = workdir / "bf16"
    folder.mkdir(parents=True, exist_ok=True)
    write_premade(folder, BRIGHT)
    model = RecordsPrecision(Brightness())
    cfg = CorruptionConfig(corruptions=["fog"], severities=[1, 2], device="cpu",
                           precision="bf16")
    record = evaluate_corruptions(cifar_target(folder, model, "m"), cfg, quiet=True).record
    autocast = sorted({seen[1] for seen in model.seen})
    rows.append(("corruption accuracy of a --precision bf16 run: judged precision",
                 f"record precision {record.precision}, autocast during passes {autocast}",
                 "fp32 with autocast off ([False]) and TF32 off"))
    folder = workdir / "random"
    folder.mkdir(parents=True, exist_ok=True)
    write_premade(folder, BRIGHT)
    cfg = CorruptionConfig(corruptions=["fog"], severities=[1, 2], device="cpu")
    record = evaluate_corruptions(cifar_target(folder, EveryFourthPassWrong(Brightness()), "m"),
                                  cfg, quiet=True).record
    c = record.corruptions
    rows.append(("randomised model's corruption accuracy: draws and fog s1-2",
                 f"draws {getattr(c, 'draws', 1)}, accuracy {c.accuracy['fog']}",
                 "draws 8, accuracy [0.75, 0.6] (wrong on one pass in four)"))
    return rows


def cases(workdir: pathlib.Path) -> list[tuple[str, str, str]]:
    torch.set_num_threads(1)
    return [_validation_row(), *_corruption_rows(pathlib.Path(workdir))]


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases(pathlib.Path(tmp)):
            print(" | ".join(case))
