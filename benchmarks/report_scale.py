"""Report speed at scale: load_records + leaderboard + write_report(md, csv) on 10,000 records.

    python benchmarks/report_scale.py [--runs 2000] [--per-run 5] [--cache-type-hints]

Writes --runs fake run directories (config.yaml, env.json, --per-run records each: PGD, FGSM,
PGD+FGSM and AutoAttack at two eps) spread over three datasets and 20 (defense, arch)
configurations x seeds into a temporary folder, then times each step of a report and prints
the seconds. Target: under 2 s in all; this prints the figure, it does not assert it.

--cache-type-hints memoises typing.get_type_hints for this process only, to show what
robench.records.validate (through robench.config.build, which calls it for every nested
dataclass of every record) would cost if config.build cached it.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import tempfile
import time
import typing
from pathlib import Path

import yaml

from robench import report
from robench.records import SCHEMA_VERSION, wilson_interval

DATASETS = {"digits": ("0.1", "0.2"), "mnist": ("0.1", "0.3"), "cifar10": ("4/255", "8/255")}
DEFENSES = ("standard", "pgd-at", "trades", "fast-at", "mart")
ARCHS = ("cnn", "resnet18", "preactresnet18", "wrn-28-10")
PLAN = [("pgd",), ("fgsm",), ("pgd", "fgsm"), ("autoattack",), ("pgd",)]  # eps 0, 0, 0, 0, 1


def _eps(text: str) -> float:
    num, _, den = text.partition("/")
    return float(num) / float(den or 1)


def record(run_id, dataset, defense, arch, attacks, eps_text, robust, clean, n, i) -> dict:
    eps = _eps(eps_text)
    return {
        "schema_version": SCHEMA_VERSION, "robench_version": "bench",
        "key": f"{'+'.join(attacks)}-linf-{eps_text.replace('/', '_')}-n{n}-{i:08x}",
        "created": "2026-11-22T00:00:00+0000",
        "model": {"kind": "run", "run_id": run_id, "checkpoint": "model.safetensors",
                  "weights_sha256": f"{i:064x}", "file": None, "factory": None, "arch": arch,
                  "defense": defense},
        "dataset": dataset, "norm": "Linf", "eps": eps, "eps_text": eps_text,
        "attacks": list(attacks),
        "selection": {"n_examples": n, "method": "first", "seed": 0, "split": "test",
                      "n_available": 10000},
        "clean_acc": clean / n, "robust_acc": robust / n,
        "robust_ci95": wilson_interval(robust, n), "clean_ci95": wilson_interval(clean, n),
        "per_attack": [{"name": a, "params": {"name": a, "eps": eps, "steps": 10},
                        "robust_acc_after": robust / n, "broken": 1, "attacked": n,
                        "seconds": 1.0} for a in attacks],
        "flags": [], "notes": [], "seconds": 1.0, "device": "cpu", "precision": "fp32",
        "seed": 0, "architecture": arch,
        "autoattack_acc": robust / n if "autoattack" in attacks else None,
        "additional_data": False, "extra": {}}


def build(root: Path, n_runs: int, per_run: int) -> int:
    rng, written = random.Random(0), 0
    for r in range(n_runs):
        dataset = list(DATASETS)[r % 3]
        defense, arch = DEFENSES[r // 3 % 5], ARCHS[r // 15 % 4]
        seed = r // 60
        run_id = f"{dataset}-{arch}-{defense}-s{seed}-{r:08x}"
        evals = root / run_id / "evals"
        evals.mkdir(parents=True)
        config = {"data": {"dataset": dataset}, "model": {"arch": arch}, "defense": defense,
                  "optim": {"epochs": 10, "lr": 0.1}, "runtime": {"seed": seed}}
        (root / run_id / "config.yaml").write_text(yaml.safe_dump(config))
        (root / run_id / "env.json").write_text(json.dumps(
            {"status": "complete", "summary": {"train_seconds": rng.uniform(10, 1000)}}))
        n, clean = 1000, rng.randint(700, 990)
        for k, attacks in enumerate(PLAN[:per_run]):
            eps_text = DATASETS[dataset][k == 4]
            rec = record(run_id, dataset, defense, arch, attacks, eps_text,
                         rng.randint(0, clean), clean, n, written)
            (evals / f"{rec['key']}.json").write_text(json.dumps(rec))
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--per-run", type=int, default=5, choices=range(1, 6))
    parser.add_argument("--cache-type-hints", action="store_true")
    args = parser.parse_args()
    if args.cache_type_hints:
        typing.get_type_hints = functools.lru_cache(maxsize=None)(typing.get_type_hints)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        count = build(root / "runs", args.runs, args.per_run)
        print(f"wrote {count} records in {args.runs} runs ({time.perf_counter() - t0:.1f} s)")
        times = {}
        t = time.perf_counter()
        loaded = report.load_records([root / "runs"])
        times["load_records"] = time.perf_counter() - t
        t = time.perf_counter()
        tables = report.leaderboard(loaded)
        times["leaderboard"] = time.perf_counter() - t
        t = time.perf_counter()
        paths = report.write_report(loaded, root / "report", ["md", "csv"])
        times["write_report(md, csv)"] = time.perf_counter() - t
    for name, seconds in times.items():
        print(f"{name:24s} {seconds:6.2f} s")
    print(f"{'total':24s} {sum(times.values()):6.2f} s  ({len(loaded.records)} records, "
          f"{len(tables)} tables, {len(paths)} files; target < 2 s)")


if __name__ == "__main__":
    main()
