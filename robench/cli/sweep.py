"""`robench sweep`: train and evaluate a grid of runs, then report them."""

from __future__ import annotations

from pathlib import Path

import typer

from robench.cli.output import stderr, stdout, user_errors
from robench.cli.report import print_leaderboards

# robench.api and the packages below it are imported inside the command, so that
# `robench --help` and a mistyped flag answer without loading torch.


SWEEP_HELP = """Train and evaluate a grid of runs, then report them.

Runs already complete are skipped and recorded evaluations are not repeated, so running a
sweep again continues it. Exit code 1 if any run fails.

Examples:

  robench sweep benchmarks/leaderboard/digits.yaml

  robench sweep grid.yaml --jobs 2 --dry-run
"""


@user_errors
def sweep_(
    ctx: typer.Context,
    grid: Path = typer.Argument(..., help="The sweep's YAML file."),
    launcher: str = typer.Option("local", "--launcher", help="Where runs execute: local."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Runs at a time (local launcher)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and stop."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    from robench import sweep
    from robench.registry import load_all

    load_all()
    cfg = sweep.load_sweep(grid)
    jobs_ = sweep.expand(cfg)
    if dry_run:
        for job in jobs_:
            stdout.print(job.name, highlight=False)
        return
    from robench import report

    log = None if quiet else (lambda line: stderr.print(line, highlight=False))
    run = sweep.make_launcher(launcher, jobs=jobs, out=cfg.out, log=log)
    results = run.run(jobs_)
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
