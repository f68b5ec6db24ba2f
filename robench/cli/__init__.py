"""The `robench` command line: one module per command, each thin (parse, call, print).

Commands call `robench.api` (or the package that owns what they show) and render the result;
`output` holds the consoles and the one-line user errors, `options` the options several
commands share. The order commands are registered in below is the order `--help` lists them.
"""

from __future__ import annotations

import typer

from robench import __version__
from robench.cli import attack, corrupt, evaluate, listing, report, sweep, train
from robench.cli.output import State, print_warnings, stdout

app = typer.Typer(
    name="robench",
    help=(
        "Train image classifiers with a defense, attack them, and measure their adversarial "
        "robustness with a protocol you can trust.\n\n"
        "Examples:\n\n"
        "  robench train                      # a small CNN on the embedded digits data\n\n"
        "  robench train --dataset cifar10 --data-dir data --arch preactresnet18\n\n"
        "  robench list archs"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        stdout.print(f"robench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    ctx.obj = State()
    ctx.obj.debug = debug
    print_warnings()


app.command(help=train.TRAIN_HELP)(train.train)
app.command("list", help=listing.LIST_HELP)(listing.list_)
app.command("eval", help=evaluate.EVAL_HELP)(evaluate.eval_)
app.command("corrupt", help=corrupt.CORRUPT_HELP)(corrupt.corrupt)
app.command("attack", help=attack.ATTACK_HELP)(attack.attack_)
app.command("report", help=report.REPORT_HELP)(report.report_)
app.command("sweep", help=sweep.SWEEP_HELP)(sweep.sweep_)


def main() -> None:
    app()
