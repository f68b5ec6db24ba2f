"""One process against two: digits PGD-AT training and a standard AutoAttack evaluation.

    python benchmarks/scale_out.py [--epochs 3] [--out /tmp/robench-scale]

On a 2-core machine the point is the overhead and the correctness of the distributed paths,
not a speed-up: two processes of one thread each share the cores one process of two threads
uses. Prints a Markdown table of wall seconds (each command timed as a whole, interpreter and
torch import included) and whether the sharded records hold the one-process verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROBENCH = [sys.executable, "-m", "robench"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2", "-m", "robench"]


def timed(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def run_dir(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def verdicts(run: Path) -> tuple:
    (path,) = (run / "evals").glob("*.json")
    r = json.loads(path.read_text())
    return r["points"]["clean"], r["points"]["robust"], r["robust_acc"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/robench-scale"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    train = ["train", "--dataset", "digits", "--defense", "pgd-at", "--epochs",
             str(args.epochs), "--device", "cpu", "--quiet"]
    rows = []
    t = timed([*ROBENCH, *train, "--batch-size", "128", "--out", str(args.out / "t1")], 2)
    rows.append(("train pgd-at", "1 process, 2 threads, batch 128", t))
    t = timed([*TORCHRUN, *train, "--batch-size", "64", "--out", str(args.out / "t2")], 1)
    rows.append(("train pgd-at", "torchrun 2 processes x 1 thread, batch 2 x 64", t))
    model = run_dir(args.out / "t1")
    evaluate = ["eval", "--attack", "autoattack", "--eps", "0.2", "--n-examples", "all",
                "--batch-size", "60", "--device", "cpu", "--quiet"]
    copies = {}
    for name in ("e1", "e2", "e3"):
        copies[name] = args.out / name / model.name
        shutil.copytree(model, copies[name], ignore=shutil.ignore_patterns("evals"))
    t = timed([*ROBENCH, *evaluate[:1], str(copies["e1"]), *evaluate[1:]], 2)
    rows.append(("AutoAttack, 360 points", "1 process, 2 threads", t))
    t = timed([*TORCHRUN, *evaluate[:1], str(copies["e2"]), *evaluate[1:]], 1)
    rows.append(("AutoAttack, 360 points", "torchrun 2 processes x 1 thread", t))
    t = sum(timed([*ROBENCH, "eval", str(copies["e3"]), *evaluate[1:], *extra], 2)
            for extra in (["--shard", "0/2"], ["--shard", "1/2"], ["--merge"]))
    rows.append(("AutoAttack, 360 points", "--shard 0/2, 1/2 one after the other, --merge", t))
    same = verdicts(copies["e1"]) == verdicts(copies["e2"]) == verdicts(copies["e3"])
    print("| work | how | wall s |")
    print("|---|---|---|")
    for work, how, seconds in rows:
        print(f"| {work} | {how} | {seconds:.1f} |")
    print(f"\nsharded records hold the one-process verdicts, point by point: {same} "
          f"(robust accuracy {verdicts(copies['e1'])[2]:.2%})")


if __name__ == "__main__":
    main()
