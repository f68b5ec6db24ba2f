"""Progress for long work: a rich bar on a terminal, one line per epoch in logs, or silence.

Progress and logs go to stderr; results go to stdout.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def stderr_console() -> Console:
    return Console(stderr=True)


class LossText:
    """The latest loss the device has finished computing, as text, read without waiting.

    Reading a GPU tensor's value waits for every step queued before it, so the bar shows
    the loss of the newest step whose value has arrived: a non-blocking copy to pinned
    memory and an event, polled at each step. A CPU loss is read at once.
    """

    def __init__(self) -> None:
        self.text = ""
        self._host = self._event = None

    def offer(self, loss: Any) -> None:
        if getattr(getattr(loss, "device", None), "type", "cpu") != "cuda":
            self.text = f"loss {float(loss):.3f}"
            return
        import torch

        if self._event is not None and self._event.query():
            self.text = f"loss {float(self._host):.3f}"
            self._event = None
        if self._event is None:
            self._host = torch.empty((), dtype=loss.dtype, pin_memory=True)
            self._host.copy_(loss.detach(), non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()


class EpochReporter:
    """Reports training progress; the training loop calls it and knows nothing of rich."""

    def __init__(self, total_epochs: int, *, quiet: bool = False,
                 console: Console | None = None):
        self.console = console or stderr_console()
        self.quiet = quiet
        self.total_epochs = total_epochs
        self._bar: Progress | None = None
        self._epochs = self._batches = None
        self._loss = LossText()
        if not quiet and self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=self.console, transient=True,
            )

    def __enter__(self) -> EpochReporter:
        if self._bar is not None:
            self._bar.start()
            self._epochs = self._bar.add_task("epochs", total=self.total_epochs, info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start(self, done_epochs: int) -> None:
        if self._bar is not None:
            self._bar.update(self._epochs, completed=done_epochs)

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self._bar is not None:
            if self._batches is not None:
                self._bar.remove_task(self._batches)
            self._batches = self._bar.add_task(f"epoch {epoch}", total=steps, info="")

    def step(self, loss: Any) -> None:
        if self._bar is not None:
            self._loss.offer(loss)
            self._bar.update(self._batches, advance=1, info=self._loss.text)

    def end_epoch(self, row: dict[str, Any]) -> None:
        line = format_epoch(row, self.total_epochs)
        if self._bar is not None:
            self._bar.update(self._epochs, advance=1, info=line)
            self._bar.console.print(line, highlight=False)
        elif not self.quiet:
            self.console.print(line, highlight=False)

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False)


def format_epoch(row: dict[str, Any], total: int) -> str:
    parts = [f"epoch {row['epoch']}/{total}", f"loss {row['train_loss']:.4f}",
             f"train acc {row['train_acc']:.2%}"]
    if row.get("val_acc") is not None:
        parts.append(f"val acc {row['val_acc']:.2%}")
    if row.get("val_robust_acc") is not None:
        parts.append(f"val pgd {row['val_robust_acc']:.2%}")
    parts.append(f"{row['seconds']:.1f}s ({row['images_per_s']:.0f} img/s)")
    return "  ".join(parts)


class Counter:
    """A bar over a count of items (points attacked), quiet off-terminal or when asked."""

    def __init__(self, *, quiet: bool = False, console: Console | None = None):
        self.console = console or stderr_console()
        self.quiet = quiet
        self._bar: Progress | None = None
        if not quiet and self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                transient=True,
            )

    def __enter__(self) -> Counter:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def task(self, description: str, total: int) -> Any:
        return self._bar.add_task(description, total=total) if self._bar is not None else None

    def advance(self, task: Any, n: int) -> None:
        if self._bar is not None and task is not None:
            self._bar.update(task, advance=n)

    def message(self, text: str) -> None:
        if not self.quiet:
            (self._bar.console if self._bar is not None else self.console).print(
                text, highlight=False)
