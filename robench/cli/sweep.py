"""`robench sweep`: train and evaluate a grid of runs, then report them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from robench.cli.output import stderr, stdout, user_errors
from robench.cli.report import print_leaderboards
from robench.errors import UserError

# robench.api and the packages below it are imported inside the command, so that
# `robench --help` and a mistyped flag answer without loading torch.


SWEEP_HELP = """Train and evaluate a grid of runs, then report them.

Runs already complete are skipped and recorded evaluations are not repeated, so running a
sweep again continues it. Exit code 1 if any run fails.

On a cluster, --launcher slurm submits one Slurm job per run through submitit (a job
array; resources from the file's `slurm:` section or the flags below) and returns; --status
shows where each run stands, and a preempted or timed-out job is requeued and continues its
run from its checkpoint.

Examples:

  robench sweep benchmarks/leaderboard/digits.yaml

  robench sweep grid.yaml --jobs 2 --dry-run

  robench sweep grid.yaml --launcher slurm --partition gpu --gpus 1 --time 600

  robench sweep grid.yaml --status
"""


@user_errors
def sweep_(
    ctx: typer.Context,
    grid: Path = typer.Argument(..., help="The sweep's YAML file."),
    launcher: str = typer.Option("local", "--launcher", help="Where runs execute: local, "
                                 "slurm, or submitit-local (submitit's jobs on this machine)."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Runs at a time (local launcher)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and stop."),
    status: bool = typer.Option(False, "--status", help="Where each run stands (pending, "
                                "running, done, failed), then stop."),
    wait: bool = typer.Option(False, "--wait", help="slurm: wait for every job, then report."),
    partition: str = typer.Option(None, "--partition", rich_help_panel="Slurm"),
    time_min: int = typer.Option(None, "--time", help="Minutes per job.",
                                 rich_help_panel="Slurm"),
    gpus: int = typer.Option(None, "--gpus", help="GPUs per job.", rich_help_panel="Slurm"),
    cpus: int = typer.Option(None, "--cpus", help="CPUs per job.", rich_help_panel="Slurm"),
    mem: str = typer.Option(None, "--mem", help="Memory per job, e.g. 32G.",
                            rich_help_panel="Slurm"),
    account: str = typer.Option(None, "--account", rich_help_panel="Slurm"),
    constraint: str = typer.Option(None, "--constraint", rich_help_panel="Slurm"),
    array_parallelism: int = typer.Option(None, "--array-parallelism", help="Jobs of the "
                                          "array running at once.", rich_help_panel="Slurm"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    import dataclasses

    from robench import sweep
    from robench.registry import load_all

    load_all()
    cfg = sweep.load_sweep(grid)
    jobs_ = sweep.expand(cfg)
    if dry_run:
        for job in jobs_:
            stdout.print(job.name, highlight=False)
        return
    if status:
        _print_status(sweep.status(jobs_, cfg.out))
        return
    from robench import report

    flags = dict(partition=partition, time=time_min, gpus=gpus, cpus=cpus, mem=mem,
                 account=account, constraint=constraint, array_parallelism=array_parallelism)
    given = {k: v for k, v in flags.items() if v is not None}
    if given and launcher == "local":
        raise UserError(f"--{next(iter(given)).replace('_', '-')} is a Slurm setting; use it "
                        f"with --launcher slurm.")
    for key in ("time", "gpus", "cpus", "array_parallelism"):
        if key in given and given[key] < (0 if key == "gpus" else 1):
            raise UserError(f"--{key.replace('_', '-')} must be a positive integer, got "
                            f"{given[key]}.")
    slurm = dataclasses.replace(cfg.slurm, **given)
    log = None if quiet else (lambda line: stderr.print(line, highlight=False))
    run = sweep.make_launcher(launcher, jobs=jobs, out=cfg.out, log=log, slurm=slurm,
                              wait=wait)
    results = run.run(jobs_)
    if launcher != "local" and not wait:
        stderr.print(f"submitted {len(results)} job(s); follow them with: robench sweep {grid} "
                     f"--status", highlight=False)
        return
    failed = [r for r in results if not r.ok]
    evaluated = [j.run_dir for j in jobs_ if (j.run_dir / "evals").is_dir()]
    if evaluated:
        loaded = report.load_records(evaluated)
        if not quiet:
            print_leaderboards(loaded)
        if cfg.report.out:
            written = report.write_report(loaded, Path(cfg.report.out), cfg.report.formats)
            if not quiet:
                stderr.print(f"wrote {len(written)} file(s) to {cfg.report.out}",
                             highlight=False)
    if failed:
        for r in failed:
            stderr.print(f"[bold red]failed:[/] {r.job.name}: {r.message}", highlight=False)
        raise typer.Exit(1)


def _print_status(rows) -> None:
    table = Table(title="sweep status", title_justify="left")
    for column in ("run", "state", "epochs", "records", "job", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"done": "green", "failed": "red", "running": "yellow"}
    for r in rows:
        colour = colours.get(r.state)
        state = f"[{colour}]{r.state}[/]" if colour else r.state
        table.add_row(r.run, state, r.epochs, str(r.records), r.job, r.detail)
    stdout.print(table)
    counts = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    stdout.print(", ".join(f"{n} {state}" for state, n in counts.items()), highlight=False)
