"""Planted cases of issue 29, items 4 and 5: a model that changes itself while it is
evaluated, and shards that are not of one evaluation.

    PYTHONPATH=<checkout> python benchmarks/planted_cases/unchanged.py

`cases(workdir)` runs robench (robench.api only, as it stood at commit 830c880, so another
checkout on PYTHONPATH gives its "before" column) on a 12-point target of 4x4 images and
says what robench did beside what it should do.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from planted import (  # noqa: E402
    CountsInHiddenBuffer,
    FreezesItselfInForward,
    HooksItselfInForward,
    TrainsSubmoduleInForward,
)
from tiny_target import tiny_cfg, tiny_net, tiny_target  # noqa: E402

from robench import api  # noqa: E402
from robench.errors import UserError  # noqa: E402

CHANGING = {
    "forward counts in a non-persistent buffer": CountsInHiddenBuffer,
    "forward turns off requires_grad": FreezesItselfInForward,
    "forward registers a hook": HooksItselfInForward,
    "forward puts a submodule in train mode": TrainsSubmoduleInForward,
}
REFUSE = "refused, wrote nothing"


def _files(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _written(run: pathlib.Path) -> str:
    new = len(_files(run)) if run.exists() else 0
    return "wrote nothing" if new == 0 else f"wrote {new} file(s)"


def changing_model(workdir: pathlib.Path, name: str, planted) -> tuple[str, str, str]:
    run = workdir / name.replace(" ", "-")
    try:
        api.evaluate(tiny_target(run, planted(tiny_net())), tiny_cfg(), quiet=True)
        shown = "wrote record, no error"
    except UserError as exc:
        shown = f"refused ({type(exc).__name__}), {_written(run)}"
    except Exception as exc:  # an older robench: a bug's traceback, not a refusal
        shown = f"{type(exc).__name__} (not a user error), {_written(run)}"
    return f"model whose {name}", shown, REFUSE


def _shards(run: pathlib.Path, count: int, only: tuple[int, ...]):
    target = tiny_target(run, tiny_net())
    paths = [api.evaluate(target, tiny_cfg(), quiet=True, shard=api.Shard(i, count))[0].path
             for i in only]
    return target, paths


def other_torch_shard(workdir: pathlib.Path) -> tuple[str, str, str]:
    target, paths = _shards(workdir / "other-torch", 2, (0, 1))
    data = json.loads(paths[1].read_text())
    versions = data.get("versions") or {}
    data["versions"] = {**versions, "robench": versions.get("robench", "?"), "torch": "1.13.1"}
    paths[1].write_text(json.dumps(data))
    try:
        api.merge_shards(target, tiny_cfg())
        shown = "merged into one record"
    except UserError as exc:
        named = "naming the file" if paths[1].name in str(exc) else "not naming the file"
        shown = f"refused, {named}"
    return ("shard 1/2 made with another torch (1.13.1)", shown,
            "refused, naming the file: another torch's kernels give other numbers")


def missing_shard(workdir: pathlib.Path) -> tuple[str, str, str]:
    target, paths = _shards(workdir / "missing", 3, (0, 2))
    expected = paths[0].name.replace("shard-0-of-3", "shard-1-of-3")
    try:
        api.merge_shards(target, tiny_cfg())
        shown = "merged"
    except UserError as exc:
        said = [w for w, ok in (("shard 1/3", "1/3" in str(exc)),
                                ("the file expected", expected in str(exc))) if ok]
        shown = "refused, naming " + (" and ".join(said) if said else "neither")
    return ("merge with shard 1/3 missing", shown,
            "refused, naming shard 1/3 and the file expected")


def cases(workdir: pathlib.Path) -> list[tuple[str, str, str]]:
    rows = [changing_model(workdir, name, planted) for name, planted in CHANGING.items()]
    return [*rows, other_torch_shard(workdir), missing_shard(workdir)]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print("| case | robench | truth |\n|---|---|---|")
        for row in cases(pathlib.Path(tmp)):
            print("| " + " | ".join(row) + " |")
