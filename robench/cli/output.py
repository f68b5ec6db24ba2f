"""What every command prints through: the two consoles, and user errors as one line.

User mistakes (`UserError`) become one line on stderr and exit code 2; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from robench.errors import Interrupted, Preempted, RobenchWarning, UserError
from robench.preemption import pass_on

stdout = Console()
stderr = Console(stderr=True)


class State:
    """What the top-level options leave for the commands (typer's context object)."""

    debug = False


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, RobenchWarning):
        stderr.print(f"[bold yellow]warning:[/] {escape(str(message))}", highlight=False,
                     soft_wrap=True)
    else:
        _show.plain(message, category, filename, lineno, file, line)


def print_warnings() -> None:
    """robench's own warnings as one `warning:` line on stderr (no file name, no source
    line); every other warning keeps Python's format. Installed once per process."""
    if warnings.showwarning is not _show:
        _show.plain = warnings.showwarning
        warnings.showwarning = _show


def fail(message: str, code: int) -> None:
    # escaped: a message may hold brackets that are not markup, e.g. pip install 'robench[x]'
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn a user's mistake into one line on stderr and exit code 2 (traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")  # every command takes the typer context as `ctx`
        debug = bool(ctx is not None and ctx.obj is not None and ctx.obj.debug)
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            if debug:
                raise
            fail(str(exc), 2)
        except Preempted as exc:  # a scheduler's signal, taken at a safe point
            stderr.print(f"[bold red]stopped:[/] {escape(exc.message)}", highlight=False,
                         soft_wrap=True)
            pass_on(exc.signum)  # to submitit's handler, or the default: the process ends
            raise typer.Exit(128 + exc.signum) from None
        except KeyboardInterrupt as exc:
            if debug:
                raise
            fail(exc.message if isinstance(exc, Interrupted) else "interrupted.", 130)

    return wrapper


def shell_path(path: str | Path) -> str:
    """A path as a user would type it in the next command: relative to the working directory
    when it is below it, quoted for the shell where it needs to be."""
    import shlex

    path = Path(path)
    try:
        path = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return shlex.quote(str(path) or ".")


def suggest(command: str) -> None:
    """The command a user runs next, on stderr so that stdout stays the result."""
    stderr.print(f"next: {escape(command)}", highlight=False, soft_wrap=True)
