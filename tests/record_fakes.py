"""Hand-made runs and result records for the report's tests."""

import itertools
import json

import yaml

from robench.records import (
    SCHEMA_VERSION,
    AttackResult,
    ModelSource,
    Points,
    Record,
    Selection,
    encode_bits,
    wilson_interval,
    write,
)

N_AVAILABLE = 360

_keys = itertools.count()


def make_run(root, name, *, defense="standard", arch="cnn", seed=0, epochs=3,
             train_seconds=12.5):
    """A fake run directory: config.yaml and env.json as robench train writes them."""
    run = root / name
    run.mkdir(parents=True)
    config = {"data": {"dataset": "digits", "split_seed": 0}, "model": {"arch": arch},
              "defense": defense, "optim": {"epochs": epochs},
              "runtime": {"device": "cpu", "seed": seed}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "env.json").write_text(json.dumps({"status": "complete",
                                              "summary": {"train_seconds": train_seconds}}))
    return run


def add_record(run, *, robust, clean=90, n=100, attacks=("pgd",), eps=0.2, eps_text=None,
               created="2026-01-01T00:00:00+0000", flags=(), source=None, steps=20,
               checkpoint="model.safetensors", robust_points=None, clean_points=None,
               first=0, version="standard", precision="fp32"):
    """Write a valid record (robust and clean are counts out of n) into run/evals.

    With `robust_points` (indices among the n points) the record carries per-point verdicts,
    as robench eval writes them, on the points first .. first + n - 1 of the split; clean
    points are then the first `clean` ones unless `clean_points` says otherwise.
    """
    if source is None:  # as robench eval describes a run: from its config
        config = yaml.safe_load((run / "config.yaml").read_text())
        source = ModelSource(kind="run", run_id=run.name, checkpoint=checkpoint,
                             weights_sha256="ab" * 32, arch=config["model"]["arch"],
                             defense=config["defense"])
    eps_text = eps_text or repr(eps)
    points, mask = None, None
    if robust_points is not None:
        clean_points = range(min(clean, n)) if clean_points is None else clean_points
        robust, clean = len(robust_points), len(clean_points)
        points = Points(clean=encode_bits([i in set(clean_points) for i in range(n)]),
                        robust=encode_bits([i in set(robust_points) for i in range(n)]))
        mask = encode_bits([first <= i < first + n for i in range(N_AVAILABLE)])

    def params(a):
        suite = {"suite": {"version": version}} if a == "autoattack" else {}
        return {"name": a, "steps": steps, **suite}

    record = Record(
        schema_version=SCHEMA_VERSION, robench_version="test",
        key=f"{'+'.join(attacks)}-linf-{eps_text.replace('/', '_')}-n{n}-{next(_keys):08d}",
        created=created, model=source, dataset="digits", norm="Linf", eps=eps,
        eps_text=eps_text, attacks=list(attacks),
        selection=Selection(n_examples=n, method="first", seed=0, n_available=N_AVAILABLE,
                            mask=mask),
        clean_acc=clean / n, robust_acc=robust / n,
        robust_ci95=wilson_interval(robust, n), clean_ci95=wilson_interval(clean, n),
        per_attack=[AttackResult(name=a, params=params(a), robust_acc_after=robust / n,
                                 broken=0, attacked=n, seconds=1.0) for a in attacks],
        flags=list(flags), notes=[], seconds=1.0, device="cpu", precision=precision, seed=0,
        architecture=source.arch, autoattack_acc=robust / n if "autoattack" in attacks
        else None, points=points)
    return write(record, run / "evals")


